"""The stack deployed into each member account (accounts.members): the role the central account's
recovery functions assume to act there, the alarms of the member's workloads, and the rules that
forward the member's signals to the central account's default event bus.

Trust: the role trusts the central account, and within it only principals whose ARN is one of the
central stack's roles (aws:PrincipalArn like arn:...:role/<stack_name>-*: CloudFormation names the
roles it creates "<stack name>-<logical id>-<suffix>"). sts:ExternalId was not chosen: it guards a
third party against the confused deputy, and here both sides are ours; the principal condition is
the tighter one, since it names which of the central account's roles may assume.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from actions.registry import ACTIONS
from infra.config import MemberAccount, RecoveryConfig
from infra.constructs.workloads import ProtectedWorkload
from infra.nag import apply_nag
from infra.permissions import allow, allow_action

# Reads that the central account's detectors, Verify, CheckGuardrails and ReturnCapacity make in a
# member account, beyond what the actions declare (tests/infra/test_accounts.py checks that every
# read those central roles hold on "*" is here or declared by an action).
MEMBER_READS: tuple[str, ...] = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstances",
    "ec2:DescribeTags",
    "ecs:DescribeServices",
    "ecs:DescribeTasks",
    "elasticloadbalancing:DescribeTargetHealth",
    "rds:DescribeDBClusters",
    "rds:DescribeDBInstances",
    "rds:DescribeEvents",
)

# The AWS signals the central detectors consume (infra/constructs/detection.py's rules on the
# default bus): the member forwards exactly these (the test compares the two).
FORWARDED_SIGNALS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Alarms", "aws.cloudwatch", ("CloudWatch Alarm State Change",)),
    ("Ec2State", "aws.ec2", ("EC2 Instance State-change Notification",)),
    ("Health", "aws.health", ("AWS Health Event",)),
    ("Rds", "aws.rds", ("RDS DB Instance Event", "RDS DB Cluster Event")),
    ("Ecs", "aws.ecs", ("ECS Task State Change",)),
)


def member_stack_name(config: RecoveryConfig, member: MemberAccount, region: str | None = None) -> str:
    """<stack_name>-Member-<name>, and -<region> for a standby region's."""
    name = f"{config.stack_name}-Member-{member.name}"
    return name if region is None or (config.regions and region == config.regions.primary) else f"{name}-{region}"


def build_member_stacks(app: Construct, config: RecoveryConfig) -> list[MemberStack]:
    """One stack per member account (and per region, with `regions` configured: each forwards to
    the central default bus of its own region); none without `accounts`."""
    if config.accounts is None:
        return []
    regions: list[str | None] = list(config.regions.all) if config.regions else [None]
    return [
        MemberStack(
            app,
            member_stack_name(config, member, region),
            config=config,
            member=member,
            region=region,
            env=cdk.Environment(account=member.account_id, region=region),
        )
        for member in config.accounts.members
        for region in regions
    ]


class MemberStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: RecoveryConfig,
        member: MemberAccount,
        region: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"Impairment recovery in member account {member.name}: role, alarms, signal forwarding",
            **kwargs,
        )
        accounts = config.accounts
        if accounts is None:
            raise ValueError("a member stack needs accounts configured")
        central = accounts.central_account_id
        managed_tag = (config.managed_tag_key, config.managed_tag_value)

        self.role = iam.Role(
            self,
            "RecoveryRole",
            role_name=accounts.role_name,
            description="Assumed by the central recovery account's functions to detect and recover here",
            assumed_by=iam.AccountPrincipal(central).with_conditions(
                {"ArnLike": {"aws:PrincipalArn": f"arn:{self.partition}:iam::{central}:role/{config.stack_name}-*"}}
            ),
        )
        for spec in ACTIONS.values():
            allow_action(self.role, spec, managed_tag)
        allow(self.role, list(MEMBER_READS), managed_tag)

        # The detectors read whether an alarm, a database or a service opted in: in this account only.
        def arn(service: str, resource: str) -> str:
            return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:ListTagsForResource", "ecs:ListTagsForResource", "rds:ListTagsForResource"],
                resources=[
                    arn("cloudwatch", "alarm:*"),
                    arn("ecs", "service/*"),
                    arn("rds", "db:*"),
                    arn("rds", "cluster:*"),
                ],
            )
        )

        self.workloads = [
            ProtectedWorkload(self, f"Workload-{w.name}", workload=w, managed_tag=managed_tag)
            for w in config.workloads
            if w.account_id == member.account_id and config.region_of(w) == region
        ]

        central_bus = events.EventBus.from_event_bus_arn(
            self, "CentralBus", f"arn:{self.partition}:events:{self.region}:{central}:event-bus/default"
        )
        self.forward_role = iam.Role(
            self,
            "ForwardRole",
            description="Puts this account's signals on the central recovery account's default bus",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
        )
        self.forward_role.add_to_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[central_bus.event_bus_arn])
        )
        self.rules = []
        for name, source, detail_types in FORWARDED_SIGNALS:
            rule = events.Rule(
                self,
                f"Forward{name}",
                description=f"{source} signals to the central recovery account",
                event_pattern=events.EventPattern(source=[source], detail_type=list(detail_types)),
            )
            rule.add_target(targets.EventBus(central_bus, role=self.forward_role))
            self.rules.append(rule)
        apply_nag(self)
