"""The EventBridge envelope of an event, as every handler that parses one reads it.

A model of our own rather than Powertools' EventBridgeModel: importing that one imports the
package of every event model Powertools knows (about 100 ms of cold start, measured), and the
envelope is a handful of documented fields (docs.aws.amazon.com/eventbridge, "Amazon
EventBridge events"): version, id, detail-type, source, account, time, region, resources, detail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Envelope(BaseModel):
    """The EventBridge envelope (the fields our handlers read); `detail` stays a plain object."""

    model_config = ConfigDict(defer_build=True, extra="allow", populate_by_name=True)

    id: str = Field(min_length=1)
    detail_type: str = Field(alias="detail-type", min_length=1)
    source: str = Field(min_length=1)
    account: str = ""
    time: datetime
    region: str = ""
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("the event time must carry a time zone")
        return value
