"""The choice of the plan for an impairment's type and severity (Admit makes it, and records it
in the transaction that admits the impairment): the first enabled plan, in declared order, that
covers it (plans are disabled one by one at run time, see core/switches.py).

The resource locks live `lock_ttl_seconds`; a plan that may hold them longer (an approval, each
step's time-box, the rollback of every step: holding_seconds in actions/plans.py) has them held
to cover it from the start, so no other recovery of the same resources can start while this one
may still act or undo. The plan's steps were validated at synthesis; they are checked again
against this deployment's actions before anything acts on them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from msgspec import Struct

from actions import plans
from core import clock, runtime_config
from core.blocking import Blocking
from core.errors import InvalidInput, InvalidPlan, NoMatchingPlan
from core.plans import Plan, select_plan

LOCK_MARGIN_SECONDS = 300


class Choice(Struct, frozen=True):
    """The plan chosen: whether it runs dry, how long the resource locks must be held for it (None:
    the lock TTL covers it), and the plan as the execution's later states read it."""

    plan: Plan
    dry_run: bool
    hold: int | None
    selected: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        """What the impairment's record says of it. Recorded whole: should the execution die, its
        steps are what a rollback undoes (orchestration/execution_ended.py)."""
        return {"status": "recovering", "plan": self.plan.name, "dry_run": self.dry_run, "plan_state": self.selected}

    def lock_seconds(self, ttl_seconds: int) -> int:
        return max(ttl_seconds, self.hold or 0)


def choose(impairment: Any, settings: Any, disabled: set[str], lock_keys: list[str]) -> Choice:
    """The first enabled plan covering the impairment, as the execution runs it. NoMatchingPlan
    when none does; InvalidPlan when this deployment cannot run it."""
    plan, dry_run, hold = _choose(impairment, settings, disabled, lock_keys)
    return Choice(plan, dry_run, hold, _selected(plan, dry_run, impairment))


def _choose(impairment: Any, settings: Any, disabled: set[str], lock_keys: list[str]) -> tuple[Plan, bool, int | None]:
    """The first enabled plan covering the impairment, whether it runs dry, and how long its
    resource locks must be held (None: the lock TTL covers it)."""
    try:
        deployed = runtime_config.load().plans
    except InvalidInput as exc:  # the configuration itself: the deployment's fault, not the impairment's
        raise InvalidPlan(str(exc)) from None
    # A plan none of whose steps runs for this impairment (each needs a scope key it lacks:
    # PlanStep.when_scope_has) cannot act on it: the next one may.
    enabled = [p for p in deployed if p.name not in disabled and any(s.applies_to(impairment.scope) for s in p.steps)]
    plan = select_plan(enabled, impairment)
    if plan is None:
        raise NoMatchingPlan(
            f"no plan covers {impairment.impairment_type.value} at severity {impairment.severity.value}"
            f" for workload {impairment.workload}"
        )
    try:
        # Validated at synthesis: this deployment's actions take its steps (an alias, their kind's).
        plan = plans.check_steps(plan)
    except ValueError as exc:
        raise InvalidPlan(f"plan {plan.name!r}: {exc}") from None
    lock_for = plans.holding_seconds(plan, blocking_of(plan).max_wait_seconds) + LOCK_MARGIN_SECONDS
    hold = lock_for if lock_for > settings.lock_ttl_seconds and lock_keys else None
    return plan, plan.dry_run or settings.dry_run, hold


def _selected(plan: Plan, dry_run: bool, impairment: Any) -> dict[str, Any]:
    """The plan as the execution's later states read it (core/state.py: PlanState), with the
    workload's recovery time objective (Finalize judges the MTTR against it). Its steps are those
    that run for this impairment; a step that needs a scope key the impairment lacks is listed
    under `skipped_steps` with why, so the record explains the recovery it did not make."""
    verify = plan.verify.model_dump()
    if dry_run:
        verify = {"wait_seconds": 0, "max_attempts": 1}  # nothing changed: nothing to wait for
    # The plan's time-box counts from now, plus the approval's when it needs one and the longest
    # wait while blocked (CheckGuardrails).
    blocking = blocking_of(plan)
    time_box = plan.timeout_seconds + (plan.approval_timeout_seconds if plan.requires_approval else 0)
    time_box += blocking.max_wait_seconds
    steps = [s for s in plan.steps if s.applies_to(impairment.scope)]
    skipped = [
        {"action": s.action, "params": s.params, "reason": f"the impairment's scope has no {s.when_scope_has}"}
        for s in plan.steps
        if not s.applies_to(impairment.scope)
    ]
    return {
        "name": plan.name,
        "steps": [{"index": i, "action": s.action, "params": s.params} for i, s in enumerate(steps)],
        **({"skipped_steps": skipped} if skipped else {}),
        "verify": verify,
        "timeout_seconds": plan.timeout_seconds,
        "deadline": (clock.utc_now() + timedelta(seconds=time_box)).isoformat(),
        "requires_approval": plan.requires_approval and not dry_run,
        "approval_timeout_seconds": plan.approval_timeout_seconds,
        "max_recoveries_per_hour": plan.max_recoveries_per_hour,
        "dry_run": dry_run,
        "rto_seconds": runtime_config.load().rto_seconds.get(impairment.workload),
        "blocking": blocking.model_dump(),
    }


def blocking_of(plan: Plan) -> Blocking:
    """When a recovery by this plan waits instead of acting: its own blocking, else the
    deployment's (guardrails.blocking)."""
    return plan.blocking or runtime_config.load().guardrails.blocking
