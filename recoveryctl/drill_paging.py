"""PagerDuty in a drill: a deployment whose notifier pages PagerDuty (paging.pagerduty) gets a local
server on 127.0.0.1 answering as the Events API v2 (recoveryctl/pagerduty_server.py), the routing
key's secret in the emulator's Secrets Manager, and the notifier pointed at the server; the report
lists what the server received."""

from __future__ import annotations

from typing import Any

from recoveryctl.pagerduty_server import FakePagerDuty

ROUTING_KEY_VARIABLE = "PAGERDUTY_ROUTING_KEY_SECRET"
DRILL_ROUTING_KEY = "drillroutingkey00000000000000000"  # 32 characters, as PagerDuty's


def attach(emulators: list[Any]) -> FakePagerDuty | None:
    """Start the server if some stack's notifier pages PagerDuty; None otherwise."""
    notifiers = [(e, f) for e in emulators for f in e.functions.values() if f.environment.get(ROUTING_KEY_VARIABLE)]
    if not notifiers:
        return None
    server = FakePagerDuty().__enter__()
    for emulator, function in notifiers:
        function.environment["PAGERDUTY_EVENTS_URL"] = server.url
        secrets = emulator.client("secretsmanager")
        secrets.create_secret(Name=function.environment[ROUTING_KEY_VARIABLE], SecretString=DRILL_ROUTING_KEY)
    return server


def received(server: FakePagerDuty | None) -> list[dict[str, Any]] | None:
    """What the server received, in order: the status it answered, the event's action and dedup
    key, a trigger's summary and severity (None: the deployment does not page PagerDuty)."""
    if server is None:
        return None
    return [
        {
            "status": r["status"],
            "event_action": r["event"].get("event_action"),
            "dedup_key": r["event"].get("dedup_key"),
            **(
                {"summary": r["event"]["payload"].get("summary"), "severity": r["event"]["payload"].get("severity")}
                if isinstance(r["event"].get("payload"), dict)
                else {}
            ),
        }
        for r in server.received
        if isinstance(r["event"], dict)
    ]
