"""ExecutionEnded: a recovery execution failed, timed out or was aborted (the target of a rule on
Step Functions' "Execution Status Change" events). Nothing may be left behind by an execution
that died: its record "recovering", its locks, concurrency slot and correlation windows held
until their TTL, every new signal about its resources skipped meanwhile, and no one told.

So its changes are rolled back (the cleanup state machine), its locks released and a human paged,
or, for one that ended through Escalate, only what it failed to send is sent again.

Design: docs/safety.md#each-guardrail ("A dead execution")
"""

from __future__ import annotations

import json
from typing import Any

from msgspec import field

from core import aws, clock
from core import settings as settings_module
from core.entry import lambda_entry
from core.envelope import Envelope
from core.errors import classify_client_error
from core.model import Model, ValidationError
from core.observability import logger, metrics
from core.store import RecoveryStore
from orchestration import storm
from orchestration.escalate import release_keys, send_page

DETAIL_TYPE = "Step Functions Execution Status Change"
DIED = ("FAILED", "TIMED_OUT", "ABORTED")
# Outcomes an execution records when it ends its own way: nothing is left to clean up.
ENDED = frozenset({"recovered", "dry_run", "escalated", "skipped", "correlated"})


class Settings(settings_module.Settings, kw_only=True, frozen=True):
    cleanup_state_machine_arn: str = field(default="", name="CLEANUP_STATE_MACHINE_ARN")


class ExecutionStatus(Model, kw_only=True):
    """The detail of Step Functions' Execution Status Change event (the fields used here)."""

    executionArn: str
    stateMachineArn: str
    name: str
    status: str
    error: str | None = None
    cause: str | None = None


@lambda_entry
def handler(event: Any, context: Any, store: Any = None, sfn: Any = None, sns: Any = None) -> dict[str, Any]:
    status = _parse(event)
    if status is None:
        return {"status": "ignored"}
    if status.status not in DIED:
        return {"status": "ignored", "execution_status": status.status}
    settings = settings_module.load("table_name", "escalation_topic_arn", model=Settings)
    store = store or RecoveryStore(settings.table_name)
    logger.set_correlation_id(status.name)
    record = store.get_impairment_checked(status.name)  # with its slots and trip, if any were noted
    if record is None:
        logger.warning("an execution ended with no impairment record", execution=status.executionArn)
        return {"status": "unknown", "execution": status.executionArn}
    cleanup = status.stateMachineArn == settings.cleanup_state_machine_arn
    # A cleanup ends as a recovery that escalates does (its Fail state, "Escalated"), its outcome recorded.
    if record.get("outcome") in ENDED:
        if record.get("page_status") in ("pending", "failed"):
            # It escalated, and its page never went out: try once more (raises if it fails again).
            _page(store, record, record.get("page_reason") or record.get("reason") or "escalated", settings, sns)
            return {"status": "paged", "impairment_id": status.name}
        if _storm_unsummarized(store, record):
            led = record["storm"]
            storm.summarize(store, led["key"], led["storm_id"], settings.escalation_topic_arn, sns)
            return {"status": "storm_summarized", "impairment_id": status.name, "storm_id": led["storm_id"]}
        return {"status": "ended", "impairment_id": status.name, "outcome": record.get("outcome")}
    return _died(store, sfn, sns, settings, record, status, cleanup)


def _storm_unsummarized(store: RecoveryStore, record: dict[str, Any]) -> bool:
    """Whether the record's execution led a storm whose summary was not sent."""
    led = record.get("storm")
    if not isinstance(led, dict) or not led.get("leader"):
        return False
    held = store.storms.get(str(led["key"]), str(led["storm_id"]))
    return held is not None and held.get("summary_status") not in ("sent", "not_needed")


def _parse(event: Any) -> ExecutionStatus | None:
    """The execution's status change; None (logged and counted) when the event is not one."""
    try:
        envelope = Envelope.model_validate(event)
        if envelope.detail_type != DETAIL_TYPE:
            raise ValueError(f"unexpected detail-type {envelope.detail_type!r}")
        return ExecutionStatus.model_validate(envelope.detail)
    except (ValidationError, ValueError) as exc:
        logger.error("ignored an event that is not an execution status change", error=str(exc))
        metrics.add_metric(name="SignalsIgnored", unit="Count", value=1)
        return None


