"""Auto Scaling groups (autoscaling:DescribeAutoScalingGroups) and which group lists an instance
(autoscaling:DescribeAutoScalingInstances)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core import aws
from core.errors import PermanentError

NAMES_PER_CALL = 50  # DescribeAutoScalingGroups: at most 50 names a call
IDS_PER_CALL = 50  # DescribeAutoScalingInstances: at most 50 instance ids a call


def describe(client: Any, name: str) -> dict[str, Any]:
    """One group as DescribeAutoScalingGroups shows it; a group that does not exist is a
    PermanentError (the API answers an empty list, not an error)."""
    found = describe_many(client, [name])
    if not found:
        raise PermanentError(f"Auto Scaling group {name!r} does not exist", group=name)
    return found[0]


def describe_many(client: Any, names: Iterable[str]) -> list[dict[str, Any]]:
    """The groups among these names that exist (absent ones are left out), 50 names a call."""
    unique = sorted(set(names))
    found: list[dict[str, Any]] = []
    for start in range(0, len(unique), NAMES_PER_CALL):
        batch = unique[start : start + NAMES_PER_CALL]
        found.extend(
            aws.items(client, "describe_auto_scaling_groups", "AutoScalingGroups", AutoScalingGroupNames=batch)
        )
    return found


def tagged(client: Any, key: str, value: str) -> list[dict[str, Any]]:
    """Every group that carries the tag key=value (one filtered listing, 100 groups a page: the
    calls grow with the number of groups, never with their instances)."""
    return aws.items(
        client,
        "describe_auto_scaling_groups",
        "AutoScalingGroups",
        Filters=[{"Name": f"tag:{key}", "Values": [value]}],
        PaginationConfig={"PageSize": 100},
    )


def memberships(client: Any, instance_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """instance id -> its AutoScalingInstances entry (group, zone, lifecycle and health), for the
    instances a group lists; the others are absent. 50 ids a call."""
    ids = sorted({i for i in instance_ids if i})
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), IDS_PER_CALL):
        batch = ids[start : start + IDS_PER_CALL]
        for item in aws.items(client, "describe_auto_scaling_instances", "AutoScalingInstances", InstanceIds=batch):
            found[item["InstanceId"]] = item
    return found
