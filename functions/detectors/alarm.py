"""Alarm detector: a CloudWatch alarm of a protected workload changed state.

ALARM -> "Impairment Detected"; ALARM -> OK -> "Impairment Cleared" (same impairment id);
INSUFFICIENT_DATA and unmanaged alarms -> nothing (ignored, counted in SignalsIgnored, as every
detector counts what it ignores). Single-metric, metric-math and composite alarms are all
accepted. What the alarm is about (workload, impairment type, severity, the group, target group
and ECS service) comes from the alarm's own tags, set by the stack that created it or by a user
onboarding an alarm of their own; which resource is impaired comes from its metric's dimensions
(see _affected).

The alarm's workload tag does not choose the workload on its own: a workload's guardrails
(maintenance windows, rate limits, flapping history) must not be bypassed by an alarm tagged with
another workload's name. The resources the alarm names (the affected ones, and the group, target
group, ECS service or database its scope says a recovery acts on) are resolved the way the other
detectors resolve them: an instance through the Auto Scaling group that holds it (or its own tags
when it is in no group), a group by its `recovery:workload` tag or the workload the configuration
declares for it (WORKLOAD_GROUPS), an ECS service or a database by the configuration, else by its
own tags, and a target group, canary or Route 53 health check by the configuration
(WORKLOAD_RESOURCES). Then:

- a resource that resolves to another workload: refused (nothing published; an error log naming
  the alarm, its tag's workload and the resource's; SignalsRefused with reason workload_mismatch);
- at least one resource resolves, and to the tag's workload: published;
- none resolves: an instance or an Auto Scaling group always belongs to a protected group or
  carries the managed tag itself, so one that resolves to nothing is not protected: refused
  (reason resource_unprotected). Target groups, ECS services, databases, canaries, health checks
  and the alarm itself (an alarm naming nothing else) legitimately have no group: published when
  the tag names a workload of this deployment's configuration, refused otherwise (reason
  unknown_workload).

A clearing (ALARM -> OK) is not checked again: its id is derived from the workload and the alarm's
ALARM state, so the clearing of a refused alarm names an impairment that was never opened and
clears nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import aws, clock
from core.contract import (
    CLEARED,
    DETECTED,
    AffectedResource,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    Signal,
    make_impairment_id,
)
from core.entry import lambda_entry
from core.errors import classify_client_error
from core.observability import emit, logger, metrics
from detectors.common import count_detected, ignore, in_account, load_settings, source_account
from detectors.resolve import Configured, resource_key

SOURCE = "aws.cloudwatch"
TAG_PREFIX = "recovery:"
# An alarm set to ALARM by a practice drill says so at the start of its state reason: the
# scheduled drills (infra/constructs/operations.py) and `recoveryctl drill` against a deployment.
DRILL_REASON_PREFIXES = ("[practice drill]", "recoveryctl drill")


def is_drill(reason: str) -> bool:
    """Whether an alarm state reason is a practice drill's (the prefixes above, case as written)."""
    return reason.lstrip().startswith(DRILL_REASON_PREFIXES)


# --- the event -------------------------------------------------------------------------------


class AlarmState(BaseModel):
    model_config = ConfigDict(extra="allow")

    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""
    reasonData: str | None = None
    timestamp: datetime


class MetricStat(BaseModel):
    model_config = ConfigDict(extra="allow")

    metric: dict[str, Any] = Field(default_factory=dict)
    period: int | None = None
    stat: str | None = None


