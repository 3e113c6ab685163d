"""Environment of each function, validated as a model: logic never reads os.environ."""

from __future__ import annotations

import os
from typing import Annotated, TypeVar

from msgspec import Meta, field

from core.errors import InvalidInput
from core.model import Model, ValidationError

S = TypeVar("S", bound="Settings")


class Settings(Model, kw_only=True, frozen=True):
    """The common settings; a field's name in the environment is its alias (other variables are
    ignored)."""

    table_name: str = field(default="", name="TABLE_NAME")
    event_bus_name: str = field(default="", name="EVENT_BUS_NAME")
    escalation_topic_arn: str = field(default="", name="ESCALATION_TOPIC_ARN")
    state_machine_arn: str = field(default="", name="STATE_MACHINE_ARN")
    managed_tag_key: str = field(default="recovery:managed", name="MANAGED_TAG_KEY")
    managed_tag_value: str = field(default="true", name="MANAGED_TAG_VALUE")
    lock_ttl_seconds: Annotated[int, Meta(ge=60)] = field(default=3600, name="LOCK_TTL_SECONDS")
    # every plan runs as a dry run
    dry_run: bool = field(default=False, name="DRY_RUN")
    correlation_window_seconds: Annotated[int, Meta(ge=0, le=86400)] = field(
        default=300, name="CORRELATION_WINDOW_SECONDS"
    )
    # escalations of one cause paged as one
    storm_window_seconds: Annotated[int, Meta(ge=0, le=3600)] = field(default=300, name="STORM_WINDOW_SECONDS")
    # audit records' TTL in days; 0: kept forever
    audit_retention_days: Annotated[int, Meta(ge=0)] = field(default=365, name="AUDIT_RETENTION_DAYS")


def load(*required: str, model: type[S] = Settings) -> S:  # type: ignore[assignment]
    """Read the environment into `model` (Settings or a subclass); a missing required setting is
    a deployment error, said plainly."""
    try:
        settings = model.model_validate(dict(os.environ), strict=False)
    except ValidationError as exc:
        raise InvalidInput(f"invalid function environment: {exc}") from exc
    missing = [name for name in required if not getattr(settings, name)]
    if missing:
        raise InvalidInput(f"function environment lacks {', '.join(n.upper() for n in missing)}")
    return settings
