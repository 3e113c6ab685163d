"""What an alarm is about: the impaired resources its metric's dimensions name (its instance,
canary, health check, ECS service or database; the unhealthy targets of its target group; the
impaired instances of its group), else what its tags say the workload's resources are.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from core.contract import AffectedResource, Severity
from core.reads import instance_status, target_health

if TYPE_CHECKING:
    from detectors.alarm import AlarmDetail, AlarmStateChangeEvent


class Fleet(Protocol):
    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]: ...

    def group_instances(self, group_name: str) -> list[str]: ...

    def instance_statuses(self, instance_ids: list[str]) -> list[dict[str, Any]]: ...


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


def partition(event: AlarmStateChangeEvent) -> str:
    return event.resources[0].split(":")[1] if event.resources and event.resources[0].count(":") > 1 else "aws"


def _single(resource_type: str, resource_id: str) -> list[AffectedResource]:
    return [AffectedResource(resource_type=resource_type, resource_id=resource_id)]


def affected(
    event: AlarmStateChangeEvent, inventory: Fleet, scope: dict[str, str], severity: Severity
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
            _single("ecs:service", ecs_service_arn(event, dims["ClusterName"], dims["ServiceName"])),
            values,
            severity,
        )
    if "ClusterName" in dims and scope.get("eks_nodegroup"):
        # Container Insights' cluster metrics name the cluster alone: the recovery acts on the
        # workload's node group (replace_eks_node finds its failing nodes).
        scope.setdefault("eks_cluster", dims["ClusterName"])
        return _single("eks:nodegroup", f"{dims['ClusterName']}/{scope['eks_nodegroup']}"), values, severity
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
        target_group_arn = (
            f"arn:{partition(event)}:elasticloadbalancing:{event.region}:{event.account}:{dims['TargetGroup']}"
        )
        scope.setdefault("target_group_arn", target_group_arn)
        health = inventory.target_health(target_group_arn)
        unhealthy = [h["Target"]["Id"] for h in health if target_health.impaired(h.get("TargetHealth", {}))]
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
        impaired = [s["InstanceId"] for s in inventory.instance_statuses(instance_ids) if instance_status.failing(s)]
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
        return _single("ecs:service", ecs_service_arn(event, scope["ecs_cluster"], scope["ecs_service"]))
    if scope.get("target_group_arn"):
        return _single("elasticloadbalancing:targetgroup", scope["target_group_arn"])
    return _single("cloudwatch:alarm", event.resources[0] if event.resources else event.detail.alarmName)


def ecs_service_arn(event: AlarmStateChangeEvent, cluster: str, service: str) -> str:
    """The service's ARN, as the ECS detector names it, so signals about one service correlate."""
    return f"arn:{partition(event)}:ecs:{event.region}:{event.account}:service/{cluster}/{service}"


def _target_type(target_id: str) -> str:
    return "ec2:instance" if target_id.startswith("i-") else "elasticloadbalancing:target"


def reason_values(reason_data: str | None) -> dict[str, float]:
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
