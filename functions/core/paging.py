"""Paging a human: one message on the escalation topic, the same shape from every sender."""

from __future__ import annotations

import json
from typing import Any

from core import aws, clock
from core.errors import classify_client_error

_SUBJECT_LIMIT = 100  # SNS subjects: at most 100 printable ASCII characters


def page(topic_arn: str, workload: str, headline: str, message: dict[str, Any], sns: Any = None) -> None:
    """Publish `message` (JSON) with a subject naming the workload and the headline, and the
    time it was sent (`sent_at`, unless the message has one): the reader sees when it was paged,
    whatever the channel does to delivery times."""
    message = {**message, "sent_at": message.get("sent_at") or clock.utc_now().isoformat()}
    subject = f"[recovery] {workload or '?'}: {headline}"
    subject = "".join(ch for ch in subject if 32 <= ord(ch) < 127)[:_SUBJECT_LIMIT]
    try:
        (sns or aws.client("sns")).publish(
            TopicArn=topic_arn, Subject=subject, Message=json.dumps(message, default=str, indent=2)
        )
    except Exception as exc:
        raise classify_client_error(exc, "sns:Publish") from exc
