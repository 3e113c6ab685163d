"""Protected workloads: the standard alarms that watch them, tagged so that the alarm detector
knows what each alarm is about (workload, impairment type, severity, and the group, target
group or ECS service a recovery acts on). Each alarm is named "<workload>-<kind>" and is created
only when the workload declares what it watches; each kind is configured in WorkloadAlarms.

Periods follow how often each metric is published (10 s only for high-resolution metrics), and
Route 53 health check alarms live in us-east-1 only.

Design: README.md#protecting-a-workload
"""

from __future__ import annotations

from aws_cdk import Aws, CfnRule, Duration, Fn, Stack, Tags, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import AlarmSettings, Workload
from infra.constants import TAG_PREFIX

MINUTE = Duration.seconds(60)
GIB = 1024**3
ROUTE53_METRICS_REGION = "us-east-1"
# A health check alarm is named "<workload>-route53-<health check id>".
HEALTH_CHECK_ALARM_INFIX = "route53-"
_AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_BELOW = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD


class ProtectedWorkload(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        workload: Workload,
        managed_tag: tuple[str, str],
        only_health_checks: bool = False,
    ) -> None:
        """`only_health_checks`: the Route 53 health check alarms alone (the us-east-1 stack of a
        workload in another region)."""
        super().__init__(scope, construct_id)
        self.workload = workload
        self.managed_tag = managed_tag
        self.alarms: list[cloudwatch.Alarm] = []
        if only_health_checks:
            self._health_check_alarms()
            return
        self._load_balancer_alarms()
        self._group_alarms()
        self._endpoint_alarms()
        self._container_alarms()
        self._database_alarms()
        self._node_alarms()

    # --- what each alarm watches ------------------------------------------------------------

    def _load_balancer_alarms(self) -> None:
        """Target health (ALB or NLB), and for an ALB the 5XX rate, p99 latency and a learned
        latency baseline (anomaly detection band)."""
        w, settings = self.workload, self.workload.alarms
        if not w.target_group_arn:
            return
        namespace = "AWS/NetworkELB" if w.load_balancer_type == "net" else "AWS/ApplicationELB"
        dimensions = {"TargetGroup": w.target_group_dimension, "LoadBalancer": w.load_balancer_dimension}

        def elb(metric_name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=metric_name,
                dimensions_map=dimensions,
                statistic=statistic,
                period=MINUTE,
            )

        if settings.unhealthy_hosts.enabled:
            self._alarm(
                "UnhealthyHosts",
                "unhealthy-hosts",
                elb("UnHealthyHostCount", "Maximum"),
                settings.unhealthy_hosts,
                "service_degradation",
                f"Unhealthy targets behind {w.name}",
            )
        if settings.healthy_hosts.enabled:
            self._alarm(
                "HealthyHosts",
                "healthy-hosts",
                elb("HealthyHostCount", "Minimum"),
                settings.healthy_hosts,
                "service_degradation",
                f"Fewer healthy targets behind {w.name} than {settings.healthy_hosts.threshold:g}",
                comparison=_BELOW,
            )
        if namespace != "AWS/ApplicationELB":
            return  # a Network Load Balancer sees no HTTP codes or response times
        if settings.error_rate.enabled:
            rate = cloudwatch.MathExpression(
                expression="100 * FILL(m1, 0) / m2",  # no 5XX datapoint means none happened
                using_metrics={
                    "m1": elb("HTTPCode_Target_5XX_Count", "Sum"),
                    "m2": elb("RequestCount", "Sum"),
                },
                label="5XX responses, % of requests",
                period=MINUTE,
            )
            self._alarm(
                "ErrorRate",
                "5xx-rate",
                rate,
                settings.error_rate,
                "application_error",
                f"5XX responses of {w.name} at {settings.error_rate.threshold:g}% of requests or more",
            )
        if settings.latency_p99.enabled:
            self._alarm(
                "LatencyP99",
                "latency-p99",
                elb("TargetResponseTime", "p99"),
                settings.latency_p99,
                "application_error",
                f"p99 response time of {w.name} at {settings.latency_p99.threshold:g} s or more",
            )
        if settings.latency_anomaly.enabled:
            self._latency_anomaly_alarm(elb("TargetResponseTime", "Average"), settings.latency_anomaly)

    def _latency_anomaly_alarm(self, metric: cloudwatch.Metric, settings: AlarmSettings) -> None:
        """Response time above the band CloudWatch learns from the metric's history (a baseline
        that follows daily and weekly patterns, instead of a fixed threshold)."""
        w = self.workload
        detector = cloudwatch.CfnAnomalyDetector(
            self,
            "LatencyModel",
            single_metric_anomaly_detector=cloudwatch.CfnAnomalyDetector.SingleMetricAnomalyDetectorProperty(
                namespace=metric.namespace,
                metric_name=metric.metric_name,
                dimensions=[
                    cloudwatch.CfnAnomalyDetector.DimensionProperty(name=k, value=v)
                    for k, v in (metric.dimensions or {}).items()
                ],
                stat=metric.statistic,
            ),
        )
        alarm = cloudwatch.AnomalyDetectionAlarm(
            self,
            "LatencyAnomaly",
            alarm_name=f"{w.name}-latency-anomaly",
            alarm_description=f"Response time of {w.name} above its learned baseline",
            metric=metric,
            std_devs=settings.threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_UPPER_THRESHOLD,
            evaluation_periods=settings.evaluation_periods,
            datapoints_to_alarm=settings.evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.node.add_dependency(detector)  # the alarm uses the model this stack owns
        self._tag(alarm, "application_error", settings, self._workload_scope())

    def _group_alarms(self) -> None:
        """EC2 status checks and CPU of the group; memory and disk from the CloudWatch agent."""
        w, settings = self.workload, self.workload.alarms
        group = w.auto_scaling_group
        if not group:
            return

        def by_group(namespace: str, metric_name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=metric_name,
                dimensions_map={"AutoScalingGroupName": group},
                statistic=statistic,
                period=period,
            )

        if settings.status_check.enabled:
            self._alarm(
                "StatusCheck",
                "status-check",
                by_group("AWS/EC2", "StatusCheckFailed", "Maximum", MINUTE),  # checks run every minute
                settings.status_check,
                "instance_failure",
                f"EC2 status checks failing in {group}",
            )
        if settings.cpu.enabled:
            self._alarm(
                "Cpu",
                "cpu",
                by_group("AWS/EC2", "CPUUtilization", "Average", MINUTE),
                settings.cpu,
                "resource_exhaustion",
                f"Average CPU of {group} at {settings.cpu.threshold:g}% or more",
            )
        if w.cloudwatch_agent is None:
            return  # no agent, no memory or disk metrics: an alarm would only ever miss data
        period = Duration.seconds(w.cloudwatch_agent.metrics_collection_interval)
        for kind, metric_name, what in (
            ("memory", "mem_used_percent", "Memory"),
            ("disk", "disk_used_percent", "Disk"),
        ):
            kind_settings: AlarmSettings = getattr(settings, kind)
            if kind_settings.enabled:
                self._alarm(
                    kind.capitalize(),
                    kind,
                    by_group("CWAgent", metric_name, "Maximum", period),  # the fullest instance
                    kind_settings,
                    "resource_exhaustion",
                    f"{what} of an instance of {group} at {kind_settings.threshold:g}% used or more",
                )

    def _endpoint_alarms(self) -> None:
        """The workload as its users reach it: Route 53 health checks and Synthetics canaries."""
        w, settings = self.workload, self.workload.alarms
        if self._route53_metrics_here():
            self._health_check_alarms()
        if settings.canary.enabled:
            for canary in w.canaries:
                self._alarm(
                    f"Canary-{canary}",
                    f"canary-{canary}",
                    cloudwatch.Metric(
                        namespace="CloudWatchSynthetics",
                        metric_name="SuccessPercent",
                        dimensions_map={"CanaryName": canary},
                        statistic="Average",
                        period=MINUTE,
                    ),
                    settings.canary,
                    "network_issue",
                    f"Synthetics canary {canary} of {w.name} is failing",
                    comparison=_BELOW,
                )

    def _health_check_alarms(self) -> None:
        w, settings = self.workload, self.workload.alarms
        if not settings.route53_health_check.enabled:
            return
        for health_check_id in w.health_check_ids:
            self._alarm(
                f"HealthCheck-{health_check_id}",
                f"{HEALTH_CHECK_ALARM_INFIX}{health_check_id}",
                cloudwatch.Metric(
                    namespace="AWS/Route53",
                    metric_name="HealthCheckStatus",
                    dimensions_map={"HealthCheckId": health_check_id},
                    statistic="Minimum",
                    period=MINUTE,
                ),
                settings.route53_health_check,
                "network_issue",
                f"Route 53 health check {health_check_id} of {w.name} is failing",
                comparison=_BELOW,
            )

    def _container_alarms(self) -> None:
        """Running tasks of the ECS service below its desired count (Container Insights)."""
        w, settings = self.workload, self.workload.alarms
        if not w.ecs_service or not settings.ecs_running_tasks.enabled:
            return
        dimensions = {"ClusterName": w.ecs_service.cluster, "ServiceName": w.ecs_service.service}
        missing = cloudwatch.MathExpression(
            expression="m2 - m1",
            using_metrics={
                "m1": cloudwatch.Metric(
                    namespace="ECS/ContainerInsights",
                    metric_name="RunningTaskCount",
                    dimensions_map=dimensions,
                    statistic="Average",
                    period=MINUTE,
                ),
                "m2": cloudwatch.Metric(
                    namespace="ECS/ContainerInsights",
                    metric_name="DesiredTaskCount",
                    dimensions_map=dimensions,
                    statistic="Average",
                    period=MINUTE,
                ),
            },
            label="tasks missing (desired - running)",
            period=MINUTE,
        )
        self._alarm(
            "EcsRunningTasks",
            "ecs-running-tasks",
            missing,
            settings.ecs_running_tasks,
            "service_degradation",
            f"ECS service {w.ecs_service.service} of {w.name} runs fewer tasks than desired",
            scope=self._ecs_scope(),
        )

    def _database_alarms(self) -> None:
        """Free storage of an RDS DB instance (Aurora storage grows by itself; RDS events cover the rest)."""
        w, settings = self.workload, self.workload.alarms
        if not w.database or not w.database.db_instance_identifier or not settings.db_free_storage.enabled:
            return
        db = w.database.db_instance_identifier
        self._alarm(
            "DbFreeStorage",
            "db-free-storage",
            cloudwatch.Metric(
                namespace="AWS/RDS",
                metric_name="FreeStorageSpace",
                dimensions_map={"DBInstanceIdentifier": db},
                statistic="Minimum",
                period=MINUTE,
            ),
            settings.db_free_storage,
            "database_issue",
            f"Free storage of {db} below {settings.db_free_storage.threshold:g} GiB",
            comparison=_BELOW,
            threshold=settings.db_free_storage.threshold * GIB,
            scope={},
        )

    def _node_alarms(self) -> None:
        """Failed nodes of the EKS cluster (Container Insights' cluster_failed_node_count): the
        recovery replaces the node group's NotReady nodes (replace_eks_node finds them)."""
        w, settings = self.workload, self.workload.alarms
        if not w.eks or not settings.eks_failed_nodes.enabled:
            return
        self._alarm(
            "EksFailedNodes",
            "eks-failed-nodes",
            cloudwatch.Metric(
                namespace="ContainerInsights",
                metric_name="cluster_failed_node_count",
                dimensions_map={"ClusterName": w.eks.cluster},
                statistic="Maximum",
                period=MINUTE,
            ),
            settings.eks_failed_nodes,
            "instance_failure",
            f"EKS cluster {w.eks.cluster} of {w.name} has failed nodes (Container Insights)",
            scope={f"{TAG_PREFIX}eks-cluster": w.eks.cluster, f"{TAG_PREFIX}eks-nodegroup": w.eks.nodegroup},
        )

    # --- one way to make and tag an alarm -----------------------------------------------------

    def _alarm(
        self,
        construct_id: str,
        suffix: str,
        metric: cloudwatch.IMetric,
        settings: AlarmSettings,
        impairment_type: str,
        description: str,
        *,
        comparison: cloudwatch.ComparisonOperator = _AT_LEAST,
        threshold: float | None = None,
        scope: dict[str, str] | None = None,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self.workload.name}-{suffix}",
            alarm_description=description,
            metric=metric,
            threshold=settings.threshold if threshold is None else threshold,
            evaluation_periods=settings.evaluation_periods,
            datapoints_to_alarm=settings.evaluation_periods,
            comparison_operator=comparison,
            # Missing data is not evidence of failure (ELB reports nothing without traffic).
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self._tag(alarm, impairment_type, settings, self._workload_scope() if scope is None else scope)
        return alarm

    def _tag(
        self, alarm: cloudwatch.Alarm, impairment_type: str, settings: AlarmSettings, scope: dict[str, str]
    ) -> None:
        tags = {
            self.managed_tag[0]: self.managed_tag[1],
            f"{TAG_PREFIX}workload": self.workload.name,
            f"{TAG_PREFIX}impairment-type": impairment_type,
            f"{TAG_PREFIX}severity": settings.severity.value,
            **scope,
        }
        for key, value in tags.items():
            Tags.of(alarm).add(key, value)
        self.alarms.append(alarm)

    def _workload_scope(self) -> dict[str, str]:
        """Tags naming what a recovery of the workload acts on: its group, target group and service."""
        w = self.workload
        tags: dict[str, str] = {}
        if w.auto_scaling_group:
            tags[f"{TAG_PREFIX}auto-scaling-group"] = w.auto_scaling_group
        if w.target_group_arn:
            tags[f"{TAG_PREFIX}target-group-arn"] = w.target_group_arn
        tags.update(self._ecs_scope())
        return tags

    def _ecs_scope(self) -> dict[str, str]:
        service = self.workload.ecs_service
        if not service:
            return {}
        return {f"{TAG_PREFIX}ecs-cluster": service.cluster, f"{TAG_PREFIX}ecs-service": service.service}

    def _route53_metrics_here(self) -> bool:
        """Whether this stack holds the workload's health check alarms: in us-east-1, or deployed
        to any region (then a rule refuses any other); in another region, the us-east-1 stack
        app.py builds for them does (infra/route53_alarms.py)."""
        w = self.workload
        if not w.health_check_ids or not w.alarms.route53_health_check.enabled:
            return False
        stack = Stack.of(self)
        if not Token.is_unresolved(stack.region):
            return stack.region == ROUTE53_METRICS_REGION
        rule = stack.node.try_find_child("Route53MetricsRegion")
        if rule is None:
            rule = CfnRule(stack, "Route53MetricsRegion")
        rule.add_assertion(  # type: ignore[union-attr]
            Fn.condition_equals(Aws.REGION, ROUTE53_METRICS_REGION),
            f"Route 53 publishes health check metrics in {ROUTE53_METRICS_REGION} only: the health check alarms "
            f"of workload {w.name} need this stack there. To deploy elsewhere, configure `regions` (a "
            f"{ROUTE53_METRICS_REGION} stack then holds them and forwards their state changes), or set "
            f"alarms.route53_health_check.enabled to false for {w.name} (and watch it with a canary).",
        )
        return True
