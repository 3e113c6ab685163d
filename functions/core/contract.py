"""The impairment event contract shared by detectors and the recovery workflow.

Detection and recovery meet only on the bus, through these models. The contract is versioned:
a breaking change bumps SCHEMA_VERSION and the published JSON Schema (schemas/).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from msgspec import Meta

from core.model import Model

SCHEMA_VERSION = "1.3"  # 1.1: drill; 1.2: account_id; 1.3: impairment type region_impairment
EVENT_SOURCE = "recovery.detection"
DETECTED = "Impairment Detected"
CLEARED = "Impairment Cleared"


class ImpairmentType(StrEnum):
    """The kinds of impairment named by REL07-BP02, plus zonal and regional events."""

    INSTANCE_FAILURE = "instance_failure"
    SERVICE_DEGRADATION = "service_degradation"
    NETWORK_ISSUE = "network_issue"
    RESOURCE_EXHAUSTION = "resource_exhaustion"
    APPLICATION_ERROR = "application_error"
    DATABASE_ISSUE = "database_issue"
    AZ_IMPAIRMENT = "az_impairment"
    # A workload's region is impaired, seen from its standby region (detectors/region_probe.py).
    REGION_IMPAIRMENT = "region_impairment"


_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class Severity(StrEnum):
    """Impairment severity. Ordered by rank, never by string (\"critical\" < \"high\" as strings)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self.value]

    def _cmp(self, other: object) -> int:
        if isinstance(other, str) and not isinstance(other, Severity) and other in _SEVERITY_RANK:
            other = Severity(other)  # "high" compares as the severity, not as a string
        if not isinstance(other, Severity):
            return NotImplemented  # type: ignore[return-value]
        return self.rank - other.rank

    def __lt__(self, other: object) -> bool:  # type: ignore[override]
        result = self._cmp(other)
        return result if result is NotImplemented else result < 0

    def __le__(self, other: object) -> bool:  # type: ignore[override]
        result = self._cmp(other)
        return result if result is NotImplemented else result <= 0

    def __gt__(self, other: object) -> bool:  # type: ignore[override]
        result = self._cmp(other)
        return result if result is NotImplemented else result > 0

    def __ge__(self, other: object) -> bool:  # type: ignore[override]
        result = self._cmp(other)
        return result if result is NotImplemented else result >= 0

    __hash__ = str.__hash__


class AffectedResource(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One resource the impairment is about, e.g. ("ec2:instance", "i-0abc...")."""

    resource_type: Annotated[str, Meta(min_length=1, examples=["ec2:instance", "autoscaling:group"])]
    resource_id: Annotated[str, Meta(min_length=1, max_length=2048)]

    @property
    def key(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


class Signal(Model, kw_only=True, forbid_unknown_fields=True):
    """The originating signal: what fired, and when it fired (the start of MTTD)."""

    source: Annotated[str, Meta(min_length=1, examples=["aws.cloudwatch"])]
    id: Annotated[str, Meta(min_length=1, description="Identifier or ARN of the signal, e.g. the alarm ARN")]
    signal_time: datetime
    name: str | None = None

    def _check(self) -> None:
        _require_tz(self.signal_time, "signal_time")


def _require_tz(value: datetime, field: str = "") -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{field + ': ' if field else ''}timestamps must carry a time zone")
    return value


_ID_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def make_impairment_id(workload: str, source: str, signal_id: str, signal_time: datetime) -> str:
    """Deterministic id of one occurrence of a signal.

    The same signal delivered again (EventBridge is at-least-once) gives the same id; the next
    occurrence of the same alarm (a new state change) gives a new one. The id is also the Step
    Functions execution name, so it keeps to the 80 characters that names allow.
    """
    material = "|".join([source, signal_id, _require_tz(signal_time).isoformat()])
    digest = hashlib.sha256(material.encode()).hexdigest()[:16]
    prefix = _ID_SAFE.sub("-", workload).strip("-")[:56] or "impairment"
    return f"{prefix}-{digest}"


SchemaVersion = Annotated[str, Meta(pattern=r"^1\.\d+$")]
ImpairmentId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,80}$")]
Workload = Annotated[str, Meta(min_length=1, max_length=128)]
Description = Annotated[str, Meta(max_length=2048)]


class ImpairmentDetected(Model, kw_only=True, forbid_unknown_fields=True):
    """Detail of the \"Impairment Detected\" event."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    impairment_id: ImpairmentId
    impairment_type: ImpairmentType
    severity: Severity
    workload: Workload
    affected_resources: Annotated[list[AffectedResource], Meta(min_length=1, max_length=100)]
    signal: Signal
    detected_at: datetime
    description: Description = ""
    metrics: dict[str, float] = {}
    scope: Annotated[
        dict[str, str],
        Meta(description="Workload resources the signal belongs to, e.g. auto_scaling_group, target_group_arn"),
    ] = {}
    account_id: Annotated[
        Annotated[str, Meta(pattern=r"^\d{12}$")] | None,
        Meta(
            description="The member account the impaired workload is in (from the signal's event); "
            "none: the recovery system's own account"
        ),
    ] = None
    drill: Annotated[
        bool,
        Meta(
            description="A practice drill (a scheduled or recoveryctl drill set the alarm): recovered like any "
            "impairment, counted and reported apart from real ones"
        ),
    ] = False

    def _check(self) -> None:
        _require_tz(self.detected_at, "detected_at")

    @property
    def mttd_seconds(self) -> float:
        return max(0.0, (self.detected_at - self.signal.signal_time).total_seconds())


class ImpairmentCleared(Model, kw_only=True, forbid_unknown_fields=True):
    """Detail of the \"Impairment Cleared\" event: the signal that raised an impairment recovered."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    impairment_id: ImpairmentId
    workload: Workload
    signal: Signal
    cleared_at: datetime
    description: Description = ""

    def _check(self) -> None:
        _require_tz(self.cleared_at, "cleared_at")


def json_schema() -> dict[str, Any]:
    """The published JSON Schema (draft-04, as the EventBridge schema registry expects) of the
    bus events: an envelope whose detail is one of the two contract models."""
    from core.model import json_schema_definitions

    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "RecoveryImpairmentEvent",
        "description": f"Impairment events on the recovery bus, contract version {SCHEMA_VERSION}",
        "type": "object",
        "required": ["detail-type", "source", "detail"],
        "properties": {
            "detail-type": {"type": "string", "enum": [DETECTED, CLEARED]},
            "source": {"type": "string", "enum": [EVENT_SOURCE]},
            "detail": {
                "anyOf": [
                    {"$ref": "#/definitions/ImpairmentDetected"},
                    {"$ref": "#/definitions/ImpairmentCleared"},
                ]
            },
        },
        "definitions": json_schema_definitions(ImpairmentDetected, ImpairmentCleared),
    }


if __name__ == "__main__":  # `make schema` publishes the schema to schemas/
    import json
    import sys

    json.dump(json_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
