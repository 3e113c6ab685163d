"""Escalate to a human: publish the whole context on the escalation topic, record the outcome,
release the locks. Reached when automatic recovery is paused, no plan matches, a guardrail trips,
an approval is rejected or never comes, an action fails, verification fails (after the rollback)
or the rollback itself fails."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from core import clock, paging
from core import settings as settings_module
from core.entry import lambda_entry
from core.guardrails import APPROVAL
from core.observability import logger, metrics
from core.store import RecoveryStore


def reason_of(event: dict[str, Any]) -> str:
    if event.get("approval_error"):
        return _approval_text(event["approval_error"], event.get("plan") or {})
    if event.get("rollback_error"):
        return f"rollback failed: {_error_text(event['rollback_error'])}"
    if event.get("error"):
        return _error_text(event["error"])
    verification = event.get("verification") or {}
    if verification and not verification.get("healthy"):
        return f"not healthy after {verification.get('attempt')} verification attempts"
    return "recovery did not complete"


def _approval_text(error: dict[str, Any], plan: dict[str, Any]) -> str:
    if error.get("Error") == "States.Timeout":
        return (
            f"approval: plan {plan.get('name')} needs a human's approval and none came within "
            f"{plan.get('approval_timeout_seconds')} s; nothing was changed"
        )
    if error.get("Error") == "ApprovalRejected":
        why = error.get("Cause") or "no reason given"
        return f"approval: plan {plan.get('name')} was rejected ({why}); nothing was changed"
    return f"approval: {_error_text(error)}"


def _error_text(error: dict[str, Any]) -> str:
    cause = error.get("Cause") or ""
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage", cause)
    return f"{error.get('Error', 'Error')}: {cause}".strip(": ")


@lambda_entry
def handler(event: Any, context: Any, store: Any = None, sns: Any = None) -> dict[str, Any]:
    settings = settings_module.load("table_name", "escalation_topic_arn")
    store = store or RecoveryStore(settings.table_name)
    impairment = event.get("impairment") or {}
    impairment_id = impairment.get("impairment_id", "unknown")
    reason = reason_of(event)
    record = store.get_impairment(impairment_id) or {}
    tripped = list(record.get("guardrails_tripped") or [])
    if event.get("approval_error") and APPROVAL not in tripped:
        tripped.append(APPROVAL)
    error_name = (event.get("error") or {}).get("Error")
    rolled_back = [r for r in event.get("rollbacks") or [] if isinstance(r, dict)]
    message = {
        "summary": f"Automatic recovery of {impairment.get('workload')} needs a human: {reason}",
        "impairment_id": impairment_id,
        "reason": reason,
        "execution": event.get("execution"),
        "impairment": impairment,
        "plan": (event.get("plan") or {}).get("name"),
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
        paging.page(settings.escalation_topic_arn, impairment.get("workload", "?"), reason, message, sns=sns)
    now = clock.utc_now().isoformat()
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
    store.release_locks(impairment_id, (event.get("admission") or {}).get("lock_keys", []))
    metrics.add_metric(name="RecoveriesEscalated", unit="Count", value=1)
    if rolled_back:
        metrics.add_metric(name="RecoveriesRolledBack", unit="Count", value=1)
    logger.warning("escalated", reason=reason)
    return {
        "outcome": "escalated",
        "reason": reason,
        "escalated_at": now,
        "paged": paged,
        "guardrails_tripped": tripped,
    }
