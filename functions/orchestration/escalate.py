"""Escalate to a human: publish the whole context on the escalation topic, record the outcome,
release the locks. Reached when automatic recovery is paused, no plan matches, a guardrail trips,
an approval is rejected or never comes, an action fails, verification fails (after the rollback)
or the rollback itself fails."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from typing import Any

from core import clock, paging
from core import settings as settings_module
from core.entry import lambda_entry
from core.errors import ApprovalRejected
from core.guardrails import APPROVAL
from core.observability import logger, metrics
from core.store import RecoveryStore

_IMPAIRMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def reason_of(event: dict[str, Any]) -> str:
    if event.get("approval_error"):
        return _approval_text(_mapping(event.get("approval_error")), _mapping(event.get("plan")))
    if event.get("rollback_error"):
        return f"rollback failed: {_error_text(_mapping(event['rollback_error']))}"
    if event.get("error"):
        return _error_text(_mapping(event["error"]))
    verification = _mapping(event.get("verification"))
    if verification and not verification.get("healthy"):
        return f"not healthy after {verification.get('attempt')} verification attempts"
    return "recovery did not complete"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _approval_text(error: dict[str, Any], plan: dict[str, Any]) -> str:
    if error.get("Error") == "States.Timeout":
        return (
            f"approval: plan {plan.get('name')} needs a human's approval and none came within "
            f"{plan.get('approval_timeout_seconds')} s; nothing was changed"
        )
    if error.get("Error") == ApprovalRejected.__name__:
        why = error.get("Cause") or "no reason given"
        return f"approval: plan {plan.get('name')} was rejected ({why}); nothing was changed"
    return f"approval: {_error_text(error)}"


def _error_text(error: dict[str, Any]) -> str:
    cause = str(error.get("Cause") or "")
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage", cause)
    return f"{error.get('Error', 'Error')}: {cause}".strip(": ")


@lambda_entry
def handler(event: Any, context: Any, store: Any = None, sns: Any = None) -> dict[str, Any]:
    # The last resort of every failure path: whatever it is given, a human is paged.
    settings = settings_module.load("table_name", "escalation_topic_arn")
    store = store or RecoveryStore(settings.table_name)
    event = event if isinstance(event, dict) else {"input": event}
    impairment = _mapping(event.get("impairment"))
    known = _IMPAIRMENT_ID.match(str(impairment.get("impairment_id", "")))
    impairment_id = impairment["impairment_id"] if known else "unknown"
    reason = reason_of(event)
    record = (store.get_impairment(impairment_id) if known else None) or {}
    tripped = list(record.get("guardrails_tripped") or [])
    if event.get("approval_error") and APPROVAL not in tripped:
        tripped.append(APPROVAL)
    error_name = _mapping(event.get("error")).get("Error")
    rolled_back = (
        [r for r in event.get("rollbacks") or [] if isinstance(r, dict)]
        if isinstance(event.get("rollbacks"), list)
        else []
    )
    message = {
        "summary": f"Automatic recovery of {impairment.get('workload')} needs a human: {reason}",
        "impairment_id": impairment_id,
        "reason": reason,
        "execution": event.get("execution"),
        "impairment": impairment,
        "plan": _mapping(event.get("plan")).get("name"),
        "actions": event.get("actions"),
        "verification": event.get("verification"),
        "rollbacks": rolled_back,
        "guardrails_tripped": tripped,
        "guardrail_evidence": record.get("guardrail_trips"),
        "next_steps": f"recoveryctl show {impairment_id}",
    }
    # A guardrail that tripped again on resources already escalated within its window (the sweep
    # finds the same deferred instance every minute) is recorded, not paged again.
    paged = record.get("page", True) is not False
    if paged:
        paging.page(settings.escalation_topic_arn, str(impairment.get("workload", "?")), reason, message, sns=sns)
    now = clock.utc_now().isoformat()
    if not known:
        # Recorded under an id of its own (from the input), with the input, for the audit trail.
        raw = json.dumps(event, default=str, sort_keys=True)
        impairment_id = f"unidentified-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"
        store.put_impairment(
            {"impairment_id": impairment_id, "workload": "unidentified", "detected_at": now},
            status="escalated",
            outcome="escalated",
            reason=reason,
            escalated_at=now,
            paged=paged,
            execution_input=raw[:20_000],
        )
        logger.error("escalated an execution state without a valid impairment", reason=reason, record=impairment_id)
        return _outcome(impairment_id, reason, now, paged, [])
    store.update_impairment(
        impairment_id,
        status="escalated" if paged else "skipped",
        outcome="skipped" if error_name == "RecoveryPaused" or not paged else "escalated",
        reason=reason if paged else f"{reason} (already escalated within the guardrail's window: not paged again)",
        escalated_at=now,
        paged=paged,
        rolled_back=bool(rolled_back),
        guardrails_tripped=tripped,
    )
    lock_keys = _mapping(event.get("admission")).get("lock_keys")
    store.release_locks(
        impairment_id, [k for k in lock_keys if isinstance(k, str)] if isinstance(lock_keys, list) else []
    )
    metrics.add_metric(name="RecoveriesEscalated", unit="Count", value=1)
    if "rollback_steps" in event or event.get("rollback_error"):
        # It acted and did not recover (an action failed, or verification did): the workflow's
        # self-alarm counts escalations apart from these.
        metrics.add_metric(name="RecoveriesFailed", unit="Count", value=1)
    if rolled_back:
        metrics.add_metric(name="RecoveriesRolledBack", unit="Count", value=1)
    logger.warning("escalated", reason=reason)
    return _outcome(impairment_id, reason, now, paged, tripped)


def _outcome(impairment_id: str, reason: str, at: str, paged: bool, tripped: list[str]) -> dict[str, Any]:
    return {
        "outcome": "escalated",
        "impairment_id": impairment_id,
        "reason": reason,
        "escalated_at": at,
        "paged": paged,
        "guardrails_tripped": tripped,
    }
