"""AWS Health detector: AWS tells us about a problem with resources of a protected workload.

An event naming our instances is an impairment of their workload; a zonal event naming no entity
is one of the protected groups in that zone. Its id follows the AWS Health event, so every update
of an open event is the same impairment, and its closing clears it.

Design: docs/detectors.md#aws-health
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Protocol, Self

from msgspec import Meta

from core import clock
from core.contract import (
    AffectedResource,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    Signal,
    make_impairment_id,
)
from core.entry import lambda_entry
from core.model import AwareDatetime, Model, ValidationError
from core.observability import logger
from detectors.common import Envelope, Findings, load_settings, parse, publish
from detectors.resolve import InstanceOwner, ProtectedGroup, instance_id_of, out_of_service_on_purpose

SOURCE = "aws.health"
DETAIL_TYPE = "AWS Health Event"
SEVERITY_BY_CATEGORY = {"issue": Severity.HIGH, "scheduledChange": Severity.MEDIUM, "accountNotification": Severity.LOW}
TYPE_BY_SERVICE = {
    "EC2": ImpairmentType.INSTANCE_FAILURE,
    "EBS": ImpairmentType.INSTANCE_FAILURE,
    "AUTOSCALING": ImpairmentType.INSTANCE_FAILURE,
    "ELASTICLOADBALANCING": ImpairmentType.NETWORK_ISSUE,
    "VPC": ImpairmentType.NETWORK_ISSUE,
    "NATGATEWAY": ImpairmentType.NETWORK_ISSUE,
    "ROUTE53": ImpairmentType.NETWORK_ISSUE,
    "DIRECTCONNECT": ImpairmentType.NETWORK_ISSUE,
    "TRANSIT_GATEWAY": ImpairmentType.NETWORK_ISSUE,
    "CLOUDFRONT": ImpairmentType.NETWORK_ISSUE,
    "RDS": ImpairmentType.DATABASE_ISSUE,
    "ECS": ImpairmentType.SERVICE_DEGRADATION,
    "FARGATE": ImpairmentType.SERVICE_DEGRADATION,
}
# Zonal events without entities reach the protected groups only for what their instances run on.
ZONAL_SERVICES = frozenset({"EC2", "EBS", "AUTOSCALING", "ELASTICLOADBALANCING", "VPC", "NATGATEWAY"})
_MAX_RESOURCES = 100  # the contract's limit

# --- the event -------------------------------------------------------------------------------


def parse_time(value: Any) -> Any:
    """AWS Health writes times as RFC 1123 ("Sun, 22 Nov 2026 03:05:00 GMT"); accept ISO 8601 too."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not an RFC 1123 or ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return parsed


class Entity(Model, kw_only=True):
    entityValue: Annotated[str, Meta(min_length=1)]


class Description(Model, kw_only=True):
    language: str = ""
    latestDescription: str = ""


class HealthDetail(Model, kw_only=True):
    eventArn: Annotated[str, Meta(min_length=1, max_length=1600)]
    service: str = ""
    eventTypeCode: Annotated[str, Meta(min_length=1)]
    eventTypeCategory: Annotated[str, Meta(min_length=1)]
    eventScopeCode: str | None = None
    statusCode: Annotated[str, Meta(min_length=1)]
    startTime: AwareDatetime
    endTime: AwareDatetime | None = None
    lastUpdatedTime: AwareDatetime | None = None
    availabilityZone: str | None = None
    eventDescription: list[Description] = []
    affectedEntities: list[Entity] = []

    @property
    def description(self) -> str:
        texts = [d for d in self.eventDescription if d.latestDescription]
        english = [d for d in texts if d.language.lower().startswith("en")]
        return (english or texts)[0].latestDescription if texts else ""


class HealthEvent(Envelope, kw_only=True):
    detail: HealthDetail

    @classmethod
    def model_validate(cls, data: Any, strict: bool = True) -> Self:
        """As any envelope, the detail's times read first as AWS Health writes them (parse_time)."""
        detail = data.get("detail") if isinstance(data, dict) else None
        if isinstance(detail, dict):
            times = {}
            for name in _TIMES:
                try:
                    times[name] = parse_time(detail.get(name))
                except ValueError as exc:
                    raise ValidationError(cls.__name__, str(exc), ("detail", name)) from None
            data = {**data, "detail": {**detail, **{k: v for k, v in times.items() if v is not None}}}
        return super().model_validate(data, strict)


_TIMES = ("startTime", "endTime", "lastUpdatedTime")


# --- what the detector needs to know about the world ------------------------------------------


class Inventory(Protocol):
    def instances(self, instance_ids: list[str]) -> dict[str, InstanceOwner]: ...

    def protected_groups(self) -> list[ProtectedGroup]: ...

    def availability_zone(self, zone: str) -> tuple[str, str] | None: ...


# --- classification (pure but for the inventory) ----------------------------------------------


class _Affected:
    """What one workload has in the event: its resources and the scope they agree on."""

    def __init__(self) -> None:
        self.resources: dict[str, AffectedResource] = {}
        self.scopes: list[dict[str, str]] = []

    def add(self, resource: AffectedResource, scope: dict[str, str]) -> None:
        self.resources.setdefault(resource.key, resource)
        self.scopes.append(scope)

    def scope(self) -> dict[str, str]:
        """The keys every resource's scope agrees on (two groups of one workload name no group)."""
        first, *rest = self.scopes
        return {k: v for k, v in first.items() if all(s.get(k) == v for s in rest)}


def _zone_scope(zone: str, resolved: tuple[str, str] | None) -> dict[str, str]:
    scope = {"availability_zone": zone}
    if resolved:
        name, zone_id = resolved
        scope.update({"availability_zone_name": name, "availability_zone_id": zone_id})
    return scope


