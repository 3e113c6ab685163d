"""Select the plan for the impairment's type and severity: the first enabled plan, in declared
order, that covers it (plans are disabled one by one at run time, see RecoveryStore).

The resource locks Admit took live `lock_ttl_seconds`; a plan that may hold them longer (an
approval, each step's time-box, the rollback of every step: holding_seconds in actions/plans.py)
has them extended to cover it, so no other recovery of the same resources can start while this
one may still act or undo. The plan's steps were validated at synthesis; they are checked again
against this deployment's actions before anything acts on them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from actions import plans
from core import clock, runtime_config, state
from core import settings as settings_module
from core.blocking import Blocking
from core.entry import lambda_entry
from core.errors import InvalidInput, NoMatchingPlan
from core.observability import logger
from core.plans import Plan, select_plan
from core.store import RecoveryStore

LOCK_MARGIN_SECONDS = 300


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    execution = state.parse(event, "SelectPlan")
    impairment = execution.impairment
    settings = settings_module.load("table_name")
    store = store or RecoveryStore(settings.table_name)
    lock_keys = execution.admission.lock_keys
    # Chosen as if no plan were disabled, and recorded with the check that it is not: one call
    # (the switches are read only when a plan was disabled at run time).
    plan, dry_run, hold = _choose(impairment, settings, set(), lock_keys)
    selected = _selected(plan, dry_run, impairment)
    # Recorded whole: should the execution die, its steps are what a rollback undoes
    # (orchestration/execution_ended.py).
    fields = {"status": "recovering", "plan": plan.name, "dry_run": dry_run, "plan_state": selected}
    if not store.record_plan(impairment.impairment_id, plan.name, lock_keys, hold, fields):
        disabled = set(store.get_switches().get("disabled_plans", []))
        plan, dry_run, hold = _choose(impairment, settings, disabled, lock_keys)
        selected = _selected(plan, dry_run, impairment)
        if hold:
            store.acquire_locks(impairment.impairment_id, lock_keys, hold)
        fields = {"status": "recovering", "plan": plan.name, "dry_run": dry_run, "plan_state": selected}
        store.update_impairment(impairment.impairment_id, **fields)
    logger.info("plan selected", plan=plan.name, steps=[s.action for s in plan.steps], dry_run=dry_run)
    return selected


def _choose(impairment: Any, settings: Any, disabled: set[str], lock_keys: list[str]) -> tuple[Plan, bool, int | None]:
    """The first enabled plan covering the impairment, whether it runs dry, and how long its
    resource locks must now be held (None: Admit's hold covers it)."""
    # A plan none of whose steps runs for this impairment (each needs a scope key it lacks:
    # PlanStep.when_scope_has) cannot act on it: the next one may.
    enabled = [
        p
        for p in runtime_config.load().plans
        if p.name not in disabled and any(s.applies_to(impairment.scope) for s in p.steps)
    ]
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
        raise InvalidInput(f"plan {plan.name!r}: {exc}") from None
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