def _died(
    store: RecoveryStore,
    sfn: Any,
    sns: Any,
    settings: Settings,
    record: dict[str, Any],
    status: ExecutionStatus,
    cleanup: bool,
) -> dict[str, Any]:
    """An execution (or its cleanup) died before its outcome was recorded: roll back what it
    changed through the cleanup state machine, or escalate."""
    metrics.add_metric(name="ExecutionsDied", unit="Count", value=1)
    what = "its cleanup" if cleanup else "the recovery's execution"
    verb = {"FAILED": "failed", "TIMED_OUT": "timed out", "ABORTED": "was aborted (StopExecution)"}[status.status]
    reason = ": ".join([f"{what} {verb}", *(part for part in (status.error, status.cause) if part)])[:2000]
    store.fail_started_actions(status.name, reason)
    applied = _applied(store, status.name)
    plan = record.get("plan_state")
    if applied and plan and not cleanup:
        store.update_impairment(status.name, status="rolling_back", outcome="died", reason=reason)
        _start_cleanup(sfn, settings, record, plan, status, reason)
        logger.error("execution died with changes applied: rolling them back", reason=reason, steps=applied)
        return {"status": "rolling_back", "impairment_id": status.name, "steps": applied}

    note = f"; changed before it died, not rolled back: steps {applied}" if applied else "; nothing had been changed"
    store.update_impairment(
        status.name,
        status="escalated",
        outcome="escalated",
        reason=reason + note,
        escalated_at=clock.utc_now().isoformat(),
        paged=False,
        page_status="pending",
        # a trip CheckGuardrails noted, which Escalate did not get to record
        **{k: record[k] for k in ("guardrails_tripped", "guardrail_trips") if record.get(k)},
    )
    store.release_locks(status.name, release_keys({}, record), slots=record.get("budget_slots") or {})
    logger.error("execution died", reason=reason + note)
    _page(store, record, reason + note, settings, sns)
    return {"status": "escalated", "impairment_id": status.name}


def _applied(store: RecoveryStore, impairment_id: str) -> list[int]:
    """The steps that recorded a state before changing something and were not rolled back."""
    records = store.list_actions(impairment_id)
    undone = {r["step_index"] for r in records if r.get("phase") == "rollback" and r.get("status") == "done"}
    return sorted({r["step_index"] for r in records if r.get("phase") == "apply" and r.get("before")} - undone)


def _start_cleanup(
    sfn: Any, settings: Settings, record: dict[str, Any], plan: dict[str, Any], status: ExecutionStatus, reason: str
) -> None:
    """The cleanup state machine rolls the steps back and escalates; named by the impairment, so
    a redelivered event starts it once."""
    client = sfn or aws.client("stepfunctions")
    state = {
        "impairment": record["impairment"],
        "plan": plan,
        "admission": {"lock_keys": release_keys({}, record)},
        "execution": status.executionArn,
        "error": {"Error": "ExecutionDied", "Cause": reason},
    }
    try:
        client.start_execution(
            stateMachineArn=settings.cleanup_state_machine_arn, name=status.name, input=json.dumps(state, default=str)
        )
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            return
        raise classify_client_error(exc, "states:StartExecution") from exc


def _page(store: RecoveryStore, record: dict[str, Any], reason: str, settings: Settings, sns: Any) -> None:
    impairment_id = record["impairment_id"]
    message = {
        "summary": f"Automatic recovery of {record.get('workload')} needs a human: {reason}",
        "impairment_id": impairment_id,
        "reason": reason,
        "execution": record.get("execution_arn"),
        "impairment": record.get("impairment"),
        "plan": record.get("plan"),
        "next_steps": f"recoveryctl show {impairment_id}",
    }
    send_page(store, impairment_id, str(record.get("workload") or "?"), reason, message, settings, sns)
