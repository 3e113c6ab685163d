"""The EventBridge envelope of an event, as every handler that parses one reads it.

A model of our own rather than Powertools' EventBridgeModel: importing that one imports the
package of every event model Powertools knows (about 100 ms of cold start, measured), and the
envelope is a handful of documented fields (docs.aws.amazon.com/eventbridge, "Amazon
EventBridge events"): version, id, detail-type, source, account, time, region, resources, detail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta, field

from core.model import Model

NonEmpty = Annotated[str, Meta(min_length=1)]


class Envelope(Model, kw_only=True):
    """The EventBridge envelope (the fields our handlers read); `detail` stays a plain object.
    Other fields are ignored. Detectors' envelopes narrow `detail` (and `source`) to their event's."""

    id: NonEmpty
    detail_type: NonEmpty = field(name="detail-type")
    source: NonEmpty
    account: str = ""
    time: datetime
    region: str = ""
    resources: list[str] = []
    detail: dict[str, Any] = {}

    def _check(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("time: the event time must carry a time zone")
