"""replace_instance: take an impaired instance out of its Auto Scaling group so the group
launches a healthy replacement.

mode "terminate" (default): TerminateInstanceInAutoScalingGroup without decrementing the desired
capacity. mode "mark_unhealthy": SetInstanceHealth Unhealthy, and the group replaces it on its
next health check. Refused when the group would keep fewer healthy in-service instances than
its minimum healthy capacity (the group's MinSize unless the plan sets one).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from actions import autoscaling as asg
from actions.base import ActionParams, ActionResult, ActionSpec, Context, handlers, result_of
from core.errors import ActionRefused, PermanentError

NAME = "replace_instance"


class Params(ActionParams):
    mode: Literal["terminate", "mark_unhealthy"] = "terminate"
    min_healthy_capacity: int | None = Field(default=None, ge=0, description="default: the group's MinSize")


def apply(ctx: Context) -> ActionResult:
    client = asg.asg_client()
    instances = asg.impaired_instances(ctx.impairment)
    if not instances:
        raise PermanentError("replace_instance needs an ec2:instance among the affected resources")
    before = ctx.before
    if before is None:
        membership = asg.groups_of_instances(client, instances)
        outside = sorted(set(instances) - set(membership))
        if outside:
            raise ActionRefused(f"instances outside an Auto Scaling group cannot be replaced yet: {outside}")
        groups = {name: asg.describe_group(client, name) for name in sorted(set(membership.values()))}
        for group in groups.values():
            asg.require_managed(group, ctx.managed_tag)
            targets = {i for i, g in membership.items() if g == group["AutoScalingGroupName"]}
            remaining = len(asg.healthy_in_service(group, excluding=targets))
            floor = ctx.params.min_healthy_capacity if ctx.params.min_healthy_capacity is not None else group["MinSize"]
            if remaining < floor:
                raise ActionRefused(
                    f"replacing {sorted(targets)} would leave {group['AutoScalingGroupName']} with "
                    f"{remaining} healthy in-service instances, below its minimum of {floor}",
                    group=group["AutoScalingGroupName"],
                )
        before = {
            "instances": {
                i: {
                    "group": g,
                    "state": _instance_state(groups[g], i),
                    "desired_capacity": groups[g]["DesiredCapacity"],
                }
                for i, g in membership.items()
            }
        }
        ctx.record_before(before)

    changed = False
    after: dict[str, dict] = {}
    for instance_id, prior in sorted(before["instances"].items()):
        current = _current_state(client, prior["group"], instance_id)
        if _already_done(ctx.params.mode, current):
            after[instance_id] = current
            continue
        changed = True
        if ctx.dry_run:
            after[instance_id] = current
            continue
        if ctx.params.mode == "terminate":
            asg.call(
                client,
                "terminate_instance_in_auto_scaling_group",
                InstanceId=instance_id,
                ShouldDecrementDesiredCapacity=False,
            )
        else:
            asg.call(
                client,
                "set_instance_health",
                InstanceId=instance_id,
                HealthStatus="Unhealthy",
                ShouldRespectGracePeriod=False,
            )
        after[instance_id] = _current_state(client, prior["group"], instance_id)
    return ActionResult(
        action=NAME,
        phase="apply",
        step_index=ctx.step_index,
        result=result_of(ctx, changed),
        targets=sorted(before["instances"]),
        before=before,
        after={"instances": after},
        message=f"{ctx.params.mode}: {', '.join(sorted(before['instances']))}",
    )


def rollback(ctx: Context) -> ActionResult:
    """Undo a mark_unhealthy that the group has not acted on yet; a termination cannot be undone
    (the group's replacement instance is what stands in its place)."""
    client = asg.asg_client()
    applied = ctx.applied or {}
    before = applied.get("before") or ctx.before or {"instances": {}}
    changed = False
    after = {}
    irreversible = []
    for instance_id, prior in sorted(before.get("instances", {}).items()):
        current = _current_state(client, prior["group"], instance_id)
        after[instance_id] = current
        if ctx.params.mode == "mark_unhealthy" and current.get("lifecycle_state") == "InService":
            if current.get("health_status") != prior["state"].get("health_status"):
                asg.call(
                    client,
                    "set_instance_health",
                    InstanceId=instance_id,
                    HealthStatus=prior["state"].get("health_status", "Healthy"),
                    ShouldRespectGracePeriod=False,
                )
                changed = True
                after[instance_id] = _current_state(client, prior["group"], instance_id)
        elif current.get("lifecycle_state") != prior["state"].get("lifecycle_state"):
            irreversible.append(instance_id)
    return ActionResult(
        action=NAME,
        phase="rollback",
        step_index=ctx.step_index,
        result="irreversible" if irreversible else ("changed" if changed else "unchanged"),
        targets=sorted(before.get("instances", {})),
        before=before,
        after={"instances": after},
        message=(
            f"already replaced, cannot be restored: {', '.join(irreversible)}"
            if irreversible
            else "restored the instances' health status"
            if changed
            else "nothing to undo: the instances are as they were"
        ),
    )


def _instance_state(group: dict, instance_id: str) -> dict:
    for instance in group.get("Instances", []):
        if instance["InstanceId"] == instance_id:
            return {"lifecycle_state": instance.get("LifecycleState"), "health_status": instance.get("HealthStatus")}
    return {"lifecycle_state": "Detached", "health_status": None}


def _current_state(client, group_name: str, instance_id: str) -> dict:
    return _instance_state(asg.describe_group(client, group_name), instance_id)


def _already_done(mode: str, state: dict) -> bool:
    lifecycle = state.get("lifecycle_state") or ""
    if lifecycle == "Detached" or lifecycle.startswith("Terminat"):
        return True
    return mode == "mark_unhealthy" and state.get("health_status") == "Unhealthy"


SPEC = ActionSpec(
    name=NAME,
    description="Replace impaired instances through their Auto Scaling group",
    params=Params,
    iam_actions=(
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:SetInstanceHealth",
    ),
    apply=apply,
    rollback=rollback,
)

apply_handler, rollback_handler = handlers(SPEC)
