"""Auto Scaling as the actions and the verification see it: which group an impairment is about,
its healthy capacity, putting its desired capacity back (the reads: core.reads.groups)."""

from __future__ import annotations

from typing import Any

from core import aws
from core.contract import ImpairmentDetected
from core.errors import PermanentError
from core.reads import groups


def groups_of_instances(client: Any, instance_ids: list[str]) -> dict[str, str]:
    """instance id -> Auto Scaling group name, for the instances that belong to one."""
    return {i: m["AutoScalingGroupName"] for i, m in groups.memberships(client, instance_ids).items()}


def impaired_instances(impairment: ImpairmentDetected) -> list[str]:
    return [r.resource_id for r in impairment.affected_resources if r.resource_type == "ec2:instance"]


def group_name(client: Any, impairment: ImpairmentDetected) -> str:
    """The Auto Scaling group an impairment is about: named in its scope or resources, else the
    group of its instances."""
    if impairment.scope.get("auto_scaling_group"):
        return impairment.scope["auto_scaling_group"]
    for resource in impairment.affected_resources:
        if resource.resource_type == "autoscaling:group":
            return resource.resource_id
    groups = set(groups_of_instances(client, impaired_instances(impairment)).values())
    if len(groups) != 1:
        raise PermanentError(f"cannot tell the Auto Scaling group of impairment {impairment.impairment_id}")
    return groups.pop()


def healthy_in_service(group: dict[str, Any], excluding: set[str] = frozenset()) -> list[str]:
    return [
        i["InstanceId"]
        for i in group.get("Instances", [])
        if i.get("LifecycleState") == "InService"
        and i.get("HealthStatus") == "Healthy"
        and i["InstanceId"] not in excluding
    ]


def restore_desired_capacity(client: Any, group: str, previous: int, set_to: int | None) -> tuple[bool, int, str]:
    """Put a group's desired capacity back to `previous`, unless someone else changed it since
    we set it to `set_to`: then leave it. Returns (changed, the capacity found, what happened)."""
    current = groups.describe(client, group)["DesiredCapacity"]
    if current == previous:
        return False, current, "desired capacity already at its previous value"
    if set_to is not None and current != set_to:
        return False, current, f"desired capacity is {current}, changed by someone else since; left as it is"
    aws.call(client, "set_desired_capacity", AutoScalingGroupName=group, DesiredCapacity=previous, HonorCooldown=False)
    return True, current, f"desired capacity restored to {previous}"
