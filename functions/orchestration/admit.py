"""Admit: validate the impairment, choose its plan (orchestration/select_plan.py), record both and
lock its resources (one recovery per resource at a time), in one transaction when nothing stands
in the way. The record is written whatever the outcome. While automatic recovery is paused (the
kill switch), the impairment is recorded as skipped and escalated, and nothing is acted on.

Its result is the execution's state with `admission` (the resources locked) and `plan` (the plan
as the later states run it) added: the workflow's one task for both."""

from __future__ import annotations

from typing import Any

from core import clock
from core import settings as settings_module
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.errors import InvalidInput, InvalidPlan, NoMatchingPlan, RecoveryInProgress, RecoveryPaused
from core.guardrails import PAUSED
from core.model import ValidationError
from core.observability import logger, metrics
from core.store import RecoveryStore
from orchestration import select_plan
from orchestration.select_plan import Choice


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    try:
        impairment = ImpairmentDetected.model_validate((event or {}).get("impairment"))
    except (ValidationError, AttributeError) as exc:
        logger.error("refused an impairment that does not validate", error=str(exc))
        raise InvalidInput("the execution input is not a valid impairment") from exc

    settings = settings_module.load("table_name")
    admission = Admission(store or RecoveryStore(settings.table_name), impairment, event, settings)
    try:
        # Chosen as if no plan were disabled: the transaction checks it is not (the switches are
        # read only when it fails).
        choice = select_plan.choose(impairment, settings, set(), admission.lock_keys)
    except (NoMatchingPlan, InvalidPlan):
        # Admitted all the same, as any impairment is before its plan: paused, or held by another
        # recovery, says so first; the escalation that follows releases what was locked.
        admission.admit(None)
        raise
    plan = admission.admit(choice)
    steps = [s["action"] for s in plan["steps"]]
    logger.info("admitted, plan selected", plan=plan["name"], steps=steps, dry_run=plan["dry_run"])
    admitted = {"admitted_at": clock.utc_now().isoformat(), "lock_keys": admission.lock_keys}
    return {**admission.given, "impairment": event["impairment"], "admission": admitted, "plan": plan}


class Admission:
    """One impairment's admission: its record, its locks and its plan."""

    def __init__(self, store: RecoveryStore, impairment: ImpairmentDetected, event: dict[str, Any], settings: Any):
        self.store = store
        self.impairment = impairment
        self.impairment_id = impairment.impairment_id
        self.settings = settings
        self.execution = event.get("execution", "")
        self.lock_keys = [r.key for r in impairment.affected_resources]
        # The execution's input: what it may take over (supersedes), when StartRecovery says.
        self.given: dict[str, Any] = event.get("input") if isinstance(event.get("input"), dict) else {}
        self.supersedes = [s for s in self.given.get("supersedes") or [] if isinstance(s, str)]
        self.fields = {"status": "admitted", "lock_keys": self.lock_keys, "execution_arn": self.execution}

    def admit(self, choice: Choice | None) -> dict[str, Any]:
        """One call when StartRecovery recorded it, nothing is paused, the plan is enabled and the
        resources are free: the locks held as long as the plan may need them. Three when the plan
        was disabled (before its choice, or since): the switches read, and the next plan that
        covers it admitted in one call again. The plan as run ({} without one)."""
        if self._transact(choice):
            return choice.selected if choice else {}
        if choice is not None:
            switches = self.store.get_switches()
            disabled = set(switches.get("disabled_plans") or [])
            if not switches.get("paused") and choice.plan.name in disabled:
                try:
                    choice = select_plan.choose(self.impairment, self.settings, disabled, self.lock_keys)
                except (NoMatchingPlan, InvalidPlan):
                    return self.step_by_step(with_plan=True)  # locked and recorded admitted, then raised
                if self._transact(choice):
                    return choice.selected
        return self.step_by_step(with_plan=choice is not None)

    def _transact(self, choice: Choice | None) -> bool:
        name = choice.plan.name if choice else None
        ttl, fields = self._ttl(choice), self._fields(choice)
        return self.store.admit(self.impairment_id, self.lock_keys, ttl, self.supersedes, plan_enabled=name, **fields)

    def _ttl(self, choice: Choice | None) -> int:
        """How long the locks are held: the lock TTL, or the plan's hold when it is longer."""
        return choice.lock_seconds(self.settings.lock_ttl_seconds) if choice else self.settings.lock_ttl_seconds

    def _fields(self, choice: Choice | None) -> dict[str, Any]:
        """The record's admitted fields, and the plan's (status "recovering") when there is one."""
        return {**self.fields, **(choice.fields() if choice else {})}

    def step_by_step(self, with_plan: bool) -> dict[str, Any]:
        """Record, check the kill switch, choose again without the disabled plans, lock and record
        again, one call each: what says which went wrong (no record yet, paused, the plan
        disabled, a lock another's) and does what each calls for."""
        store, impairment_id = self.store, self.impairment_id
        record = self.impairment.model_dump(mode="json")
        mttd = self.impairment.mttd_seconds
        if not store.put_impairment(record, status="admitting", execution_arn=self.execution, mttd_seconds=mttd):
            # written at detection (or by a retried Admit): keep its MTTD and links
            store.update_impairment(impairment_id, status="admitting", execution_arn=self.execution)
        switches = self._skip_if_paused()
        choice, uncovered = None, None
        if with_plan:
            try:
                disabled = set(switches.get("disabled_plans") or [])
                choice = select_plan.choose(self.impairment, self.settings, disabled, self.lock_keys)
            except (NoMatchingPlan, InvalidPlan) as exc:  # locked and recorded admitted, then escalated
                uncovered = exc
        self._lock(self._ttl(choice))
        store.update_impairment(impairment_id, **self._fields(choice))
        if uncovered is not None:
            raise uncovered
        return choice.selected if choice else {}

    def _skip_if_paused(self) -> dict[str, Any]:
        """The kill switch: recorded as skipped, and RecoveryPaused raised (the workflow
        escalates). The switches read, otherwise."""
        switches = self.store.get_switches()
        if switches.get("paused"):
            reason = f"automatic recovery is paused: {switches.get('pause_reason') or 'no reason given'}"
            self.store.update_impairment(
                self.impairment_id, status="skipped", outcome="skipped", reason=reason, guardrails_tripped=[PAUSED]
            )
            metrics.add_metric(name="RecoveriesSkipped", unit="Count", value=1)
            logger.warning("skipped: automatic recovery is paused", reason=reason)
            raise RecoveryPaused(reason)
        return switches

    def _lock(self, ttl: int) -> None:
        """Lock the resources; when another recovery holds one, record this one as skipped and
        raise RecoveryInProgress."""
        try:
            self.store.acquire_locks(self.impairment_id, self.lock_keys, ttl, take_over=self.supersedes)
        except RecoveryInProgress as exc:
            self.store.update_impairment(
                self.impairment_id,
                status="skipped",
                outcome="skipped",
                reason=str(exc),
                resolved_at=clock.utc_now().isoformat(),
            )
            # Skipped: its correlation windows close, so the next signal about these resources
            # (once the other recovery is over) is a new impairment, not folded into this skipped one.
            self.store.release_locks(self.impairment_id, self.lock_keys, concurrency=False)
            metrics.add_metric(name="RecoveriesSkipped", unit="Count", value=1)
            logger.warning("skipped: another recovery holds a lock", holders=exc.details.get("holders"))
            raise
