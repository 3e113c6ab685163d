"""A target group's targets and their health (elasticloadbalancing:DescribeTargetHealth), and what
the states mean."""

from __future__ import annotations

from typing import Any

from core import aws

# "unused": a stopped instance (Target.InvalidState), or one in a zone the load balancer no longer
# uses. The guardrails and Verify count every unused member as failing: it serves nothing.
FAILING_STATES = frozenset({"unhealthy", "unavailable", "unused"})


def describe(client: Any, target_group_arn: str) -> list[dict[str, Any]]:
    """Every target of the group with its health (TargetHealthDescriptions). The API is not
    paginated: one call answers for the whole group. A target group that does not exist is a
    PermanentError (TargetGroupNotFound); HealthUnavailable and throttling are transient."""
    response = aws.call(client, "describe_target_health", TargetGroupArn=target_group_arn)
    return response.get("TargetHealthDescriptions", [])


def registered(descriptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets still registered: a deregistered target shows as "draining" until its
    deregistration delay has passed, then disappears."""
    return [d for d in descriptions if d.get("TargetHealth", {}).get("State") != "draining"]


def impaired(health: dict[str, Any]) -> bool:
    """A target that fails its checks, or whose instance is not running (the detectors' rule: an
    unused target in a zone the load balancer left is not impaired, only a stopped one is)."""
    state = health.get("State")
    return state in ("unhealthy", "unavailable") or (
        state == "unused" and health.get("Reason") == "Target.InvalidState"
    )
