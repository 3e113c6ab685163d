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
from detectors import registry
from detectors.declaration import Reads
from infra.config import MemberAccount, RecoveryConfig
from infra.constructs.workloads import ProtectedWorkload
from infra.nag import apply_nag
from infra.permissions import allow, allow_action, hosted_zones, plan_grants
from infra.route53_alarms import alarm_arns, forwarded

# Reads that Verify, CheckGuardrails and ReturnCapacity make in a member account, beyond what the
# actions and the detectors declare (tests/infra/test_accounts.py checks that every read the
# central roles hold on "*" is in member_reads() or declared by an action).
WORKFLOW_READS = (
    # CheckGuardrails' blocking conditions (core/blocking.py)
    "autoscaling:DescribeInstanceRefreshes",
    "cloudwatch:DescribeAlarms",
    "ec2:DescribeInstances",
    "ecs:DescribeServices",
    "ecs:DescribeTasks",
    "rds:DescribeDBClusters",
    "rds:DescribeDBInstances",
)


def member_reads() -> list[str]:
    """The describe calls made in a member account: the workflow's, and those the detectors
    declare (functions/detectors/registry.py)."""
    declared = {a for d in registry.DETECTORS for reads in d.reads if reads.anywhere for a in reads.actions}
    return sorted(set(WORKFLOW_READS) | declared)


def tag_reads() -> list[Reads]:
    """The detectors' reads of one resource (whether it opted in, by its tags)."""
    return [reads for d in registry.DETECTORS for reads in d.reads if not reads.anywhere]


def forwarded_signals() -> list[tuple[str, str, list[str]]]:
    """(rule name, source, detail types) of the AWS signals the central detectors consume: the
    member forwards exactly these (the test compares them with the central rules), each
    detail type once even when two detectors consume it."""
    seen: set[tuple[str, str]] = set()
    signals = []
    for declaration in registry.DETECTORS:
        pattern = declaration.forwarding_pattern()
        if pattern is None:
            continue
        (source,) = pattern["source"]
        detail_types = [t for t in pattern["detail-type"] if (source, t) not in seen]
        seen.update((source, t) for t in detail_types)
        if detail_types:
            signals.append((str(declaration.forward), source, detail_types))
    return signals


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
        zones = hosted_zones(config.workloads, config.parsed_plans())
        named = plan_grants(config.parsed_plans())
        for spec in ACTIONS.values():
            allow_action(self.role, spec, managed_tag, zones, named.get(spec.name, ()))
        allow(self.role, member_reads(), managed_tag)
        # The central readiness check simulates this role's policies from here, through the role
        # itself (IAM simulates only principals of the caller's account).
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["iam:SimulatePrincipalPolicy"], resources=[self.role.role_arn])
        )

        # The detectors read whether an alarm, a database or a service opted in: in this account only.
        place = {"partition": self.partition, "region": self.region, "account": self.account}
        reads = tag_reads()
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=sorted({a for r in reads for a in r.actions}),
                resources=list(dict.fromkeys(arn.format(**place) for r in reads for arn in r.resources)),
            )
        )

        self.workloads = [
            ProtectedWorkload(self, f"Workload-{w.name}", workload=w, managed_tag=managed_tag)
            for w in config.workloads
            if w.account_id == member.account_id and config.region_of(w) == region
        ]
        # ...and of their health check alarms in us-east-1 (infra/route53_alarms.py).
        if here := [w for w in forwarded(config) if w in (p.workload for p in self.workloads)]:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["cloudwatch:ListTagsForResource"], resources=alarm_arns(self.partition, self.account, here)
                )
            )

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
        for name, source, detail_types in forwarded_signals():
            rule = events.Rule(
                self,
                f"Forward{name}",
                description=f"{source} signals to the central recovery account",
                event_pattern=events.EventPattern(source=[source], detail_type=detail_types),
            )
            rule.add_target(targets.EventBus(central_bus, role=self.forward_role))
            self.rules.append(rule)
        apply_nag(self)
