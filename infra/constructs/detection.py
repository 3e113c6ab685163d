"""Detection: one Lambda per detector, each with its own least-privilege role, and the rules that
feed them from the default bus (where AWS services put their events):

- the alarm detector: state changes of the alarms of protected workloads (by name:
  "<workload>-..."; a user onboards an alarm of their own by naming it so and tagging it);
- the EC2 state-change detector: instances stopping or terminating;
- the AWS Health detector: Health events of the categories it handles;
- the RDS detector: RDS and Aurora events of the categories that can be an impairment;
- the ECS detector: tasks of services stopping for a reason that can be a failure;
- the sweeps: a schedule (every `sweep_interval_minutes`; 0 disables them);
- the region probe: a schedule, every minute, only in a stack that probes other regions (a
  standby region's, for the workloads it stands by for).
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import ConfigError
from infra.constructs.bus import grant_put_detections
from infra.constructs.functions import FunctionFactory

# The RDS event categories that can be an impairment (detectors/rds.py decides which are).
RDS_IMPAIRING_CATEGORIES = ("failure", "failover", "low storage", "availability", "recovery")
# The stop codes of a task that may have failed (detectors/ecs.py decides whether it did):
# UserInitiated, SpotInterruption and TerminationNotice never are.
ECS_FAILURE_STOP_CODES = ("EssentialContainerExited", "TaskFailedToStart", "ServiceSchedulerInitiated")
# Of Lambda's 4 KB of environment variables, what the alarm detector's own may take (the stack's
# common settings, table and topic names among them, take the rest).
ALARM_ENVIRONMENT_BUDGET = 3072


class Detection(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: FunctionFactory,
        bus: events.IEventBus,
        dead_letters: sqs.IQueue,
        workload_names: list[str],
        workload_groups: dict[str, str] | None = None,
        workload_resources: dict[str, list[str]] | None = None,
        sweep_interval_minutes: int = 1,
        region_probes: int = 0,
        table: dynamodb.ITableV2 | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._functions, self._bus, self._dead_letters = functions, bus, dead_letters
        # Groups without a recovery:workload tag resolve to the workload the configuration declares.
        self._environment = {"WORKLOAD_GROUPS": json.dumps(dict(sorted((workload_groups or {}).items())))}
        # The alarm detector checks an alarm's workload tag against what its resources belong to:
        # the workloads this configuration declares and what each names (detectors/alarm.py).
        alarm_environment = {
            **self._environment,
            "WORKLOAD_RESOURCES": json.dumps(
                {name: sorted(keys) for name, keys in sorted((workload_resources or {}).items())},
                separators=(",", ":"),
            ),
        }
        if sum(len(k) + len(v) for k, v in alarm_environment.items()) > ALARM_ENVIRONMENT_BUDGET:
            raise ConfigError(
                "the workloads declare too many resources for the alarm detector's environment (Lambda holds "
                f"4 KB of environment variables in all; WORKLOAD_GROUPS and WORKLOAD_RESOURCES may take "
                f"{ALARM_ENVIRONMENT_BUDGET} bytes): split the workloads across deployments"
            )
        self.alarm_detector = functions.create(
            "AlarmDetector",
            handler="detectors.alarm.handler",
            description="CloudWatch alarm state changes of protected workloads -> impairment events",
            environment=alarm_environment,
            dead_letter_queue=dead_letters,
            retry_attempts=2,
            max_event_age=Duration.hours(1),
        )
        # Every function that may put detections on the recovery bus: the bus's policy admits
        # exactly their roles (infra/constructs/bus.py).
        self.detectors: list[lambda_.Function] = []
        self._grant_put(self.alarm_detector)
        self.alarm_detector.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:ListTagsForResource"],
                resources=[f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"],
            )
        )
        # The workload an alarm's resources belong to: an ECS service's or a database's tags, as
        # the ECS and RDS detectors read them.
        self.alarm_detector.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:ListTagsForResource", "rds:ListTagsForResource"],
                resources=[
                    f"arn:{stack.partition}:ecs:{stack.region}:{stack.account}:service/*",
                    f"arn:{stack.partition}:rds:{stack.region}:{stack.account}:db:*",
                    f"arn:{stack.partition}:rds:{stack.region}:{stack.account}:cluster:*",
                ],
            )
        )
        self.alarm_detector.add_to_role_policy(
            iam.PolicyStatement(
                # Describe calls support no resource-level permissions. An instance's group and
                # tags say which workload it belongs to (DescribeAutoScalingInstances, DescribeTags).
                actions=[
                    "elasticloadbalancing:DescribeTargetHealth",
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "ec2:DescribeInstanceStatus",
                    "ec2:DescribeTags",
                ],
                resources=["*"],
            )
        )
        self._aws_event_detectors()
        self._sweeps(sweep_interval_minutes)
        self._region_probe(region_probes, table)
        self._rds_detector()
        self._ecs_detector()
        self.alarm_rule: events.Rule | None = None
        if not workload_names:
            return  # nothing protected yet: an empty name list is not a valid pattern
        self.alarm_rule = events.Rule(
            self,
            "AlarmStateChanges",
            description="State changes of the alarms of protected workloads",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": [{"prefix": f"{name}-"} for name in sorted(workload_names)]},
            ),
        )
        self.alarm_rule.add_target(
            targets.LambdaFunction(
                self.alarm_detector,
                dead_letter_queue=dead_letters,
                retry_attempts=8,
                max_event_age=Duration.hours(2),
            )
        )

    def _detector(
        self, construct_id: str, *, handler: str, description: str, actions: list[str], **kwargs
    ) -> lambda_.Function:
        """A detector function that may put events on the bus and call exactly these describe
        actions (which support no resource-level permissions)."""
        function = self._functions.create(
            construct_id,
            handler=handler,
            description=description,
            environment={**self._environment, **kwargs.pop("environment", {})},
            dead_letter_queue=self._dead_letters,
            **{"retry_attempts": 2, "max_event_age": Duration.hours(1), **kwargs},
        )
        self._grant_put(function)
        if actions:
            function.add_to_role_policy(iam.PolicyStatement(actions=sorted(actions), resources=["*"]))
        return function

    def _grant_put(self, function: lambda_.Function) -> None:
        grant_put_detections(self._bus, function)
        self.detectors.append(function)

    def _target(
        self, function: lambda_.IFunction, *, retry_attempts: int, max_event_age: Duration
    ) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            function, dead_letter_queue=self._dead_letters, retry_attempts=retry_attempts, max_event_age=max_event_age
        )

    def _aws_event_detectors(self) -> None:
        self.ec2_state_detector = self._detector(
            "Ec2StateDetector",
            handler="detectors.ec2_state.handler",
            description="EC2 instances of protected groups stopping or terminating unasked -> impairment events",
            actions=[
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeScalingActivities",
                "ec2:DescribeTags",
            ],
        )
        self.ec2_state_rule = events.Rule(
            self,
            "Ec2StateChanges",
            description="EC2 instances stopping or terminating (the detector keeps those of protected groups)",
            event_pattern=events.EventPattern(
                source=["aws.ec2"],
                detail_type=["EC2 Instance State-change Notification"],
                detail={"state": ["stopping", "stopped", "shutting-down", "terminated"]},
            ),
        )
        self.ec2_state_rule.add_target(
            self._target(self.ec2_state_detector, retry_attempts=8, max_event_age=Duration.hours(2))
        )

        self.health_detector = self._detector(
            "HealthDetector",
            handler="detectors.health.handler",
            description="AWS Health events about protected workloads or their zones -> impairment events",
            actions=[
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeAutoScalingGroups",
                "ec2:DescribeTags",
                "ec2:DescribeAvailabilityZones",
            ],
        )
        self.health_rule = events.Rule(
            self,
            "HealthEvents",
            description="AWS Health events (issues, scheduled changes, account notifications)",
            event_pattern=events.EventPattern(
                source=["aws.health"],
                detail_type=["AWS Health Event"],
                detail={"eventTypeCategory": ["issue", "scheduledChange", "accountNotification"]},
            ),
        )
        self.health_rule.add_target(
            self._target(self.health_detector, retry_attempts=8, max_event_age=Duration.hours(2))
        )

    def _sweeps(self, interval_minutes: int) -> None:
        self.sweep: lambda_.Function | None = None
        if interval_minutes <= 0:
            return  # disabled: the event-driven detectors alone
        # A sweep older than its interval is superseded by the next one; the ids of one window are
        # stable, so the window is at least 5 minutes and at least one interval.
        window_seconds = max(300, interval_minutes * 60)
        self.sweep = self._detector(
            "HealthSweep",
            handler="detectors.sweeps.handler",
            description="Scheduled sweep: Auto Scaling and target health of every protected group",
            actions=["autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth"],
            environment={"SWEEP_WINDOW_SECONDS": str(window_seconds)},
            timeout_seconds=60,
            retry_attempts=1,
            max_event_age=Duration.seconds(window_seconds),
        )
        self.sweep_schedule = events.Rule(
            self,
            "SweepSchedule",
            description=f"Backstop health sweep of the protected groups every {interval_minutes} minute(s)",
            schedule=events.Schedule.rate(Duration.minutes(interval_minutes)),
        )
        self.sweep_schedule.add_target(
            self._target(self.sweep, retry_attempts=1, max_event_age=Duration.seconds(max(60, interval_minutes * 60)))
        )

    def _region_probe(self, probes: int, table: dynamodb.ITableV2 | None) -> None:
        """The probe of the regions this region stands by for (detectors/region_probe.py): its
        probes are in the runtime configuration; it counts failures in the recovery table."""
        self.region_probe: lambda_.Function | None = None
        self.region_probe_schedule: events.Rule | None = None
        if probes <= 0:
            return
        if table is None:
            raise ValueError("the region probe needs the recovery table")
        self.region_probe = self._detector(
            "RegionProbe",
            handler="detectors.region_probe.handler",
            description="Probes the regions of the workloads this region stands by for -> region impairments",
            actions=["autoscaling:DescribeAutoScalingGroups"],
            # Probes run in parallel, each at most 8 s (3 s to connect, 5 s to read) in an outage.
            timeout_seconds=60,
            # A run that failed is superseded by the next tick, a minute later.
            retry_attempts=0,
            max_event_age=Duration.seconds(60),
        )
        table.grant_read_write_data(self.region_probe)
        self.region_probe_schedule = events.Rule(
            self,
            "RegionProbeSchedule",
            description=f"Probe of the regions of {probes} workload(s) this region stands by for, every minute",
            schedule=events.Schedule.rate(Duration.minutes(1)),
        )
        self.region_probe_schedule.add_target(
            self._target(self.region_probe, retry_attempts=1, max_event_age=Duration.seconds(60))
        )

    # --- databases and containers ---------------------------------------------------------------

    def _rds_detector(self) -> None:
        """RDS and Aurora events; the database's tags say whether it is protected."""
        stack = Stack.of(self)
        self.rds_detector = self._detector(
            "RdsDetector",
            handler="detectors.rds.handler",
            description="RDS and Aurora events about protected databases -> impairment events",
            actions=["rds:DescribeEvents"],  # supports no resource-level permissions
        )
        self.rds_detector.add_to_role_policy(
            iam.PolicyStatement(
                actions=["rds:ListTagsForResource"],
                resources=[
                    f"arn:{stack.partition}:rds:{stack.region}:{stack.account}:db:*",
                    f"arn:{stack.partition}:rds:{stack.region}:{stack.account}:cluster:*",
                ],
            )
        )
        self.rds_rule = events.Rule(
            self,
            "RdsEvents",
            description="RDS DB instance and cluster events that can be an impairment",
            event_pattern=events.EventPattern(
                source=["aws.rds"],
                detail_type=["RDS DB Instance Event", "RDS DB Cluster Event"],
                detail={"EventCategories": list(RDS_IMPAIRING_CATEGORIES)},
            ),
        )
        self.rds_rule.add_target(self._target(self.rds_detector, retry_attempts=8, max_event_age=Duration.hours(2)))

    def _ecs_detector(self) -> None:
        """Stopped tasks of ECS services; the service's tags say whether it is protected. Tasks
        that a person stopped or that AWS reclaimed (Spot, retirement) never reach the detector."""
        stack = Stack.of(self)
        self.ecs_detector = self._detector(
            "EcsDetector",
            handler="detectors.ecs.handler",
            description="Failed tasks of protected ECS services -> impairment events",
            actions=[],
        )
        self.ecs_detector.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:ListTagsForResource"],
                resources=[f"arn:{stack.partition}:ecs:{stack.region}:{stack.account}:service/*"],
            )
        )
        self.ecs_rule = events.Rule(
            self,
            "EcsTaskStops",
            description="Tasks of ECS services stopped by an exit, a failed start or the service scheduler",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={
                    "lastStatus": ["STOPPED"],
                    "group": [{"prefix": "service:"}],
                    "stopCode": list(ECS_FAILURE_STOP_CODES),
                },
            ),
        )
        self.ecs_rule.add_target(self._target(self.ecs_detector, retry_attempts=8, max_event_age=Duration.hours(2)))
