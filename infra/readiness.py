"""The readiness check's alarms (its function is a declaration, detectors/registry.py READINESS;
what it knows of each workload is infra/workload_config.py's readiness_targets): one per plan,
on PlanNotReady; and what it needs to simulate the roles the plans' steps run with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam

from actions.plans import resolve_step
from core.plans import Plan
from detectors.registry import READINESS
from infra.constants import METRICS_NAMESPACE
from infra.constructs.dashboard import SERVICE
from readiness.world import ACTION_ROLES_ENV

METRIC = "PlanNotReady"  # readiness/handler.py emits it


def plan_alarms(operations: Any, plans: Sequence[str], interval_minutes: int) -> list[cloudwatch.Alarm]:
    """An alarm per plan, in ALARM while its last check said not ready. The period is the check's
    interval and a missing point keeps the state: a plan is not "ready" because a check is late
    (the readiness-errors alarm says that)."""
    alarms = []
    for plan in plans:
        metric = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=METRIC,
            dimensions_map={"service": SERVICE, "plan": plan},
            statistic="Maximum",
            period=Duration.minutes(interval_minutes),
        )
        alarm = cloudwatch.Alarm(
            operations,
            f"PlanNotReady-{plan}",
            alarm_name=f"{operations.prefix}-plan-not-ready-{plan}",
            alarm_description=(
                f"The readiness check found plan {plan} unable to act now (no headroom, an empty warm pool, a missing "
                "standby group, DNS record or health check, a member role that cannot be assumed, a role lacking a "
                "permission a step needs, no ARC cluster endpoint answering). A recovery would "
                f"fail or fall short. What to do: `recoveryctl readiness --deployed` names the failing checks with "
                "their evidence; fix the group's MaxSize, the warm pool or the records (docs/operations.md#readiness)."
            ),
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
        )
        operations.notify(alarm)
        alarms.append(alarm)
    return alarms


def plan_actions(plans: Iterable[Plan]) -> list[str]:
    """The actions the plans' steps run (aliases resolved to their kind's action)."""
    return sorted({resolve_step(step.action, step.params)[0] for plan in plans for step in plan.steps})


def grant_simulation(detection: Any, workflow: Any, plans: Iterable[Plan]) -> None:
    """The readiness function learns the role of each action the plans use (its apply function's:
    the rollback's holds the same) and may simulate those roles, and no other. (A member account's
    role it simulates from inside, through the role: infra/member_stack.py.)"""
    function = next((d.function for d in detection.built if d.declaration is READINESS), None)
    if function is None:
        return
    found = {action: workflow.apply_function(action).role for action in plan_actions(plans)}
    roles = {action: role for action, role in found.items() if role is not None}
    if not roles:
        return
    function.add_environment(
        ACTION_ROLES_ENV, Stack.of(function).to_json_string({a: role.role_arn for a, role in roles.items()})
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["iam:SimulatePrincipalPolicy"], resources=[role.role_arn for role in roles.values()]
        )
    )
