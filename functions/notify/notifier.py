"""Notifier: reads the escalation topic (an SQS queue subscribed with raw message delivery) and
sends each page and resolve on to PagerDuty (notify/pagerduty.py) and OpsCenter
(notify/opsitems.py), whichever the deployment configures.

Each message is its own item of the batch (Powertools' partial batch response): one that failed
for now goes back to the queue and is received again (after PagerDuty's Retry-After when it sent
one), up to the queue's maxReceiveCount, then to its dead-letter queue, which is alarmed. One that
can never succeed (PagerDuty's 400, a body that is not JSON) is dropped, logged and counted
(NotificationsDropped), so it cannot hold the queue.

Design: docs/operations.md#paging
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from msgspec import field

from core import aws
from core import settings as settings_module
from core.entry import lambda_entry
from core.errors import PermanentError
from core.observability import logger, metrics
from notify import opsitems, pagerduty

_SECRET_MAX_AGE_SECONDS = 300  # a rotated routing key is read within 5 minutes
_MAX_VISIBILITY_SECONDS = 43_200  # SQS's longest visibility timeout


class Settings(settings_module.Settings, kw_only=True, frozen=True):
    routing_key_secret: str = field(default="", name="PAGERDUTY_ROUTING_KEY_SECRET")
    events_url: str = field(default=pagerduty.EVENTS_URL, name="PAGERDUTY_EVENTS_URL")
    ops_items: bool = field(default=False, name="OPS_ITEMS")
    queue_url: str = field(default="", name="NOTIFY_QUEUE_URL")


# Every item reported, even when all failed (Powertools would raise: the same retry, read less plainly).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@lambda_entry
def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = settings_module.load(model=Settings)
    return process_partial_response(
        event=event, record_handler=lambda record: deliver(record, settings), processor=processor, context=context
    )


def deliver(record: SQSRecord, settings: Settings, ssm: Any = None, sqs: Any = None) -> str:
    """One message to each configured destination; what was done. Raises to have it retried."""
    try:
        body = json.loads(record.body)
    except ValueError:
        return _drop(record, PermanentError("the message is not JSON"))
    done = []
    for name, send in _destinations(body, settings, ssm):
        try:
            done.append(f"{name}: {send()}")
        except pagerduty.DeliveryFailed as exc:
            _later(record, settings, exc.retry_after, sqs)
            raise
        except PermanentError as exc:  # this destination only: the others still get it
            done.append(f"{name}: {_drop(record, exc)}")
    logger.info("notified", message_id=record.message_id, done=done)
    return "; ".join(done)


def _destinations(body: Any, settings: Settings, ssm: Any) -> list[tuple[str, Callable[[], str]]]:
    destinations: list[tuple[str, Callable[[], str]]] = []
    if settings.routing_key_secret:
        destinations.append(("pagerduty", lambda: _to_pagerduty(body, settings)))
    if settings.ops_items:
        destinations.append(("opsitem", lambda: str(opsitems.sync(body, ssm))))
    return destinations


def _to_pagerduty(body: Any, settings: Settings) -> str:
    event = pagerduty.event_of(body, routing_key(settings.routing_key_secret))
    if event is None:
        return "nothing to send"
    answer = pagerduty.send(event, settings.events_url)
    metrics.add_metric(name="PagerDutyEventsSent", unit="Count", value=1)
    return f"{event['event_action']} {event['dedup_key']} ({answer.get('status', 'accepted')})"


def routing_key(secret: str) -> str:
    """The integration's routing key, from Secrets Manager (cached: one read per 5 minutes per
    environment). The secret is the key itself, or JSON with a "routing_key" field."""
    from aws_lambda_powertools.utilities import parameters

    value = str(parameters.get_secret(secret, max_age=_SECRET_MAX_AGE_SECONDS))
    try:
        decoded = json.loads(value)
    except ValueError:
        return value.strip()
    return str(decoded.get("routing_key") or "") if isinstance(decoded, dict) else value.strip()


def _drop(record: SQSRecord, exc: Exception) -> str:
    metrics.add_metric(name="NotificationsDropped", unit="Count", value=1)
    details = getattr(exc, "details", {})
    logger.error(
        "notification dropped: it can never be delivered", message_id=record.message_id, error=str(exc), **details
    )
    return f"dropped: {exc}"


def _later(record: SQSRecord, settings: Settings, retry_after: float | None, sqs: Any) -> None:
    """Hold the message back for as long as PagerDuty asked (best effort: without it, the queue's
    own visibility timeout applies)."""
    metrics.add_metric(name="PagerDutyDeliveriesRetried", unit="Count", value=1)
    if retry_after is None or not settings.queue_url:
        return
    try:
        (sqs or aws.client("sqs")).change_message_visibility(
            QueueUrl=settings.queue_url,
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=min(_MAX_VISIBILITY_SECONDS, int(retry_after + 0.999)),
        )
    except Exception as exc:  # noqa: BLE001 - the retry happens anyway, at the queue's pace
        logger.warning("could not apply Retry-After", error=str(exc))
