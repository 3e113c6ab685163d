"""The one event publisher: puts contract events on the recovery bus."""

from __future__ import annotations

from typing import Any

from core import aws
from core.contract import EVENT_SOURCE
from core.errors import PublishError, classify_client_error
from core.model import Model

_BATCH = 10  # PutEvents takes at most 10 entries


class EventPublisher:
    def __init__(self, bus_name: str, client: Any = None, source: str = EVENT_SOURCE) -> None:
        self.bus_name = bus_name
        self.source = source
        self._client = client

    def publish(self, detail_type: str, details: list[Model]) -> int:
        """Put the events; raise PublishError listing every entry PutEvents rejected."""
        client = self._client or aws.client("events")
        entries = [
            {
                "Source": self.source,
                "DetailType": detail_type,
                "Detail": detail.model_dump_json(),
                "EventBusName": self.bus_name,
                "Resources": [],
            }
            for detail in details
        ]
        failed: list[dict[str, Any]] = []
        for start in range(0, len(entries), _BATCH):
            batch = entries[start : start + _BATCH]
            try:
                response = client.put_events(Entries=batch)
            except Exception as exc:
                raise classify_client_error(exc, "events:PutEvents") from exc
            if response.get("FailedEntryCount", 0):
                for entry, result in zip(batch, response.get("Entries", []), strict=False):
                    if result.get("ErrorCode"):
                        failed.append(
                            {
                                "detail": entry["Detail"],
                                "code": result["ErrorCode"],
                                "message": result.get("ErrorMessage"),
                            }
                        )
        if failed:
            raise PublishError(f"{len(failed)} of {len(entries)} events were not accepted", failed=failed)
        return len(entries)
