"""Route 53 health check alarms of workloads outside us-east-1 (issue 17).

Route 53 publishes its health check metrics in us-east-1 only, so an alarm on them can exist only
there. For each account with such a workload (the central one, or a member), app.py builds one
small stack in us-east-1: the alarms, tagged as every workload alarm is, and one rule per
workload region forwarding their state changes ("CloudWatch Alarm State Change", by alarm name)
to the central account's default bus in that region, where the alarm detector of the workload's
stack takes them as it takes its own region's (it reads the alarm's tags in us-east-1: the
detector's role, or the member role, may). Without `regions` there is no such stack: the one
stack holds the alarms and may be deployed in us-east-1 only (infra/constructs/workloads.py).
"""

from __future__ import annotations

import os

import aws_cdk as cdk
from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import RecoveryConfig, Workload
from infra.constructs.workloads import HEALTH_CHECK_ALARM_INFIX, ROUTE53_METRICS_REGION, ProtectedWorkload
from infra.nag import apply_nag

ALARM_SOURCE = "aws.cloudwatch"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


def forwarded(config: RecoveryConfig) -> list[Workload]:
    """The workloads whose health check alarms are in a us-east-1 stack of their own: those with
    health checks and their alarm enabled, in a configured region other than us-east-1."""
    if config.regions is None:
        return []
    return [
        w
        for w in config.workloads
        if w.health_check_ids
        and w.alarms.route53_health_check.enabled
        and config.region_of(w) != ROUTE53_METRICS_REGION
    ]


def alarm_arns(partition: str, account: str, workloads: list[Workload]) -> list[str]:
    """The ARNs of these workloads' health check alarms (in us-east-1): whoever reads their tags
    (the alarm detector, the member role) is granted these."""
    return [
        f"arn:{partition}:cloudwatch:{ROUTE53_METRICS_REGION}:{account}:alarm:{w.name}-{HEALTH_CHECK_ALARM_INFIX}*"
        for w in workloads
    ]


def route53_alarm_stack_name(config: RecoveryConfig, account: str | None) -> str:
    """<stack_name>-Route53Alarms, or <stack_name>-Member-<name>-Route53Alarms in a member account."""
    member = next((m for m in (config.accounts.members if config.accounts else []) if m.account_id == account), None)
    return f"{config.stack_name}{f'-Member-{member.name}' if member else ''}-Route53Alarms"


def build_route53_alarm_stacks(app: Construct, config: RecoveryConfig) -> list[Route53AlarmStack]:
    """One us-east-1 stack per account that has forwarded workloads (none without `regions`)."""
    central = config.accounts.central_account_id if config.accounts else os.environ.get("CDK_DEFAULT_ACCOUNT")
    by_account: dict[str | None, list[Workload]] = {}
    for w in forwarded(config):
        by_account.setdefault(w.account_id or central, []).append(w)
    return [
        Route53AlarmStack(
            app,
            route53_alarm_stack_name(config, account),
            config=config,
            workloads=workloads,
            central_account=central,
            env=cdk.Environment(account=account, region=ROUTE53_METRICS_REGION),
        )
        for account, workloads in by_account.items()
    ]


class Route53AlarmStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: RecoveryConfig,
        workloads: list[Workload],
        central_account: str | None,
        **kwargs,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Route 53 health check alarms (their metrics are in us-east-1 only), forwarded to each "
            "workload's region",
            **kwargs,
        )
        managed_tag = (config.managed_tag_key, config.managed_tag_value)
        self.workloads = [
            ProtectedWorkload(self, f"Workload-{w.name}", workload=w, managed_tag=managed_tag, only_health_checks=True)
            for w in workloads
        ]
        self.forward_role = iam.Role(
            self,
            "ForwardRole",
            description="Puts the health check alarms' state changes on the default bus of each workload's region",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
        )
        by_region: dict[str, list[Workload]] = {}
        for w in workloads:
            by_region.setdefault(config.region_of(w) or ROUTE53_METRICS_REGION, []).append(w)
        self.rules: list[events.Rule] = []
        for region, here in sorted(by_region.items()):
            bus_arn = f"arn:{self.partition}:events:{region}:{central_account or self.account}:event-bus/default"
            bus = events.EventBus.from_event_bus_arn(self, f"Bus-{region}", bus_arn)
            self.forward_role.add_to_policy(iam.PolicyStatement(actions=["events:PutEvents"], resources=[bus_arn]))
            rule = events.Rule(
                self,
                f"Forward-{region}",
                description=f"Health check alarm state changes to the recovery stack in {region}",
                event_pattern=events.EventPattern(
                    source=[ALARM_SOURCE],
                    detail_type=[ALARM_STATE_CHANGE],
                    detail={"alarmName": [{"prefix": f"{w.name}-{HEALTH_CHECK_ALARM_INFIX}"} for w in here]},
                ),
            )
            rule.add_target(targets.EventBus(bus, role=self.forward_role))
            self.rules.append(rule)
        apply_nag(self)
