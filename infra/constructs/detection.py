"""Detection: the alarm detector and the rule that sends it the state changes of the alarms of
protected workloads (by name: "<workload>-..."; a user onboards an alarm of their own by naming
it so and tagging it)."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
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
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
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