class MetricQuery(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    expression: str | None = None
    metricStat: MetricStat | None = None
    returnData: bool | None = None


class AlarmConfiguration(BaseModel):
    model_config = ConfigDict(extra="allow")

    description: str | None = None
    metrics: list[MetricQuery] = Field(default_factory=list)
    alarmRule: str | None = None  # composite alarms


class AlarmDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    alarmName: str = Field(min_length=1)
    state: AlarmState
    previousState: AlarmState | None = None
    configuration: AlarmConfiguration = Field(default_factory=AlarmConfiguration)


class AlarmStateChangeEvent(EventBridgeModel):
    detail: AlarmDetail


# --- what the detector needs to know about the world ------------------------------------------


@dataclass(frozen=True)
class Named:
    """A resource an alarm names: its type and id as in the impairment, and its ARN when looking
    its workload up needs one (a database's tags are read by ARN)."""

    resource_type: str
    resource_id: str
    arn: str | None = None

    @property
    def key(self) -> str:
        return resource_key(self.resource_type, self.resource_id)


# The kinds of resource whose workload is looked up in AWS (an instance through its group, a
# group, an ECS service or a database by its tags); the others are resolved by the configuration.
LOOKED_UP = frozenset({"ec2:instance", "autoscaling:group", "ecs:service", "rds:db", "rds:cluster"})
# Kinds that always belong to a protected group, or carry the managed tag themselves, when they
# are protected at all: one that resolves to no workload is not protected.
GROUPED = frozenset({"ec2:instance", "autoscaling:group"})


class Inventory(Protocol):
    def alarm_tags(self, alarm_arn: str) -> dict[str, str] | None: ...

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]: ...

    def group_instances(self, group_name: str) -> list[str]: ...

    def instance_statuses(self, instance_ids: list[str]) -> list[dict[str, Any]]: ...

    def workloads_of(self, resources: list[Named]) -> dict[Named, str | None]:
        """The workload each resource (of a LOOKED_UP kind) belongs to by its own group or tags;
        None when it belongs to no protected workload (not managed, or gone)."""
        ...


class AwsInventory:
    """Inventory over the real APIs (paginated; errors classified), in the member account the
    alarm is in (None: this account). `managed_tag` and `configured_groups` (group -> workload,
    WORKLOAD_GROUPS) resolve resources the way the other detectors do."""

    def __init__(
        self,
        account: str | None = None,
        *,
        managed_tag: tuple[str, str] = ("recovery:managed", "true"),
        configured_groups: dict[str, str] | None = None,
    ) -> None:
        self.account = account
        self.managed_tag = managed_tag
        self.configured_groups = configured_groups or {}

    def workloads_of(self, resources: list[Named]) -> dict[Named, str | None]:
        # Imported here: only an alarm that names such resources pays for them at cold start.
        from detectors.resolve import AwsResolver

        resolver = AwsResolver(self.managed_tag, self.configured_groups, account=self.account)
        instances = [r.resource_id for r in resources if r.resource_type == "ec2:instance"]
        groups = [r.resource_id for r in resources if r.resource_type == "autoscaling:group"]
        instance_owners = resolver.instances(instances) if instances else {}
        group_owners = resolver.groups(groups) if groups else {}
        found: dict[Named, str | None] = {}
        for resource in resources:
            kind, rid = resource.resource_type, resource.resource_id
            if kind == "ec2:instance":
                found[resource] = instance_owners[rid].owner.workload if rid in instance_owners else None
            elif kind == "autoscaling:group":
                found[resource] = group_owners[rid].workload if rid in group_owners else None
            elif kind == "ecs:service":
                found[resource] = self._service_workload(rid)
            elif kind in ("rds:db", "rds:cluster"):
                found[resource] = self._database_workload(resource)
        return found

    def _service_workload(self, service_arn: str) -> str | None:
        from detectors.ecs import AwsInventory as EcsInventory

        owner = EcsInventory(self.managed_tag, account=self.account).service_owner(
            service_arn, service_arn.rsplit("/", 1)[-1]
        )
        return owner.workload if owner else None

    def _database_workload(self, database: Named) -> str | None:
        from detectors.rds import AwsInventory as RdsInventory

        if not database.arn:
            return None
        owner = RdsInventory(self.managed_tag, account=self.account).database_owner(database.arn, database.resource_id)
        return owner.workload if owner else None

    def alarm_tags(self, alarm_arn: str) -> dict[str, str] | None:
        try:
            tags = aws.client("cloudwatch", account=self.account).list_tags_for_resource(ResourceARN=alarm_arn)["Tags"]
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("ResourceNotFound", "ResourceNotFoundException", "InvalidParameterValue"):
                return None
            raise classify_client_error(exc, "cloudwatch:ListTagsForResource") from exc
        return {t["Key"]: t["Value"] for t in tags}

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]:
        try:
            response = aws.client("elbv2", account=self.account).describe_target_health(TargetGroupArn=target_group_arn)
        except Exception as exc:
            raise classify_client_error(exc, "elasticloadbalancing:DescribeTargetHealth") from exc
        return response.get("TargetHealthDescriptions", [])

    def group_instances(self, group_name: str) -> list[str]:
        paginator = aws.client("autoscaling", account=self.account).get_paginator("describe_auto_scaling_groups")
        ids: list[str] = []
        for page in paginator.paginate(AutoScalingGroupNames=[group_name]):
            for group in page["AutoScalingGroups"]:
                ids.extend(i["InstanceId"] for i in group.get("Instances", []))
        return ids

    def instance_statuses(self, instance_ids: list[str]) -> list[dict[str, Any]]:
        statuses: list[dict[str, Any]] = []
        paginator = aws.client("ec2", account=self.account).get_paginator("describe_instance_status")
        for start in range(0, len(instance_ids), 100):
            for page in paginator.paginate(InstanceIds=instance_ids[start : start + 100], IncludeAllInstances=True):
                statuses.extend(page.get("InstanceStatuses", []))
        return statuses


