"""replace_instance: take an impaired instance out of its Auto Scaling group so the group
launches a healthy replacement.

mode "terminate" (default): TerminateInstanceInAutoScalingGroup without decrementing the desired
capacity. mode "mark_unhealthy": SetInstanceHealth Unhealthy, and the group replaces it on its
next health check. Refused when the group would keep fewer healthy in-service instances than
its minimum healthy capacity (the group's MinSize unless the plan sets one).

Instances outside an Auto Scaling group, per the plan's outside_group: "refuse" (default),
"reboot" (RebootInstances), or "stop_start" (StopInstances then StartInstances, which moves the
instance to new hardware; EBS-backed instances only). The instance must carry the managed tag and
be running. Neither can be undone: their rollback reports them as irreversible.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from actions import autoscaling as asg
from actions import aws_calls, ec2
from actions.base import ActionParams, ActionResult, ActionSpec, Context, handlers, result_of
from core.errors import ActionRefused, PermanentError, RecoveryError, TransientError

NAME = "replace_instance"


class Params(ActionParams):
    mode: Literal["terminate", "mark_unhealthy"] = "terminate"
    min_healthy_capacity: int | None = Field(default=None, ge=0, description="default: the group's MinSize")
    outside_group: Literal["refuse", "reboot", "stop_start"] = Field(
        default="refuse", description="what to do with an instance outside an Auto Scaling group"
    )
    stop_wait_seconds: int = Field(
        default=40, ge=0, le=50, description="stop_start: how long one attempt waits for the instance to stop"
    )


def apply(ctx: Context) -> ActionResult:
    client = asg.asg_client(ctx.impairment.account_id)
    instances = asg.impaired_instances(ctx.impairment)
    if not instances:
        raise PermanentError("replace_instance needs an ec2:instance among the affected resources")
    before = ctx.before
    if before is None:
        membership = asg.groups_of_instances(client, instances)
        outside = sorted(set(instances) - set(membership))
        if outside and ctx.params.outside_group == "refuse":
            raise ActionRefused(
                f"instances outside an Auto Scaling group are not replaced by this plan (outside_group: refuse): "
                f"{outside}"
            )
        standalone = _standalone_before(ctx, outside) if outside else {}
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
        if standalone:
            before["standalone"] = standalone
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
    result_after: dict[str, Any] = {"instances": after}
    messages = [f"{ctx.params.mode}: {', '.join(sorted(before['instances']))}"] if before["instances"] else []
    if before.get("standalone"):
        standalone_after = _recover_standalone(ctx, before)
        changed = changed or any(a["done"] for a in standalone_after.values())
        result_after["standalone"] = standalone_after
        messages += [f"{a['done'] or 'nothing to do'}: {i}" for i, a in sorted(standalone_after.items())]
    return ActionResult(
        action=NAME,
        phase="apply",
        step_index=ctx.step_index,
        result=result_of(ctx, changed),
        targets=sorted([*before["instances"], *before.get("standalone", {})]),
        before={k: v for k, v in before.items() if k != "progress"},
        after=result_after,
        message="; ".join(messages),
    )


def rollback(ctx: Context) -> ActionResult:
    """Undo a mark_unhealthy that the group has not acted on yet; a termination cannot be undone
    (the group's replacement instance is what stands in its place)."""
    client = asg.asg_client(ctx.impairment.account_id)
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
    # A reboot or a stop and start cannot be undone: the instance runs again, maybe elsewhere.
    restarted = _restarted_standalone(applied, before)
    undone = []
    if irreversible:
        undone.append(f"already replaced, cannot be restored: {', '.join(irreversible)}")
    if restarted:
        undone.append(f"rebooted or stopped and started, cannot be undone: {', '.join(restarted)}")
    return ActionResult(
        action=NAME,
        phase="rollback",
        step_index=ctx.step_index,
        result="irreversible" if irreversible or restarted else ("changed" if changed else "unchanged"),
        targets=sorted([*before.get("instances", {}), *before.get("standalone", {})]),
        before=before,
        after={"instances": after},
        message="; ".join(undone)
        or ("restored the instances' health status" if changed else "nothing to undo: the instances are as they were"),
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


# --- instances outside an Auto Scaling group ------------------------------------------------


def _standalone_before(ctx: Context, instance_ids: list[str]) -> dict[str, dict]:
    """The state of each instance outside a group, checked: managed, running, and for a stop and
    start, EBS-backed (an instance-store root would lose its data)."""
    found = ec2.describe_instances(aws_calls.client("ec2", ctx.impairment.account_id), instance_ids)
    missing = sorted(set(instance_ids) - set(found))
    if missing:
        raise PermanentError(f"instances do not exist: {missing}")
    records = {}
    for instance_id in sorted(instance_ids):
        instance = found[instance_id]
        ec2.require_managed(instance, ctx.managed_tag)
        state = instance["State"]["Name"]
        if state in ("pending", "stopping"):
            raise TransientError(f"instance {instance_id} is {state}; retrying once it settles", instance=instance_id)
        if state != "running":
            raise ActionRefused(f"instance {instance_id} is {state}, not running", instance=instance_id)
        if ctx.params.outside_group == "stop_start" and instance.get("RootDeviceType") != "ebs":
            raise ActionRefused(
                f"instance {instance_id} has an {instance.get('RootDeviceType')} root device: only an EBS-backed "
                "instance can be stopped and started",
                instance=instance_id,
            )
        records[instance_id] = {"mode": ctx.params.outside_group, **_ec2_state(instance)}
    return records


def _ec2_state(instance: dict) -> dict:
    placement = instance.get("Placement", {})
    launch_time = instance.get("LaunchTime")
    return {
        "state": instance["State"]["Name"],
        "launch_time": launch_time.isoformat() if hasattr(launch_time, "isoformat") else launch_time,
        "availability_zone": placement.get("AvailabilityZone"),
        "host_id": placement.get("HostId"),
        "root_device_type": instance.get("RootDeviceType"),
    }


def _recover_standalone(ctx: Context, before: dict) -> dict[str, dict]:
    """Reboot, or stop and start, each instance outside a group; resumes a stop and start that a
    previous attempt left half way."""
    client = aws_calls.client("ec2", ctx.impairment.account_id)
    progress = dict(before.get("progress", {}))
    outcome = {}
    for instance_id, prior in sorted(before["standalone"].items()):
        if prior["mode"] == "reboot":
            done = _reboot(ctx, client, instance_id, before, progress)
        else:
            done = _stop_start(ctx, client, instance_id, prior, before, progress)
        current = ec2.describe_instances(client, [instance_id]).get(instance_id)
        outcome[instance_id] = {"done": done, **(_ec2_state(current) if current else {"state": "gone"})}
    return outcome


def _mark(ctx: Context, before: dict, progress: dict, instance_id: str, step: str | None) -> None:
    """Record how far a step got, for a retry to resume from (the state before is kept as is)."""
    if step is None:
        progress.pop(instance_id, None)
    else:
        progress[instance_id] = step
    before["progress"] = dict(progress)
    ctx.record_before(before)


def _reboot(ctx: Context, client: Any, instance_id: str, before: dict, progress: dict) -> str:
    # A reboot leaves nothing to observe afterwards, so it is recorded before it is requested:
    # a retry never reboots twice.
    if progress.get(instance_id) == "reboot_requested":
        return ""
    if ctx.dry_run:
        return "would reboot"
    _mark(ctx, before, progress, instance_id, "reboot_requested")
    try:
        aws_calls.call(client, "reboot_instances", InstanceIds=[instance_id])
    except RecoveryError:
        _mark(ctx, before, progress, instance_id, None)  # not rebooted: the retry tries again
        raise
    return "rebooted"


def _stop_start(ctx: Context, client: Any, instance_id: str, prior: dict, before: dict, progress: dict) -> str:
    instance = ec2.describe_instances(client, [instance_id]).get(instance_id)
    if instance is None:
        raise PermanentError(f"instance {instance_id} no longer exists", instance=instance_id)
    now = _ec2_state(instance)
    state = now["state"]
    relaunched = (
        now["launch_time"] != prior["launch_time"]
        or now["host_id"] != prior["host_id"]
        or progress.get(instance_id) == "stop_requested"
    )
    if state in ("running", "pending") and relaunched:
        return ""  # started again since the stop: done
    if state in ("shutting-down", "terminated"):
        raise PermanentError(f"instance {instance_id} is {state}", instance=instance_id)
    if ctx.dry_run:
        return "would start" if state == "stopped" else "would stop and start"
    done = []
    if state == "running":
        aws_calls.call(client, "stop_instances", InstanceIds=[instance_id])
        _mark(ctx, before, progress, instance_id, "stop_requested")
        done.append("stopped")
        state = "stopping"
    if state == "stopping":
        state = _wait_until_stopped(client, instance_id, ctx.params.stop_wait_seconds)
    if state != "stopped":
        raise TransientError(
            f"instance {instance_id} is {state}, not stopped yet; the retry resumes the stop and start",
            instance=instance_id,
        )
    aws_calls.call(client, "start_instances", InstanceIds=[instance_id])
    done.append("started")
    return " and ".join(done)


def _wait_until_stopped(client: Any, instance_id: str, seconds: int) -> str:
    deadline = time.monotonic() + seconds
    while True:
        instance = ec2.describe_instances(client, [instance_id]).get(instance_id)
        state = instance["State"]["Name"] if instance else "gone"
        if state != "stopping" or time.monotonic() >= deadline:
            return state
        time.sleep(5)


def _restarted_standalone(applied: dict, before: dict) -> list[str]:
    """Instances outside a group that apply rebooted or stopped (by its result, or, when apply
    stopped half way, by the progress it recorded)."""
    outcome = (applied.get("after") or {}).get("standalone", {})
    progress = before.get("progress", {})
    return sorted(i for i in before.get("standalone", {}) if (outcome.get(i) or {}).get("done") or i in progress)


SPEC = ActionSpec(
    name=NAME,
    description="Replace impaired instances through their Auto Scaling group; reboot or stop and start others",
    params=Params,
    iam_actions=(
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:SetInstanceHealth",
        "ec2:DescribeInstances",
        "ec2:RebootInstances",
        "ec2:StopInstances",
        "ec2:StartInstances",
    ),
    apply=apply,
    rollback=rollback,
)

apply_handler, rollback_handler = handlers(SPEC)
