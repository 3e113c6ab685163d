"""Escalate to a human: publish the whole context on the escalation topic, record the outcome,
release the locks. Reached when no plan matches, an action fails, verification fails (after the
rollback) or the rollback itself fails."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from core import aws, clock
from core import settings as settings_module
from core.entry import lambda_entry
from core.errors import classify_client_error
from core.observability import logger, metrics
from core.store import RecoveryStore

_SUBJECT_LIMIT = 100  # SNS subjects: at most 100 printable ASCII characters


def reason_of(event: dict[str, Any]) -> str:
    if event.get("rollback_error"):
        return f"rollback failed: {_error_text(event['rollback_error'])}"
    if event.get("error"):
        return _error_text(event["error"])
    verification = event.get("verification") or {}
    if verification and not verification.get("healthy"):
        return f"not healthy after {verification.get('attempt')} verification attempts"
    return "recovery did not complete"


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
        "next_steps": f"recoveryctl show {impairment_id}",
    }
    subject = f"[recovery] {impairment.get('workload', '?')}: {reason}"
    subject = "".join(ch for ch in subject if 32 <= ord(ch) < 127)[:_SUBJECT_LIMIT]
    try:
        (sns or aws.client("sns")).publish(
            TopicArn=settings.escalation_topic_arn, Subject=subject, Message=json.dumps(message, default=str, indent=2)
        )
    except Exception as exc:
        raise classify_client_error(exc, "sns:Publish") from exc
    now = clock.utc_now().isoformat()
    store.update_impairment(
        impairment_id,
        status="escalated",
        outcome="skipped" if (event.get("error") or {}).get("Error") == "RecoveryPaused" else "escalated",
        reason=reason,
        escalated_at=now,
        rolled_back=bool(rolled_back),
    )
    store.release_locks(impairment_id, (event.get("admission") or {}).get("lock_keys", []))
    metrics.add_metric(name="RecoveriesEscalated", unit="Count", value=1)
    if rolled_back:
        metrics.add_metric(name="RecoveriesRolledBack", unit="Count", value=1)
    logger.warning("escalated", reason=reason)
    return {"outcome": "escalated", "reason": reason, "escalated_at": now}
