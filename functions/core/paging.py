"""Paging a human: one message on the escalation topic, the same shape from every sender.

The topic is the one channel (email, chat, the PagerDuty notifier, OpsCenter), so each message is
an AWS Chatbot custom notification (only its documented fields) whose metadata.additionalContext
carries the notifier's envelope: event action (trigger or resolve), dedup key (the impairment id),
PagerDuty severity, the execution's console link and the sender's whole message (`details`). The
SNS Subject stays as it was, for email. A paged impairment that recovers or clears is resolved
(`resolve_if_paged`). Design: docs/operations.md#paging
"""

from __future__ import annotations

import json
from typing import Any

from core import aws, clock
from core.errors import RecoveryError, classify_client_error
from core.observability import logger, metrics

_SUBJECT_LIMIT = 100  # SNS subjects: at most 100 printable ASCII characters
_DESCRIPTION_LIMIT = 3500  # what reads well in a chat message; the whole context is in `details`
TRIGGER, RESOLVE = "trigger", "resolve"
# Impairment severity -> PagerDuty's (critical, error, warning, info).
PAGER_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
# The impairment's record says a page about it was sent: an escalation's, an approval request's,
# a blast radius deferral's (check_guardrails pages the first of those).
_PAGED_FIELDS = ("approval", "deferred_resources")
# Outcomes of a recovery that has ended (a cleared signal resolves its page only then).
ENDED = frozenset({"recovered", "dry_run", "escalated", "skipped"})


def page(topic_arn: str, workload: str, headline: str, message: dict[str, Any], sns: Any = None) -> None:
    """Publish `message` as a trigger, with a subject naming the workload and the headline, and the
    time it was sent (`sent_at`, unless the message has one): the reader sees when it was paged,
    whatever the channel does to delivery times. Its dedup key is `message["dedup_key"]`, else the
    impairment id (a storm's summary and a capacity not returned have keys of their own)."""
    message = {**message, "sent_at": message.get("sent_at") or clock.utc_now().isoformat()}
    _publish(topic_arn, workload, headline, notification(workload, headline, message, TRIGGER), sns)


def resolve(topic_arn: str, workload: str, impairment_id: str, why: str, sns: Any = None) -> None:
    """Publish the resolve of what was paged about `impairment_id` (same dedup key)."""
    message = {
        "summary": f"Resolved: the impairment of {workload} that paged is over ({why}); nothing more to do",
        "impairment_id": impairment_id,
        "resolution": why,
        "sent_at": clock.utc_now().isoformat(),
        "next_steps": f"recoveryctl show {impairment_id}",
    }
    _publish(topic_arn, workload, f"resolved: {why}", notification(workload, f"resolved: {why}", message, RESOLVE), sns)


def _publish(topic_arn: str, workload: str, headline: str, body: dict[str, Any], sns: Any) -> None:
    subject = f"[recovery] {workload or '?'}: {headline}"
    subject = "".join(ch for ch in subject if 32 <= ord(ch) < 127)[:_SUBJECT_LIMIT]
    try:
        (sns or aws.client("sns")).publish(
            TopicArn=topic_arn, Subject=subject, Message=json.dumps(body, default=str, indent=2)
        )
    except Exception as exc:
        raise classify_client_error(exc, "sns:Publish") from exc


def was_paged(record: dict[str, Any]) -> bool:
    """Whether a page went out about this impairment under its own id (aggregated into a storm's
    summary does not count: that page has the storm's key)."""
    return record.get("paged") is True or any(record.get(f) for f in _PAGED_FIELDS)


def resolve_if_paged(
    store: Any, impairment_id: str, why: str, topic_arn: str, record: dict[str, Any] | None = None, sns: Any = None
) -> bool:
    """Resolve the page about an impairment that ended (recovered, dry run, cleared), once, if one
    was sent. Best effort: a resolve that cannot be sent is logged and counted (PagesFailed) and
    leaves the incident open for a human, never fails the recovery that ended well."""
    if not topic_arn:
        return False
    record = record if record is not None else (store.get_impairment(impairment_id) or {})
    if not was_paged(record) or record.get("page_resolved_at"):
        return False
    workload = str(record.get("workload") or (record.get("impairment") or {}).get("workload") or "?")
    try:
        resolve(topic_arn, workload, impairment_id, why, sns)
        store.update_impairment(impairment_id, page_resolved_at=clock.utc_now().isoformat())
    except RecoveryError as exc:
        metrics.add_metric(name="PagesFailed", unit="Count", value=1)
        logger.error("the resolve of a page could not be sent", impairment_id=impairment_id, error=str(exc))
        return False
    logger.info("page resolved", impairment_id=impairment_id, why=why)
    return True


# --- the message: a Chatbot custom notification carrying the notifier's envelope ---------------


