"""CheckGuardrails' reads and its wait while blocked (orchestration/blocked.py): a recovery that a
blocking condition holds (an instance refresh, an ECS deployment, a blocking alarm) waits and is
checked again, in a loop only it enters: an unblocked recovery makes no more transitions."""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

# What CheckGuardrails reads: the groups (blast radius, fail open: actions/fleet.py, which of
# their instances EC2 says are failing, their target groups), then the blocking conditions
# (core/blocking.py: instance refreshes, the ECS service's deployments, the blocking alarms).
GUARDRAIL_READS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "elasticloadbalancing:DescribeTargetHealth",
    "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstances",
    "autoscaling:DescribeInstanceRefreshes",
    "ecs:DescribeServices",
    "cloudwatch:DescribeAlarms",
)

# CheckGuardrails answered "blocked": guardrails.blocked.wait_seconds says how long to wait.
BLOCKED = sfn.Condition.is_present("$.guardrails.blocked")


def wait_while_blocked(scope: Construct, construct_id: str, check: tasks.LambdaInvoke) -> sfn.Wait:
    """Wait -> `check` again (the locks stay held: Admit took them for the longest wait)."""
    wait = sfn.Wait(scope, construct_id, time=sfn.WaitTime.seconds_path("$.guardrails.blocked.wait_seconds"))
    return wait.next(check)
