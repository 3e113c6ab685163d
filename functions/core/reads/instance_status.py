"""EC2 instances' states and status checks (ec2:DescribeInstanceStatus), and which of them fail."""

from __future__ import annotations

from typing import Any

from core import aws

IDS_PER_CALL = 100  # DescribeInstanceStatus takes at most 100 instance ids with InstanceIds
CHECKS = ("InstanceStatus", "SystemStatus", "AttachedEbsStatus")


def describe(client: Any, instance_ids: list[str]) -> list[dict[str, Any]]:
    """The InstanceStatuses of these instances, whatever their state (IncludeAllInstances: a
    stopped instance is listed too), 100 ids a call, every page. An id EC2 does not know fails
    the whole call: a PermanentError with code InvalidInstanceID.NotFound."""
    statuses: list[dict[str, Any]] = []
    for start in range(0, len(instance_ids), IDS_PER_CALL):
        batch = instance_ids[start : start + IDS_PER_CALL]
        statuses.extend(
            aws.items(
                client, "describe_instance_status", "InstanceStatuses", InstanceIds=batch, IncludeAllInstances=True
            )
        )
    return statuses


def failing(status: dict[str, Any]) -> str | None:
    """Why EC2 says an instance fails (not running or pending, or a status check impaired), or None."""
    state = status.get("InstanceState", {}).get("Name")
    if state not in ("running", "pending"):
        return f"EC2 state {state}"
    checks = [name for name in CHECKS if (status.get(name) or {}).get("Status") == "impaired"]
    return f"status check impaired: {', '.join(checks)}" if checks else None