def notification(workload: str, headline: str, message: dict[str, Any], action: str = TRIGGER) -> dict[str, Any]:
    """No I/O: the Chatbot custom notification of a page (or a resolve) and its envelope."""
    impairment = message.get("impairment") if isinstance(message.get("impairment"), dict) else {}
    dedup_key = str(message.get("dedup_key") or message.get("impairment_id") or "unknown")
    severity = str(message.get("severity") or PAGER_SEVERITY.get(str(impairment.get("severity")), "error"))
    kind = kind_of(message, action)
    url = execution_url(message.get("execution"))
    steps = [str(s) for s in (message.get("next_steps"), message.get("approve"), message.get("reject")) if s]
    context = {
        "event_action": action,
        "dedup_key": dedup_key,
        "severity": severity,
        "kind": kind,
        "workload": workload or "?",
        "impairment_id": str(message.get("impairment_id") or ""),
        "execution_url": url or "",
        "details": json.dumps(message, default=str),
    }
    icon = ":white_check_mark:" if action == RESOLVE else ":rotating_light:"
    return {
        "version": "1.0",
        "source": "custom",
        "id": f"{dedup_key}#{action}#{message.get('sent_at') or ''}"[:256],
        "content": {
            "textType": "client-markdown",
            "title": f"{icon} {workload or '?'}: {headline}"[:250],
            "description": _description(message, impairment, url)[:_DESCRIPTION_LIMIT],
            "nextSteps": steps,
            "keywords": [
                str(k) for k in (workload, impairment.get("impairment_type"), impairment.get("severity")) if k
            ],
        },
        "metadata": {
            "threadId": dedup_key,  # a resolve lands in the thread of its trigger
            "summary": str(message.get("summary") or headline)[:1000],
            "eventType": kind,
            "relatedResources": related_resources(impairment),
            "additionalContext": context,
        },
    }


def kind_of(message: dict[str, Any], action: str) -> str:
    if action == RESOLVE:
        return "resolved"
    if "approve" in message:
        return "approval"
    if "storm_key" in message:
        return "storm_summary"
    if "guardrail" in message:
        return "guardrail"
    return "escalation"


def execution_url(execution: Any) -> str | None:
    """The Step Functions console page of an execution ARN (arn:aws:states:REGION:ACCOUNT:execution:...)."""
    parts = str(execution or "").split(":")
    if len(parts) < 7 or parts[2] != "states" or parts[5] != "execution":
        return None
    region = parts[3]
    domain = "console.amazonaws.cn" if parts[1] == "aws-cn" else "console.aws.amazon.com"
    return f"https://{region}.{domain}/states/home?region={region}#/v2/executions/details/{execution}"


def related_resources(impairment: dict[str, Any]) -> list[str]:
    resources = impairment.get("affected_resources") or []
    found = [
        f"{r.get('resource_type')}/{r['resource_id']}"
        for r in resources
        if isinstance(r, dict) and r.get("resource_id")
    ]
    return found[:20]


def _description(message: dict[str, Any], impairment: dict[str, Any], url: str | None) -> str:
    """Markdown for chat: the summary, what the impairment is, what ran (before -> after), links."""
    lines = [str(message.get("summary") or "")]
    if impairment:
        lines.append(
            f"*Impairment* `{message.get('impairment_id')}`: {impairment.get('impairment_type')} "
            f"({impairment.get('severity')}) of {impairment.get('workload')}"
        )
    if message.get("plan"):
        plan = message["plan"]
        lines.append(f"*Plan*: {plan.get('name') if isinstance(plan, dict) else plan}")
    for action in message.get("actions") or []:
        if isinstance(action, dict):
            lines.append(f"• {_action_line(action)}")
    if message.get("reason"):
        lines.append(f"*Why*: {message['reason']}")
    if message.get("approve"):
        lines.append(f"*Approve*: `{message['approve']}`  *Reject*: `{message.get('reject')}`")
    if url:
        lines.append(f"<{url}|Step Functions execution>")
    return "\n".join(line for line in lines if line)


def _action_line(action: dict[str, Any]) -> str:
    before, after = action.get("before"), action.get("after")
    change = f": {_brief(before)} -> {_brief(after)}" if before is not None or after is not None else ""
    name = action.get("action") or action.get("name") or f"step {action.get('step_index')}"
    return f"{name} {action.get('result') or action.get('status') or ''}{change}".strip()


def _brief(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))[:120]


# --- reading a message back (the notifier, the emulator, tests) ----------------------------------


def envelope(body: Any) -> dict[str, str] | None:
    """The envelope of a message published by `page` or `resolve`; None for anything else (a
    CloudWatch alarm's notification, a message of another sender)."""
    if not isinstance(body, dict) or body.get("source") != "custom":
        return None
    context = (body.get("metadata") or {}).get("additionalContext")
    if not isinstance(context, dict) or context.get("event_action") not in (TRIGGER, RESOLVE):
        return None
    return {str(k): str(v) for k, v in context.items()}


def details(body: Any) -> Any:
    """The sender's message inside a notification (with its event action); any other body as it is."""
    found = envelope(body)
    if found is None:
        return body
    try:
        message = json.loads(found.get("details") or "{}")
    except ValueError:
        message = {}
    return {**(message if isinstance(message, dict) else {}), "event_action": found["event_action"]}
