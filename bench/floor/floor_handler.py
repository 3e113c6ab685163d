"""The least a handler of this project can be: what every one of ours must import and use.

boto3 (it calls AWS), Powertools' Logger and Metrics (structured logs and EMF metrics), and one
pydantic model with a constraint and a validator, built and used once (every handler validates
its input against the contract). The cold-start bench times this module as it times a handler,
so the report can say how far each handler is above the floor of the stack it is built on.
"""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools import Logger, Metrics
from pydantic import BaseModel, ConfigDict, Field, field_validator

logger = Logger(service="floor")
metrics = Metrics(namespace="Floor")


class Resource(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    resource_type: str = Field(min_length=1)
    resource_id: str = Field(min_length=1)


class Event(BaseModel):
    model_config = ConfigDict(defer_build=True)

    event_id: str = Field(pattern=r"^[A-Za-z0-9-]+$")
    time: datetime
    resources: list[Resource]

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("the time must carry a time zone")
        return value


def handler(event: dict, context: object) -> dict:
    parsed = Event.model_validate(event)
    logger.info("validated", resources=len(parsed.resources))
    return {"resources": len(parsed.resources)}
