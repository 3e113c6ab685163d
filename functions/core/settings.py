"""Environment of each function, validated as a model: logic never reads os.environ."""

from __future__ import annotations

import os
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidInput

S = TypeVar("S", bound="Settings")


class Settings(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore", frozen=True)

    table_name: str = Field(default="", alias="TABLE_NAME")
    event_bus_name: str = Field(default="", alias="EVENT_BUS_NAME")
    escalation_topic_arn: str = Field(default="", alias="ESCALATION_TOPIC_ARN")
    state_machine_arn: str = Field(default="", alias="STATE_MACHINE_ARN")
    managed_tag_key: str = Field(default="recovery:managed", alias="MANAGED_TAG_KEY")
    managed_tag_value: str = Field(default="true", alias="MANAGED_TAG_VALUE")
    lock_ttl_seconds: int = Field(default=3600, ge=60, alias="LOCK_TTL_SECONDS")
    dry_run: bool = Field(default=False, alias="DRY_RUN", description="every plan runs as a dry run")
    correlation_window_seconds: int = Field(default=300, ge=0, le=86400, alias="CORRELATION_WINDOW_SECONDS")
    storm_window_seconds: int = Field(
        default=300, ge=0, le=3600, alias="STORM_WINDOW_SECONDS", description="escalations of one cause paged as one"
    )
    audit_retention_days: int = Field(
        default=365, ge=0, alias="AUDIT_RETENTION_DAYS", description="audit records' TTL in days; 0: kept forever"
    )


def load(*required: str, model: type[S] = Settings) -> S:  # type: ignore[assignment]
    """Read the environment into `model` (Settings or a subclass); a missing required setting is
    a deployment error, said plainly."""
    try:
        settings = model.model_validate(dict(os.environ))
    except ValidationError as exc:
        raise InvalidInput(f"invalid function environment: {exc}") from exc
    missing = [name for name in required if not getattr(settings, name)]
    if missing:
        raise InvalidInput(f"function environment lacks {', '.join(n.upper() for n in missing)}")
    return settings