def _named_instances(event: HealthEvent) -> list[str]:
    values = [e.entityValue for e in event.detail.affectedEntities] + list(event.resources)
    return sorted({i for i in (instance_id_of(v) for v in values) if i})


def _in_zone(group: ProtectedGroup, zone_names: set[str]) -> _Affected | None:
    affected = _Affected()
    for instance in group.instances:
        if instance.get("AvailabilityZone") in zone_names and not out_of_service_on_purpose(
            instance.get("LifecycleState")
        ):
            affected.add(AffectedResource(resource_type="ec2:instance", resource_id=instance["InstanceId"]), {})
    if not affected.resources:
        if not zone_names & set(group.availability_zones):
            return None
        # The group may launch there but has nothing there now: the group itself is concerned.
        affected.add(AffectedResource(resource_type="autoscaling:group", resource_id=group.name), {})
    affected.scopes = [dict(group.owner.scope)]
    return affected


def affected_workloads(event: HealthEvent, inventory: Inventory, zone: tuple[str, str] | None) -> dict[str, _Affected]:
    """workload -> what of it the event is about."""
    detail = event.detail
    by_workload: dict[str, _Affected] = defaultdict(_Affected)
    instance_ids = _named_instances(event)
    if instance_ids:
        for instance_id, owner in sorted(inventory.instances(instance_ids).items()):
            by_workload[owner.owner.workload].add(
                AffectedResource(resource_type="ec2:instance", resource_id=instance_id), dict(owner.owner.scope)
            )
    elif (
        detail.availabilityZone
        and not detail.affectedEntities
        and not event.resources
        and detail.service.upper() in ZONAL_SERVICES
    ):
        zone_names = {detail.availabilityZone, *(zone[:1] if zone else ())}
        for group in inventory.protected_groups():
            found = _in_zone(group, zone_names)
            if found is not None:
                target = by_workload[group.workload]
                for resource in found.resources.values():
                    target.add(resource, found.scopes[0])
    return dict(by_workload)


def classify(event: HealthEvent, inventory: Inventory, now: datetime) -> Findings:
    detail = event.detail
    status, category = detail.statusCode, detail.eventTypeCategory
    if status not in ("open", "upcoming", "closed"):
        return Findings.nothing(f"status {status!r} is not handled")
    if category not in SEVERITY_BY_CATEGORY:
        return Findings.nothing(f"category {category!r} is not handled")

    zone = inventory.availability_zone(detail.availabilityZone) if detail.availabilityZone else None
    affected = affected_workloads(event, inventory, zone)
    if not affected:
        scope_code = detail.eventScopeCode or "unknown scope"
        return Findings.nothing(f"{scope_code} event about nothing a protected workload has")

    signal = Signal(source=SOURCE, id=detail.eventArn, signal_time=detail.startTime, name=detail.eventTypeCode)
    zone_scope = _zone_scope(detail.availabilityZone, zone) if detail.availabilityZone else {}
    description = (detail.description or f"{detail.service} {detail.eventTypeCode}")[:2048]
    detected: list[ImpairmentDetected] = []
    cleared: list[ImpairmentCleared] = []
    for workload, what in sorted(affected.items()):
        impairment_id = make_impairment_id(workload, SOURCE, f"{detail.eventArn}#{workload}", detail.startTime)
        if status == "closed":
            cleared.append(
                ImpairmentCleared(
                    impairment_id=impairment_id,
                    workload=workload,
                    signal=signal,
                    cleared_at=detail.endTime or detail.lastUpdatedTime or event.time,
                    description=description,
                )
            )
            continue
        severity = SEVERITY_BY_CATEGORY[category]
        if detail.availabilityZone:
            impairment_type = ImpairmentType.AZ_IMPAIRMENT
            if category == "issue":
                severity = Severity.CRITICAL
        else:
            impairment_type = TYPE_BY_SERVICE.get(detail.service.upper(), ImpairmentType.SERVICE_DEGRADATION)
        resources = sorted(what.resources.values(), key=lambda r: r.key)
        detected.append(
            ImpairmentDetected(
                impairment_id=impairment_id,
                impairment_type=impairment_type,
                severity=severity,
                workload=workload,
                affected_resources=resources[:_MAX_RESOURCES],
                signal=signal,
                # not max(now, startTime): an upcoming change starts later than it is announced
                detected_at=now,
                description=description,
                metrics={"affected_resources": float(len(resources))},
                scope={**what.scope(), **zone_scope},
            )
        )
    return Findings(detected, cleared, f"{category} {status}")


# --- the handler -----------------------------------------------------------------------------


@lambda_entry
def handler(event: Any, context: Any, inventory: Inventory | None = None, publisher: Any = None) -> dict[str, Any]:
    """Entry point. Bad input is logged as a structured error and emits nothing; it is not
    raised, so an event that can never parse is not retried forever."""
    parsed, account, stop = parse(event, HealthEvent, SOURCE, (DETAIL_TYPE,), "AWS Health event")
    if stop is not None:
        return stop

    settings = load_settings("event_bus_name")
    detail = parsed.detail
    logger.append_keys(
        health_event=detail.eventArn, event_type=detail.eventTypeCode, status=detail.statusCode, service=detail.service
    )
    if inventory is None:
        from detectors.resolve import AwsResolver

        inventory = AwsResolver(settings.managed_tag, settings.configured_workloads(), account=account)
    findings = classify(parsed, inventory, clock.utc_now())
    return publish(findings, publisher, settings.event_bus_name, account)