# --- classification (pure but for the inventory) ----------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why an alarm's impairment is not published although the alarm is managed: its workload
    tag does not match its resources (see the module's docstring)."""

    kind: Literal["workload_mismatch", "resource_unprotected", "unknown_workload"]
    tag_workload: str
    resource: str | None = None  # "<type>:<id>" of the resource that decided it
    resource_workload: str | None = None


@dataclass(frozen=True)
class Outcome:
    detail_type: str | None
    model: BaseModel | None
    reason: str
    refusal: Refusal | None = None


def classify(
    event: AlarmStateChangeEvent,
    inventory: Inventory,
    managed_tag: tuple[str, str],
    now: datetime,
    configured: Configured | None = None,
) -> Outcome:
    """What the alarm's state change means: an impairment detected or cleared, nothing (the
    reason), or a refusal. `configured`: the deployment's workloads and the resources they
    declare (None: none are configured)."""
    detail = event.detail
    alarm_arn = next((r for r in event.resources if ":alarm:" in r), None) or (
        f"arn:aws:cloudwatch:{event.region}:{event.account}:alarm:{detail.alarmName}"
    )
    state = detail.state.value
    previous = detail.previousState.value if detail.previousState else None
    if state == "INSUFFICIENT_DATA":
        return Outcome(None, None, "INSUFFICIENT_DATA is not an impairment")
    if state == "OK" and previous != "ALARM":
        return Outcome(None, None, f"{previous} -> OK clears nothing")

    tags = inventory.alarm_tags(alarm_arn)
    key, value = managed_tag
    if not tags or tags.get(key) != value:
        return Outcome(None, None, f"alarm is not managed (no {key}={value} tag)")
    workload = tags.get(f"{TAG_PREFIX}workload")
    if not workload:
        return Outcome(None, None, f"managed alarm has no {TAG_PREFIX}workload tag")

    if state == "OK":
        opened = detail.previousState.timestamp  # type: ignore[union-attr]
        cleared = ImpairmentCleared(
            impairment_id=make_impairment_id(workload, SOURCE, alarm_arn, opened),
            workload=workload,
            signal=Signal(source=SOURCE, id=alarm_arn, signal_time=opened, name=detail.alarmName),
            cleared_at=detail.state.timestamp,
            description=detail.state.reason[:2048],
        )
        return Outcome(CLEARED, cleared, "alarm returned to OK")

    impairment_type = _enum(
        ImpairmentType, tags.get(f"{TAG_PREFIX}impairment-type"), ImpairmentType.SERVICE_DEGRADATION
    )
    severity = _enum(Severity, tags.get(f"{TAG_PREFIX}severity"), Severity.HIGH)
    scope = {name: tags[f"{TAG_PREFIX}{tag}"] for name, tag in _SCOPE_TAGS if tags.get(f"{TAG_PREFIX}{tag}")}
    resources, metric_values, severity = _affected(event, inventory, scope, severity)
    refusal = check_workload(workload, named(event, resources, scope), inventory, configured or Configured())
    if refusal is not None:
        return Outcome(None, None, _refusal_reason(refusal), refusal)
    metric_values.update(_reason_values(detail.state.reasonData))
    impairment = ImpairmentDetected(
        impairment_id=make_impairment_id(workload, SOURCE, alarm_arn, detail.state.timestamp),
        impairment_type=impairment_type,
        severity=severity,
        workload=workload,
        affected_resources=resources,
        signal=Signal(source=SOURCE, id=alarm_arn, signal_time=detail.state.timestamp, name=detail.alarmName),
        detected_at=max(now, detail.state.timestamp),
        description=(detail.configuration.description or detail.state.reason or detail.alarmName)[:2048],
        metrics=metric_values,
        scope=scope,
        drill=is_drill(detail.state.reason),
    )
    return Outcome(DETECTED, impairment, "alarm is in ALARM")


def named(event: AlarmStateChangeEvent, resources: list[AffectedResource], scope: dict[str, str]) -> list[Named]:
    """Every resource the alarm names: the affected ones, then what its scope says a recovery
    acts on (group, target group, ECS service, database), once each."""
    found = [Named(r.resource_type, r.resource_id) for r in resources]
    if scope.get("auto_scaling_group"):
        found.append(Named("autoscaling:group", scope["auto_scaling_group"]))
    if scope.get("target_group_arn"):
        found.append(Named("elasticloadbalancing:targetgroup", scope["target_group_arn"]))
    if scope.get("ecs_cluster") and scope.get("ecs_service"):
        found.append(Named("ecs:service", _ecs_service_arn(event, scope["ecs_cluster"], scope["ecs_service"])))
    if scope.get("db_instance"):
        found.append(Named("rds:db", scope["db_instance"]))
    if scope.get("db_cluster"):
        found.append(Named("rds:cluster", scope["db_cluster"]))
    unique: dict[str, Named] = {}
    for resource in found:
        if resource.resource_type in ("rds:db", "rds:cluster"):
            kind = resource.resource_type.split(":", 1)[1]
            arn = f"arn:{_partition(event)}:rds:{event.region}:{event.account}:{kind}:{resource.resource_id}"
            resource = Named(resource.resource_type, resource.resource_id, arn)
        unique.setdefault(resource.key, resource)
    return list(unique.values())


def check_workload(
    tag_workload: str, resources: list[Named], inventory: Inventory, configured: Configured
) -> Refusal | None:
    """None when the resources the alarm names agree with its workload tag; else why not (the
    rule is in the module's docstring). The configuration decides first for what it declares; an
    instance or a group, and an ECS service or database it does not declare, are looked up."""
    resolved: dict[str, frozenset[str]] = {}
    lookup: list[Named] = []
    for resource in resources:
        declared = configured.workloads_of(resource.resource_type, resource.resource_id)
        if resource.resource_type in GROUPED or (not declared and resource.resource_type in LOOKED_UP):
            lookup.append(resource)
        elif declared:
            resolved[resource.key] = declared
    for resource, workload in (inventory.workloads_of(lookup) if lookup else {}).items():
        if workload:
            resolved[resource.key] = frozenset({workload})
    for resource in resources:
        owners = resolved.get(resource.key)
        if owners and tag_workload not in owners:
            return Refusal("workload_mismatch", tag_workload, resource.key, ", ".join(sorted(owners)))
    if resolved:
        return None
    unprotected = next((r for r in resources if r.resource_type in GROUPED), None)
    if unprotected is not None:
        return Refusal("resource_unprotected", tag_workload, unprotected.key)
    if tag_workload not in configured.workloads:
        return Refusal("unknown_workload", tag_workload, resources[0].key if resources else None)
    return None


def _refusal_reason(refusal: Refusal) -> str:
    if refusal.kind == "workload_mismatch":
        return (
            f"the alarm is tagged for workload {refusal.tag_workload} but {refusal.resource} belongs to "
            f"{refusal.resource_workload}"
        )
    if refusal.kind == "resource_unprotected":
        return (
            f"the alarm is tagged for workload {refusal.tag_workload} but {refusal.resource} belongs to no protected "
            "workload (no managed group holds it and it does not carry the managed tag)"
        )
    return (
        f"the alarm is tagged for workload {refusal.tag_workload}, which this deployment does not configure, and "
        "nothing it names belongs to a workload"
    )


# Scope key -> the alarm tag (after "recovery:") that names it.
_SCOPE_TAGS = (
    ("auto_scaling_group", "auto-scaling-group"),
    ("target_group_arn", "target-group-arn"),
    ("ecs_cluster", "ecs-cluster"),
    ("ecs_service", "ecs-service"),
)


def _enum(kind: Any, raw: str | None, default: Any) -> Any:
    try:
        return kind(raw) if raw else default
    except ValueError:
        logger.warning("unknown tag value; using the default", value=raw, default=default.value)
        return default


def _dimensions(detail: AlarmDetail) -> dict[str, str]:
    found: dict[str, str] = {}
    for query in detail.configuration.metrics:
        if query.metricStat:
            dims = query.metricStat.metric.get("dimensions") or {}
            if isinstance(dims, dict):
                found.update({str(k): str(v) for k, v in dims.items()})
    return found


def _is_metric_math(detail: AlarmDetail) -> bool:
    return any(query.expression for query in detail.configuration.metrics)


def _partition(event: AlarmStateChangeEvent) -> str:
    return event.resources[0].split(":")[1] if event.resources and event.resources[0].count(":") > 1 else "aws"


def _single(resource_type: str, resource_id: str) -> list[AffectedResource]:
    return [AffectedResource(resource_type=resource_type, resource_id=resource_id)]


def _affected(
    event: AlarmStateChangeEvent, inventory: Inventory, scope: dict[str, str], severity: Severity
) -> tuple[list[AffectedResource], dict[str, float], Severity]:
    """Which resources are impaired, from the alarm's metric dimensions: its instance, canary,
    Route 53 health check, ECS service or database; for a metric-math alarm (a rate, a learned
    band: no one resource) what the workload's tags name; the unhealthy targets of its target
    group; the impaired instances of its group; or else the workload's group, ECS service or
    target group as a whole."""
    dims = _dimensions(event.detail)
    values: dict[str, float] = {}
    if "InstanceId" in dims:
        return _single("ec2:instance", dims["InstanceId"]), values, severity
    if "CanaryName" in dims:
        return _single("synthetics:canary", dims["CanaryName"]), values, severity
    if "HealthCheckId" in dims:
        return _single("route53:healthcheck", dims["HealthCheckId"]), values, severity
    if "ClusterName" in dims and "ServiceName" in dims:
        scope.setdefault("ecs_cluster", dims["ClusterName"])
        scope.setdefault("ecs_service", dims["ServiceName"])
        return (
            _single("ecs:service", _ecs_service_arn(event, dims["ClusterName"], dims["ServiceName"])),
            values,
            severity,
        )
    if "DBInstanceIdentifier" in dims:
        scope.setdefault("db_instance", dims["DBInstanceIdentifier"])
        return _single("rds:db", dims["DBInstanceIdentifier"]), values, severity
    if "DBClusterIdentifier" in dims:
        scope.setdefault("db_cluster", dims["DBClusterIdentifier"])
        return _single("rds:cluster", dims["DBClusterIdentifier"]), values, severity
    if _is_metric_math(event.detail):
        return _workload_resources(event, scope), values, severity

    target_group_arn = scope.get("target_group_arn")
    if "TargetGroup" in dims:
        partition = _partition(event)
        target_group_arn = f"arn:{partition}:elasticloadbalancing:{event.region}:{event.account}:{dims['TargetGroup']}"
        scope.setdefault("target_group_arn", target_group_arn)
        health = inventory.target_health(target_group_arn)
        unhealthy = [h["Target"]["Id"] for h in health if _target_impaired(h.get("TargetHealth", {}))]
        values.update({"unhealthy_targets": float(len(unhealthy)), "targets": float(len(health))})
        if unhealthy:
            # Fail open: most of the fleet unhealthy at once says so, so recovery escalates.
            if len(unhealthy) * 2 > len(health):
                severity = Severity.CRITICAL
            return (
                [AffectedResource(resource_type=_target_type(t), resource_id=t) for t in sorted(unhealthy)],
                values,
                severity,
            )

    group = dims.get("AutoScalingGroupName") or scope.get("auto_scaling_group")
    if "AutoScalingGroupName" in dims:
        scope.setdefault("auto_scaling_group", group)  # type: ignore[arg-type]
        instance_ids = inventory.group_instances(group)  # type: ignore[arg-type]
        impaired = [s["InstanceId"] for s in inventory.instance_statuses(instance_ids) if _instance_impaired(s)]
        values.update({"impaired_instances": float(len(impaired)), "instances": float(len(instance_ids))})
        if impaired:
            return (
                [AffectedResource(resource_type="ec2:instance", resource_id=i) for i in sorted(impaired)],
                values,
                severity,
            )

    # What the dimensions named wins over what the tags say.
    named = {**scope, **({"auto_scaling_group": group} if group else {})}
    if target_group_arn:
        named["target_group_arn"] = target_group_arn
    return _workload_resources(event, named), values, severity


def _workload_resources(event: AlarmStateChangeEvent, scope: dict[str, str]) -> list[AffectedResource]:
    """The workload's group, else its ECS service, else its target group, else the alarm itself."""
    if scope.get("auto_scaling_group"):
        return _single("autoscaling:group", scope["auto_scaling_group"])
    if scope.get("ecs_cluster") and scope.get("ecs_service"):
        return _single("ecs:service", _ecs_service_arn(event, scope["ecs_cluster"], scope["ecs_service"]))
    if scope.get("target_group_arn"):
        return _single("elasticloadbalancing:targetgroup", scope["target_group_arn"])
    return _single("cloudwatch:alarm", event.resources[0] if event.resources else event.detail.alarmName)


def _ecs_service_arn(event: AlarmStateChangeEvent, cluster: str, service: str) -> str:
    """The service's ARN, as the ECS detector names it, so signals about one service correlate."""
    return f"arn:{_partition(event)}:ecs:{event.region}:{event.account}:service/{cluster}/{service}"


def _target_impaired(health: dict[str, Any]) -> bool:
    state = health.get("State")
    return state in ("unhealthy", "unavailable") or (
        state == "unused" and health.get("Reason") == "Target.InvalidState"
    )


def _target_type(target_id: str) -> str:
    return "ec2:instance" if target_id.startswith("i-") else "elasticloadbalancing:target"


def _instance_impaired(status: dict[str, Any]) -> bool:
    if status.get("InstanceState", {}).get("Name") not in ("running", "pending"):
        return True
    return any(status.get(kind, {}).get("Status") == "impaired" for kind in ("InstanceStatus", "SystemStatus"))


def _reason_values(reason_data: str | None) -> dict[str, float]:
    """Threshold and latest datapoint from the state's reasonData, when it has them."""
    if not reason_data:
        return {}
    try:
        data = json.loads(reason_data)
    except ValueError:
        return {}
    if not isinstance(data, dict):  # valid JSON but not the object CloudWatch documents
        return {}
    values: dict[str, float] = {}
    if isinstance(data.get("threshold"), (int, float)):
        values["threshold"] = float(data["threshold"])
    recent = data.get("recentDatapoints")
    if isinstance(recent, list) and recent and isinstance(recent[-1], (int, float)):
        values["latest_datapoint"] = float(recent[-1])
    return values


# --- the handler -----------------------------------------------------------------------------


@lambda_entry
def handler(
    event: dict[str, Any], context: Any, inventory: Inventory | None = None, publisher: Any = None
) -> dict[str, Any]:
    """Entry point. Bad input is logged as a structured error and emits nothing; it is not
    raised, so an event that can never parse is not retried forever."""
    from core.publisher import EventPublisher

    try:
        parsed = AlarmStateChangeEvent.model_validate(event)
    except ValidationError as exc:
        logger.error(
            "rejected an event that is not a valid CloudWatch alarm state change",
            errors=exc.errors(include_url=False, include_input=False),
            event_id=event.get("id") if isinstance(event, dict) else None,
        )
        metrics.add_metric(name="SignalsRejected", unit="Count", value=1)
        return {"status": "rejected", "reason": "invalid alarm state change event"}

    account, refused = source_account(parsed.account)
    if refused is not None:
        return refused
    settings = load_settings("event_bus_name")
    logger.append_keys(alarm=parsed.detail.alarmName, state=parsed.detail.state.value)
    outcome = classify(
        parsed,
        inventory
        or AwsInventory(account, managed_tag=settings.managed_tag, configured_groups=settings.configured_workloads()),
        settings.managed_tag,
        clock.utc_now(),
        settings.configured(),
    )
    if outcome.refusal is not None:
        return _refuse(parsed, outcome.refusal, outcome.reason)
    if outcome.model is None:
        return ignore(outcome.reason)
    if isinstance(outcome.model, ImpairmentDetected) and account:
        outcome = replace(outcome, model=in_account(outcome.model, account))

    impairment_id = outcome.model.impairment_id  # type: ignore[attr-defined]
    logger.set_correlation_id(impairment_id)
    (publisher or EventPublisher(settings.event_bus_name)).publish(outcome.detail_type, [outcome.model])  # type: ignore[arg-type]
    if isinstance(outcome.model, ImpairmentDetected):
        count_detected(outcome.model)
        logger.info("impairment detected", drill=outcome.model.drill, impairment=outcome.model.model_dump(mode="json"))
    else:
        metrics.add_metric(name="ImpairmentsCleared", unit="Count", value=1)
        logger.info("impairment cleared")
    return {"status": "published", "detail_type": outcome.detail_type, "impairment_id": impairment_id}


def _refuse(event: AlarmStateChangeEvent, refusal: Refusal, reason: str) -> dict[str, Any]:
    """A managed alarm whose workload tag its resources contradict: nothing is published; a
    structured error (a mismatch is someone's mistake, or an attempt to dodge a workload's
    guardrails), counted in SignalsRefused in all and by reason."""
    alarm_arn = next((r for r in event.resources if ":alarm:" in r), event.detail.alarmName)
    log = logger.error if refusal.kind == "workload_mismatch" else logger.warning
    log(
        "refused an alarm whose workload tag its resources do not match",
        reason=reason,
        refusal=refusal.kind,
        alarm_arn=alarm_arn,
        tag_workload=refusal.tag_workload,
        resource=refusal.resource,
        resource_workload=refusal.resource_workload,
    )
    metrics.add_metric(name="SignalsRefused", unit="Count", value=1)
    emit("SignalsRefused", "Count", 1, reason=refusal.kind)
    return {"status": "refused", "reason": reason, "refusal": refusal.kind}
