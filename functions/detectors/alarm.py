"""Alarm detector: a CloudWatch alarm of a protected workload changed state.

ALARM -> "Impairment Detected"; ALARM -> OK -> "Impairment Cleared" (same impairment id);
INSUFFICIENT_DATA and unmanaged alarms -> nothing. Single-metric, metric-math and composite
alarms are all accepted. What the alarm is about (workload, impairment type, severity, the
group, target group and ECS service) comes from the alarm's own tags, set by the stack that
created it or by a user onboarding an alarm of their own; which resource is impaired comes from
its metric's dimensions (see _affected).
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
from core.observability import logger, metrics
from detectors.common import count_detected, in_account, source_account

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


class Inventory(Protocol):
    def alarm_tags(self, alarm_arn: str) -> dict[str, str] | None: ...

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]: ...

    def group_instances(self, group_name: str) -> list[str]: ...

    def instance_statuses(self, instance_ids: list[str]) -> list[dict[str, Any]]: ...


class AwsInventory:
    """Inventory over the real APIs (paginated; errors classified), in the member account the
    alarm is in (None: this account)."""

    def __init__(self, account: str | None = None) -> None:
        self.account = account

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
class Outcome:
    detail_type: str | None
    model: BaseModel | None
    reason: str


def classify(
    event: AlarmStateChangeEvent, inventory: Inventory, managed_tag: tuple[str, str], now: datetime
) -> Outcome:
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
    from core import settings as settings_module
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
    settings = settings_module.load("event_bus_name")
    logger.append_keys(alarm=parsed.detail.alarmName, state=parsed.detail.state.value)
    outcome = classify(
        parsed,
        inventory or AwsInventory(account),
        (settings.managed_tag_key, settings.managed_tag_value),
        clock.utc_now(),
    )
    if outcome.model is None:
        logger.info("no impairment", reason=outcome.reason)
        return {"status": "ignored", "reason": outcome.reason}
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
