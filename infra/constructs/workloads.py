"""Protected workloads: the alarms that watch them, tagged so that the detector knows what each
alarm is about (workload, impairment type, severity, group and target group)."""

from __future__ import annotations

from aws_cdk import Duration, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import AlarmSettings, Workload
from infra.constants import TAG_PREFIX


class ProtectedWorkload(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, workload: Workload, managed_tag: tuple[str, str]
    ) -> None:
        super().__init__(scope, construct_id)
        self.workload = workload
        self.managed_tag = managed_tag
        self.alarms: list[cloudwatch.Alarm] = []
        settings = workload.alarms
        if workload.target_group_arn and settings.unhealthy_hosts.enabled:
            metric = cloudwatch.Metric(
                namespace="AWS/ApplicationELB",
                metric_name="UnHealthyHostCount",
                dimensions_map={
                    "TargetGroup": workload.target_group_dimension,
                    "LoadBalancer": workload.load_balancer_dimension,
                },
                statistic="Maximum",
                period=Duration.seconds(10),  # high resolution: detection within ~20 s
            )
            self._alarm(
                "UnhealthyHosts",
                "unhealthy-hosts",
                metric,
                settings.unhealthy_hosts,
                "service_degradation",
                f"Unhealthy targets behind {workload.name}",
            )
        if workload.auto_scaling_group and settings.status_check.enabled:
            metric = cloudwatch.Metric(
                namespace="AWS/EC2",
                metric_name="StatusCheckFailed",
                dimensions_map={"AutoScalingGroupName": workload.auto_scaling_group},
                statistic="Maximum",
                period=Duration.seconds(60),  # EC2 status checks run every minute
            )
            self._alarm(
                "StatusCheck",
                "status-check",
                metric,
                settings.status_check,
                "instance_failure",
                f"EC2 status checks failing in {workload.auto_scaling_group}",
            )

    def _alarm(
        self,
        construct_id: str,
        suffix: str,
        metric: cloudwatch.Metric,
        settings: AlarmSettings,
        impairment_type: str,
        description: str,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self.workload.name}-{suffix}",
            alarm_description=description,
            metric=metric,
            threshold=settings.threshold,
            evaluation_periods=settings.evaluation_periods,
            datapoints_to_alarm=settings.evaluation_periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        tags = {
            self.managed_tag[0]: self.managed_tag[1],
            f"{TAG_PREFIX}workload": self.workload.name,
            f"{TAG_PREFIX}impairment-type": impairment_type,
            f"{TAG_PREFIX}severity": settings.severity.value,
        }
        if self.workload.auto_scaling_group:
            tags[f"{TAG_PREFIX}auto-scaling-group"] = self.workload.auto_scaling_group
        if self.workload.target_group_arn:
            tags[f"{TAG_PREFIX}target-group-arn"] = self.workload.target_group_arn
        for key, value in tags.items():
            Tags.of(alarm).add(key, value)
        self.alarms.append(alarm)
