"""Detection: one Lambda per detector, each with its own least-privilege role, and the rules that
feed them from the default bus (where AWS services put their events):

- the alarm detector: state changes of the alarms of protected workloads (by name:
  "<workload>-..."; a user onboards an alarm of their own by naming it so and tagging it);
- the EC2 state-change detector: instances stopping or terminating;
- the AWS Health detector: Health events of the categories it handles;
- the sweeps: a schedule (every `sweep_interval_minutes`; 0 disables them).
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.functions import FunctionFactory


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
        sweep_interval_minutes: int = 1,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._functions, self._bus, self._dead_letters = functions, bus, dead_letters
        # Groups without a recovery:workload tag resolve to the workload the configuration declares.
        self._environment = {"WORKLOAD_GROUPS": json.dumps(dict(sorted((workload_groups or {}).items())))}
        self.alarm_detector = functions.create(
            "AlarmDetector",
            handler="detectors.alarm.handler",
            description="CloudWatch alarm state changes of protected workloads -> impairment events",
            dead_letter_queue=dead_letters,
            retry_attempts=2,
            max_event_age=Duration.hours(1),
        )
        bus.grant_put_events_to(self.alarm_detector)
        self.alarm_detector.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:ListTagsForResource"],
                resources=[f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"],
            )
        )
        self.alarm_detector.add_to_role_policy(
            iam.PolicyStatement(
                # Describe calls support no resource-level permissions.
                actions=[
                    "elasticloadbalancing:DescribeTargetHealth",
                    "autoscaling:DescribeAutoScalingGroups",
                    "ec2:DescribeInstanceStatus",
                ],
                resources=["*"],
            )
        )
        self._aws_event_detectors()
        self._sweeps(sweep_interval_minutes)
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
        self._bus.grant_put_events_to(function)
        function.add_to_role_policy(iam.PolicyStatement(actions=sorted(actions), resources=["*"]))
        return function

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
        # Not scheduled yet: the local emulator (recoveryctl/emulator/runtime.py) cannot deploy a
        # rule without an event pattern. Once it can, an events.Rule with
        # schedule=events.Schedule.rate(Duration.minutes(interval_minutes)) targets self.sweep here.
