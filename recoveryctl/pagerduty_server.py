"""A local stand-in for PagerDuty's Events API v2, on 127.0.0.1: it answers as the API does (202
with {"status": "success", "message": "Event processed", "dedup_key": ...}; 400 "invalid event"
with its errors; 429; 500 or 503) and keeps every event posted, for tests and drills to read.

By default it checks an event the way the API does (a routing key of 32 characters, a known
event_action, a trigger's payload with summary, source and a known severity) and answers 202 or
400; `answers` queues statuses to give first (e.g. [429, 503] then normal service)."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass
class FakePagerDuty:
    """Start with `with FakePagerDuty() as server:`; post to `server.url`."""

    answers: deque[int] = field(default_factory=deque)
    retry_after: str | None = None  # sent with a 429
    events: list[dict[str, Any]] = field(default_factory=list)  # accepted (202), in order
    received: list[dict[str, Any]] = field(default_factory=list)  # everything posted, with the status answered

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-pagerduty", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v2/enqueue"

    def __enter__(self) -> FakePagerDuty:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, event: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The status, body and headers the Events API gives this event."""
        with self._lock:
            forced = self.answers.popleft() if self.answers else None
            errors = invalid(event)
            if forced == 429:
                status, body = 429, {"status": "throttle event", "message": "Requests for this service are throttled"}
            elif forced is not None and forced >= 500:
                status, body = forced, {"status": "error", "message": "Internal Server Error"}
            elif forced == 400 or errors:
                status = 400
                body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors or ["forced"]}
            else:
                status = 202
                body = {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key")}
            self.received.append({"status": status, "event": event})
            if status == 202:
                self.events.append(event)
            headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
            return status, body, headers


def invalid(event: Any) -> list[str]:
    """What the Events API v2 would reject in an event (its 400's errors)."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors = []
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("'routing_key' must be a 32 character string")
    if event.get("event_action") not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    if event.get("event_action") in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve events")
    if event.get("event_action") == "trigger":
        payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
        for name in ("summary", "source"):
            if not payload.get(name):
                errors.append(f"'payload.{name}' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
        if len(str(payload.get("summary") or "")) > 1024:
            errors.append("'payload.summary' is longer than 1024 characters")
    return errors


def _handler(server: FakePagerDuty) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                event = json.loads(raw)
            except ValueError:
                event = None
            if self.path != "/v2/enqueue":
                status, body, headers = 404, {"status": "not found"}, {}
            else:
                status, body, headers = server.answer(event)
            encoded = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, *_: Any) -> None:  # quiet
            return

    return Handler
