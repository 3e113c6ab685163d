"""Elastic Load Balancing (v2) look-ups shared by the redirect actions: a target group's load
balancer, listeners and rules (tags and target health: core.reads)."""

from __future__ import annotations

from typing import Any

from core import aws
from core.errors import PermanentError


def load_balancer_of(client: Any, target_group_arn: str) -> str:
    """The one load balancer a target group is attached to."""
    groups = aws.call(client, "describe_target_groups", TargetGroupArns=[target_group_arn]).get("TargetGroups", [])
    balancers = sorted({arn for group in groups for arn in group.get("LoadBalancerArns", [])})
    if len(balancers) != 1:
        raise PermanentError(
            f"target group {target_group_arn} is attached to {len(balancers)} load balancers; "
            "name the load balancer (load_balancer_arn)",
            target_group=target_group_arn,
        )
    return balancers[0]


def listener_actions(client: Any, listener_arn: str) -> list[dict[str, Any]]:
    listeners = aws.call(client, "describe_listeners", ListenerArns=[listener_arn]).get("Listeners", [])
    if not listeners:
        raise PermanentError(f"listener {listener_arn} does not exist", listener=listener_arn)
    return listeners[0].get("DefaultActions", [])


def rule_actions(client: Any, rule_arn: str) -> list[dict[str, Any]]:
    rules = aws.call(client, "describe_rules", RuleArns=[rule_arn]).get("Rules", [])
    if not rules:
        raise PermanentError(f"listener rule {rule_arn} does not exist", rule=rule_arn)
    return rules[0].get("Actions", [])
