"""The least a handler of this project can be: what every one of ours must import and use.

boto3 (it calls AWS), Powertools' Logger and Metrics (structured logs and EMF metrics), and one
validated model with constraints and a check of its own, built and used once (every handler
validates its input against the contract). The models are msgspec Structs, as the functions'
are (functions/core/model.py); this one uses msgspec directly so that the floor holds nothing of
ours. The cold-start bench times this module as it times a handler, so the report can say how
far each handler is above the floor of the stack it is built on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="floor")
metrics = Metrics(namespace="Floor")


class Resource(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    resource_type: Annotated[str, msgspec.Meta(min_length=1)]
    resource_id: Annotated[str, msgspec.Meta(min_length=1)]


class Event(msgspec.Struct, kw_only=True):
    event_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]+$")]
    time: datetime
    resources: list[Resource]

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("the time must carry a time zone")


def handler(event: dict, context: object) -> dict:
    parsed = msgspec.convert(event, Event)
    logger.info("validated", resources=len(parsed.resources))
    return {"resources": len(parsed.resources)}
