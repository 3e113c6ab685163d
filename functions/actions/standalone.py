"""replace_instance for an instance outside any Auto Scaling group: checked, then rebooted or
stopped and started as the plan says, each step marked in the action's record so a retry does
not repeat it, and undone by its rollback (an instance left stopped is started again).

Design: docs/actions.md#replace_instance
"""

from __future__ import annotations

import time
from typing import Any

from actions import ec2
from actions.base import Context
from core import aws
from core.errors import ActionRefused, PermanentError, RecoveryError, TransientError
from core.reads.tags import require_managed


def before_states(ctx: Context, instance_ids: list[str]) -> dict[str, dict]:
    """The state of each instance outside a group, checked: managed, running, and for a stop and
    start, EBS-backed (an instance-store root would lose its data)."""
    found = ec2.describe_instances(aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id), instance_ids)
    missing = sorted(set(instance_ids) - set(found))
    if missing:
        raise PermanentError(f"instances do not exist: {missing}")
    records = {}
    for instance_id in sorted(instance_ids):
        instance = found[instance_id]
        require_managed(instance.get("Tags"), ctx.managed_tag, "instance", instance_id, instance=instance_id)
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


def recover(ctx: Context, before: dict) -> dict[str, dict]:
    """Reboot, or stop and start, each instance outside a group; resumes a stop and start that a
    previous attempt left half way."""
    client = aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id)
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
        aws.call(client, "reboot_instances", InstanceIds=[instance_id])
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
        aws.call(client, "stop_instances", InstanceIds=[instance_id])
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
    aws.call(client, "start_instances", InstanceIds=[instance_id])
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


def undo(ctx: Context, applied: dict, before: dict) -> dict[str, list[str]]:
    """Instances outside a group that apply rebooted or stopped (by its result, or, when apply
    stopped half way, by the progress it recorded). A reboot, and a stop and start that ran to
    the end, cannot be undone ("rebooted"). An instance the stop and start left stopped (its start
    kept failing: InsufficientInstanceCapacity, say) is started again ("started"); if it cannot
    be, the rollback fails saying plainly that the instance is stopped, and a human is paged."""
    outcome = (applied.get("after") or {}).get("standalone", {})
    progress = before.get("progress", {})
    touched = sorted(i for i in before.get("standalone", {}) if (outcome.get(i) or {}).get("done") or i in progress)
    undone: dict[str, list[str]] = {"rebooted": [], "started": []}
    client = aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id) if touched else None
    for instance_id in touched:
        prior = before["standalone"][instance_id]
        if prior["mode"] == "reboot":
            undone["rebooted"].append(instance_id)
            continue
        instance = ec2.describe_instances(client, [instance_id]).get(instance_id)
        state = instance["State"]["Name"] if instance else "gone"
        if state == "stopping":
            raise TransientError(f"instance {instance_id} is stopping; it is started again once stopped")
        if state != "stopped":
            undone["rebooted"].append(instance_id)
            continue
        try:
            aws.call(client, "start_instances", InstanceIds=[instance_id])
        except RecoveryError as exc:
            raise type(exc)(
                f"instance {instance_id} is STOPPED: the recovery stopped it to move it to new hardware and could "
                f"not start it again ({exc}); start it by hand (aws ec2 start-instances --instance-ids {instance_id})",
                **exc.details,
            ) from exc
        undone["started"].append(instance_id)
    return undone
