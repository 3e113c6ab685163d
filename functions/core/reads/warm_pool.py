"""A group's warm pool (autoscaling:DescribeWarmPool, paginated by NextToken: botocore has no
paginator for it)."""

from __future__ import annotations

from typing import Any

from core import aws

WARMED = ("Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated")  # ready to enter service


def describe(client: Any, group_name: str) -> tuple[bool, list[dict[str, Any]]]:
    """(whether the group has a warm pool configured, every instance in it)."""
    instances: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"AutoScalingGroupName": group_name}
    configured = False
    while True:
        page = aws.call(client, "describe_warm_pool", **kwargs)
        configured = configured or bool(page.get("WarmPoolConfiguration"))
        instances.extend(page.get("Instances", []))
        if not page.get("NextToken"):
            return configured, instances
        kwargs["NextToken"] = page["NextToken"]


def warmed(instances: list[dict[str, Any]]) -> list[str]:
    """The ids of the instances ready to enter service."""
    return sorted(i["InstanceId"] for i in instances if i.get("LifecycleState") in WARMED)
