"""PagerDuty Events API v2: a message of the escalation topic as the event it is, and its delivery.

A page triggers an alert whose dedup_key is the impairment id (a storm's summary: the storm's), so a
repeated page joins the incident it opened and the resolve sent when the impairment recovers or
clears closes it. The system's own CloudWatch alarms reach the same topic: ALARM triggers, OK
resolves, keyed by the alarm's name. The answers decide what happens to the message: 202 is done;
400 is a payload PagerDuty will never accept (dropped, logged, counted); 429, 5xx and no answer
are retried (the queue gives it back later, after Retry-After when PagerDuty sends one).

Design: docs/operations.md#paging
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from core import paging
from core.errors import PermanentError, TransientError

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
CLIENT = "impairment-recovery"
_SUMMARY_LIMIT = 1024  # payload.summary: at most 1024 characters
_TIMEOUT_SECONDS = 10
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DeliveryFailed(TransientError):
    """PagerDuty throttled (429), failed (5xx) or could not be reached: try again later
    (`retry_after`: seconds PagerDuty asked to wait, if it said)."""

    def __init__(self, message: str, retry_after: float | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class EventRejected(PermanentError):
    """PagerDuty refused the event as invalid (400): sending it again cannot succeed."""


def event_of(body: Any, routing_key: str) -> dict[str, Any] | None:
    """No I/O: the Events API v2 event of a topic message; None for a message that is not a page,
    a resolve or an alarm's ALARM or OK (nothing to send)."""
    envelope = paging.envelope(body)
    if envelope is None:
        return _alarm_event(body, routing_key)
    if envelope["event_action"] == paging.RESOLVE:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": envelope["dedup_key"]}
    message = paging.details(body)
    message.pop("event_action", None)
    impairment = message.get("impairment") if isinstance(message.get("impairment"), dict) else {}
    related = paging.related_resources(impairment)
    payload = {
        "summary": str(message.get("summary") or body["content"].get("title") or "recovery needs a human")[
            :_SUMMARY_LIMIT
        ],
        "source": envelope["workload"],
        "severity": envelope["severity"],
        "timestamp": message.get("sent_at"),
        "component": related[0] if related else None,
        "group": envelope["workload"],
        "class": impairment.get("impairment_type") or envelope["kind"],
        "custom_details": message,
    }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": envelope["dedup_key"],
        "payload": {k: v for k, v in payload.items() if v is not None},
        "client": CLIENT,
    }
    if envelope.get("execution_url"):
        event["client_url"] = envelope["execution_url"]
        event["links"] = [{"href": envelope["execution_url"], "text": "Step Functions execution"}]
    return event


def _alarm_event(body: Any, routing_key: str) -> dict[str, Any] | None:
    """A CloudWatch alarm's notification (the system's own alarms notify the topic)."""
    if not isinstance(body, dict) or not body.get("AlarmName") or "NewStateValue" not in body:
        return None
    dedup_key = f"alarm-{body['AlarmName']}"
    if body["NewStateValue"] == "OK":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    if body["NewStateValue"] != "ALARM":
        return None
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": f"{body['AlarmName']}: {body.get('NewStateReason') or 'in ALARM'}"[:_SUMMARY_LIMIT],
            "source": str(body.get("AlarmArn") or body["AlarmName"]),
            "severity": "error",
            "timestamp": body.get("StateChangeTime"),
            "class": "recovery-system-alarm",
            "custom_details": {k: body.get(k) for k in ("AlarmDescription", "NewStateReason", "Region", "AlarmArn")},
        },
        "client": CLIENT,
    }


def checked_url(url: str) -> str:
    """The Events API endpoint: HTTPS, or plain HTTP on this machine only (a test's or a drill's
    server): the routing key never travels in clear text."""
    parsed = urlparse(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in _LOOPBACK):
        return url
    raise PermanentError(f"PAGERDUTY_EVENTS_URL must be https (or http on 127.0.0.1): {url!r}")


def send(event: dict[str, Any], url: str = EVENTS_URL, timeout: float = _TIMEOUT_SECONDS) -> dict[str, Any]:
    """POST the event; PagerDuty's answer when it took it (202), else raise: EventRejected (400),
    DeliveryFailed (429, 5xx, any other status, no answer)."""
    request = urllib.request.Request(  # noqa: S310 - checked_url: https, or http on loopback
        checked_url(url),
        data=json.dumps(event, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked_url
            return _json(response.read())
    except urllib.error.HTTPError as exc:
        status, answer, retry_after = exc.code, _json(exc.read()), _seconds(exc.headers.get("Retry-After"))
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"PagerDuty could not be reached: {exc}", code="Connection") from exc
    said = f"{answer.get('status') or ''}: {answer.get('message') or ''}".strip(": ")
    if status == 400:
        raise EventRejected(f"PagerDuty rejected the event (400 {said})", code="400", errors=answer.get("errors"))
    raise DeliveryFailed(f"PagerDuty answered {status} {said}".strip(), retry_after=retry_after, code=str(status))


def _json(raw: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw[:500].decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {}


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds (PagerDuty sends seconds; an HTTP date is not honoured: None)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
