"""Elastic Load Balancing (v2) look-ups shared by the actions: tags, target health, listeners
and rules."""

from __future__ import annotations

from typing import Any

from actions import aws_calls
from core.errors import ActionRefused, PermanentError


def tags_of(client: Any, arn: str) -> dict[str, str]:
    """The tags of a load balancer, target group, listener or listener rule."""
    for description in aws_calls.call(client, "describe_tags", ResourceArns=[arn]).get("TagDescriptions", []):
        if description.get("ResourceArn") == arn:
            return {t["Key"]: t.get("Value", "") for t in description.get("Tags", [])}
    return {}


def require_managed(client: Any, arn: str, managed_tag: tuple[str, str], what: str) -> None:
    """Only resources that opted in (the managed tag) may be changed."""
    key, value = managed_tag
    if tags_of(client, arn).get(key) != value:
        raise ActionRefused(f"{what} {arn} is not managed: tag {key}={value} is missing", resource=arn)


def target_health(client: Any, target_group_arn: str) -> list[dict[str, Any]]:
    """Every target of the group with its health (DescribeTargetHealth is not paginated)."""
    return aws_calls.call(client, "describe_target_health", TargetGroupArn=target_group_arn).get(
        "TargetHealthDescriptions", []
    )


def registered(descriptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets still registered: a deregistered target shows as "draining" until its
    deregistration delay has passed, then disappears."""
    return [d for d in descriptions if d.get("TargetHealth", {}).get("State") != "draining"]


def load_balancer_of(client: Any, target_group_arn: str) -> str:
    """The one load balancer a target group is attached to."""
    groups = aws_calls.call(client, "describe_target_groups", TargetGroupArns=[target_group_arn]).get(
        "TargetGroups", []
    )
    balancers = sorted({arn for group in groups for arn in group.get("LoadBalancerArns", [])})
    if len(balancers) != 1:
        raise PermanentError(
            f"target group {target_group_arn} is attached to {len(balancers)} load balancers; "
            "name the load balancer (load_balancer_arn)",
            target_group=target_group_arn,
        )
    return balancers[0]


def listener_actions(client: Any, listener_arn: str) -> list[dict[str, Any]]:
    listeners = aws_calls.call(client, "describe_listeners", ListenerArns=[listener_arn]).get("Listeners", [])
    if not listeners:
        raise PermanentError(f"listener {listener_arn} does not exist", listener=listener_arn)
    return listeners[0].get("DefaultActions", [])


def rule_actions(client: Any, rule_arn: str) -> list[dict[str, Any]]:
    rules = aws_calls.call(client, "describe_rules", RuleArns=[rule_arn]).get("Rules", [])
    if not rules:
        raise PermanentError(f"listener rule {rule_arn} does not exist", rule=rule_arn)
    return rules[0].get("Actions", [])
