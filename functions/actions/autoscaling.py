"""Auto Scaling look-ups shared by the actions and the verification."""

from __future__ import annotations

from typing import Any

from actions import aws_calls
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused, PermanentError


def asg_client(account: str | None = None) -> Any:
    # No SDK retries inside the state machine's tasks: the state machine retries.
    return aws.client("autoscaling", max_attempts=1, account=account)


def call(client: Any, operation: str, **kwargs: Any) -> Any:
    return aws_calls.call(client, operation, **kwargs)


def describe_group(client: Any, name: str) -> dict[str, Any]:
    groups = call(client, "describe_auto_scaling_groups", AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        raise PermanentError(f"Auto Scaling group {name!r} does not exist", group=name)
    return groups[0]


def require_managed(group: dict[str, Any], managed_tag: tuple[str, str]) -> None:
    """Only groups that opted in (the managed tag) may be changed."""
    key, value = managed_tag
    tags = {t["Key"]: t.get("Value", "") for t in group.get("Tags", [])}
    if tags.get(key) != value:
        raise ActionRefused(
            f"Auto Scaling group {group['AutoScalingGroupName']} is not managed: tag {key}={value} is missing",
            group=group["AutoScalingGroupName"],
        )


def groups_of_instances(client: Any, instance_ids: list[str]) -> dict[str, str]:
    """instance id -> Auto Scaling group name, for the instances that belong to one."""
    membership: dict[str, str] = {}
    for start in range(0, len(instance_ids), 50):  # DescribeAutoScalingInstances: 50 ids a call
        batch = instance_ids[start : start + 50]
        kwargs: dict[str, Any] = {"InstanceIds": batch}
        while True:
            page = call(client, "describe_auto_scaling_instances", **kwargs)
            for item in page.get("AutoScalingInstances", []):
                membership[item["InstanceId"]] = item["AutoScalingGroupName"]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return membership


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
    current = describe_group(client, group)["DesiredCapacity"]
    if current == previous:
        return False, current, "desired capacity already at its previous value"
    if set_to is not None and current != set_to:
        return False, current, f"desired capacity is {current}, changed by someone else since; left as it is"
    call(client, "set_desired_capacity", AutoScalingGroupName=group, DesiredCapacity=previous, HonorCooldown=False)
    return True, current, f"desired capacity restored to {previous}"
