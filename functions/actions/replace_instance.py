"""replace_instance: take an impaired instance out of its Auto Scaling group so the group
launches a healthy replacement.

In place when that keeps the group's minimum healthy capacity (a failing instance is no healthy
capacity), else surge first: raise the desired capacity, wait for the new instances, then
terminate the old ones. An instance outside a group is refused, rebooted or stopped and started,
as the plan says.

Design: docs/actions.md#replace_instance
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import autoscaling as asg
from actions import fleet as fleets
from actions import standalone
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.errors import ActionRefused, CapacityNotReady, PermanentError
from core.guardrails import minimum_healthy
from core.reads import groups
from core.reads.tags import require_managed

NAME = "replace_instance"
IN_PLACE = "in_place"
SURGE = "surge"


class Params(ActionParams, kw_only=True):
    mode: Literal["terminate", "mark_unhealthy"] = "terminate"
    min_healthy_capacity: (
        Annotated[
            int, Meta(ge=0, description="default: the group's minimum healthy capacity (MinSize, or its policy's)")
        ]
        | None
    ) = None
    strategy: Annotated[
        Literal["auto", "in_place", "surge"],
        Meta(description="auto: in place, surging first only where that keeps the minimum healthy capacity"),
    ] = "auto"
    outside_group: Annotated[
        Literal["refuse", "reboot", "stop_start"],
        Meta(description="what to do with an instance outside an Auto Scaling group"),
    ] = "refuse"
    stop_wait_seconds: Annotated[
        int, Meta(ge=0, le=50, description="stop_start: how long one attempt waits for the instance to stop")
    ] = 40


def apply(ctx: Context) -> ActionResult:
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    instances = asg.impaired_instances(ctx.impairment)
    if not instances:
        raise PermanentError("replace_instance needs an ec2:instance among the affected resources")
    before = ctx.before
    read: dict[str, dict] = {}  # the groups _plan just read: not asked again before acting
    if before is None:
        before = _plan(ctx, client, instances, read)
        ctx.record_before(before)

    changed = False
    after: dict[str, dict] = {}
    messages = []
    for name, how in sorted(before.get("groups", {}).items()):
        targets = sorted(i for i, prior in before["instances"].items() if prior["group"] == name)
        if how["strategy"] == SURGE and not ctx.dry_run:
            changed = _surge(ctx, client, name, how, targets, before) or changed
        group = read[name] if name in read and how["strategy"] != SURGE else groups.describe(client, name)
        for instance_id in targets:
            current = _instance_state(group, instance_id)
            if _already_done(ctx.params.mode, current):
                after[instance_id] = current
                continue
            changed = True
            if ctx.dry_run:
                after[instance_id] = current
                continue
            taken = _take_out(ctx, client, instance_id, decrement=how["strategy"] == SURGE)
            after[instance_id] = taken or _current_state(client, name, instance_id)
        messages.append(f"{ctx.params.mode} {', '.join(targets)} ({how['note']})")
    result_after: dict[str, Any] = {"instances": after}
    if before.get("standalone"):
        standalone_after = standalone.recover(ctx, before)
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


def _plan(ctx: Context, client: Any, instances: list[str], read: dict[str, dict]) -> dict[str, Any]:
    """The state before, and how each group's instances are replaced (checked against its
    minimum healthy capacity): recorded before anything changes, so a retry does the same."""
    membership, carried = _memberships(ctx, client, instances)
    outside = sorted(set(instances) - set(membership))
    if outside and ctx.params.outside_group == "refuse":
        raise ActionRefused(
            f"instances outside an Auto Scaling group are not replaced by this plan (outside_group: refuse): {outside}"
        )
    outside_states = standalone.before_states(ctx, outside) if outside else {}
    target_groups = (ctx.impairment.scope["target_group_arn"],) if ctx.impairment.scope.get("target_group_arn") else ()
    groups: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    for name in sorted(set(membership.values())):
        fleet = carried.get(name) or fleets.read(client, name, ctx.impairment.account_id, target_groups)
        read[name] = fleet.group
        require_managed(fleet.group.get("Tags"), ctx.managed_tag, "Auto Scaling group", fleet.name, group=fleet.name)
        targets = sorted(i for i, g in membership.items() if g == name)
        groups[name] = _strategy(ctx.params, fleet, targets)
        for instance_id in targets:
            records[instance_id] = {
                "group": name,
                "state": _instance_state(fleet.group, instance_id),
                "desired_capacity": fleet.group["DesiredCapacity"],
                "failing": fleet.failing.get(instance_id),
            }
    before: dict[str, Any] = {"instances": records, "groups": groups}
    if outside_states:
        before["standalone"] = outside_states
    return before


def _memberships(ctx: Context, client: Any, instances: list[str]) -> tuple[dict[str, str], dict[str, fleets.Fleet]]:
    """instance id -> its group, and the fleets of the groups CheckGuardrails read and passed on.

    Such a group is read once more, here, and only it: the one fresh read right before the
    destructive call, so that an instance is taken out only if the group still holds it, with the
    group's capacity and health as they are now (a surge or a floor decided on a stale group
    could take out one instance too many). Target health and EC2 status are CheckGuardrails' of
    moments ago, the read its blast radius was decided on. Instances in no such group are looked
    up (DescribeAutoScalingInstances), their groups read whole."""
    membership: dict[str, str] = {}
    carried: dict[str, fleets.Fleet] = {}
    for name, seen in sorted((ctx.fleets or {}).items()):
        wanted = [i for i in instances if i in set(seen.get("instances", []))]
        if not wanted:
            continue
        group = groups.describe(client, name)
        listed = {i["InstanceId"] for i in group.get("Instances", [])}
        membership.update({i: name for i in wanted if i in listed})
        carried[name] = fleets.carried(group, seen.get("failing") or {})
    rest = [i for i in instances if i not in membership]
    if rest:
        membership.update(asg.groups_of_instances(client, rest))
    return membership, carried


def _strategy(params: Params, fleet: fleets.Fleet, targets: list[str]) -> dict[str, Any]:
    """In place or surge for one group, or ActionRefused when neither keeps its minimum."""
    group = fleet.group
    floor = params.min_healthy_capacity if params.min_healthy_capacity is not None else minimum_healthy(group)
    serving = sorted(set(targets) & fleet.healthy)
    healthy_after = len(fleet.healthy - set(targets))
    keeps_floor = not serving or healthy_after >= floor
    headroom = int(group["MaxSize"]) - int(group["DesiredCapacity"])
    can_surge = params.mode == "terminate" and headroom >= len(targets)
    record = {"desired_capacity": group["DesiredCapacity"], "members": sorted(fleet.members), "minimum_healthy": floor}
    if can_surge and (params.strategy == SURGE or (params.strategy == "auto" and not keeps_floor)):
        why = "taking them out first would leave" if not keeps_floor else "the plan surges; in place would leave"
        return {
            **record,
            "strategy": SURGE,
            "surge": len(targets),
            "note": f"surge: {len(targets)} launched first, then replaced ({why} {healthy_after} healthy, "
            f"minimum {floor})",
        }
    if keeps_floor:
        failing = "already failing, no healthy capacity lost" if not serving else f"{healthy_after} healthy remain"
        cannot = "; the group cannot surge: its desired capacity is its maximum" if headroom <= 0 else ""
        return {
            **record,
            "strategy": IN_PLACE,
            "note": "in place: terminated without decrementing, the group launches the replacement "
            f"({failing}{cannot})",
        }
    reason = (
        f"its desired capacity {group['DesiredCapacity']} is its maximum, so it cannot launch the replacement first"
        if params.mode == "terminate"
        else "mark_unhealthy cannot launch the replacement first"
    )
    raise ActionRefused(
        f"replacing {serving} would leave {fleet.name} with {healthy_after} healthy in-service instances, below its "
        f"minimum of {floor}, and {reason}",
        group=fleet.name,
    )


def _surge(ctx: Context, client: Any, name: str, how: dict[str, Any], targets: list[str], before: dict) -> bool:
    """Launch the replacements first: raise the desired capacity once (recorded, so a retry does
    not raise it again), then wait until that many new instances are healthy in service. True
    when this call changed the capacity."""
    progress = before.setdefault("progress", {})
    changed = False
    wanted = int(how["desired_capacity"]) + int(how["surge"])
    group = groups.describe(client, name)
    if progress.get(name) != "surged" and not all(
        _already_done(ctx.params.mode, _instance_state(group, i)) for i in targets
    ):
        aws.call(client, "set_desired_capacity", AutoScalingGroupName=name, DesiredCapacity=wanted, HonorCooldown=False)
        progress[name] = "surged"
        ctx.record_before(before)
        changed = True
        group = groups.describe(client, name)
    fresh = [i for i in asg.healthy_in_service(group) if i not in set(how["members"])]
    if len(fresh) < int(how["surge"]) and not all(
        _already_done(ctx.params.mode, _instance_state(group, i)) for i in targets
    ):
        raise CapacityNotReady(
            f"group {name}: {len(fresh)} of {how['surge']} replacement(s) healthy in service; the old instances "
            "are taken out once they are",
            group=name,
        )
    return changed


def _take_out(ctx: Context, client: Any, instance_id: str, decrement: bool) -> dict[str, Any] | None:
    """Terminate (the state after: the group's termination activity, as the call returns it, which
    names the instance and where the group's own history keeps it) or mark unhealthy (None: the
    call returns nothing, the state after is read)."""
    if ctx.params.mode == "terminate":
        response = aws.call(
            client,
            "terminate_instance_in_auto_scaling_group",
            InstanceId=instance_id,
            ShouldDecrementDesiredCapacity=decrement,
        )
        activity = response.get("Activity") or {}
        if not activity.get("ActivityId"):
            return None
        return {
            "termination_activity": activity["ActivityId"],
            "activity_status": activity.get("StatusCode"),
            "activity": activity.get("Description"),
        }
    else:
        aws.call(
            client,
            "set_instance_health",
            InstanceId=instance_id,
            HealthStatus="Unhealthy",
            ShouldRespectGracePeriod=False,
        )


def rollback(ctx: Context) -> ActionResult:
    """Undo a mark_unhealthy that the group has not acted on yet, and a surge whose old instances
    are still in service (the desired capacity goes back); a termination cannot be undone (the
    group's replacement instance is what stands in its place). A stop and start that left the
    instance stopped is undone by starting it."""
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    applied = ctx.applied or {}
    before = applied.get("before") or ctx.before or {"instances": {}}
    changed = False
    after = {}
    irreversible = []
    notes = []
    for instance_id, prior in sorted(before.get("instances", {}).items()):
        current = _current_state(client, prior["group"], instance_id)
        after[instance_id] = current
        if ctx.params.mode == "mark_unhealthy" and current.get("lifecycle_state") == "InService":
            if current.get("health_status") != prior["state"].get("health_status"):
                aws.call(
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
    for name, how in sorted(before.get("groups", {}).items()):
        if how.get("strategy") != SURGE or (before.get("progress") or {}).get(name) != "surged":
            continue
        still = [i for i, p in before["instances"].items() if p["group"] == name and i not in irreversible]
        if still:  # the old instances serve on: the instances the surge launched go
            removed, note = _undo_surge(client, name, how)
            changed = changed or removed
            notes.append(f"group {name}: {note}")
    outside = standalone.undo(ctx, applied, before)
    changed = changed or bool(outside["started"])
    undone = []
    if irreversible:
        undone.append(f"already replaced, cannot be restored: {', '.join(irreversible)}")
    if outside["rebooted"]:
        undone.append(f"rebooted or moved to new hardware, cannot be undone: {', '.join(outside['rebooted'])}")
    if outside["started"]:
        notes.append(f"started again (the stop and start had left them stopped): {', '.join(outside['started'])}")
    return ActionResult(
        action=NAME,
        phase="rollback",
        step_index=ctx.step_index,
        result="irreversible" if irreversible or outside["rebooted"] else ("changed" if changed else "unchanged"),
        targets=sorted([*before.get("instances", {}), *before.get("standalone", {})]),
        before=before,
        after={"instances": after},
        message="; ".join(undone + notes)
        or ("restored the instances' health status" if changed else "nothing to undo: the instances are as they were"),
    )


def _instance_state(group: dict, instance_id: str) -> dict:
    for instance in group.get("Instances", []):
        if instance["InstanceId"] == instance_id:
            return {"lifecycle_state": instance.get("LifecycleState"), "health_status": instance.get("HealthStatus")}
    return {"lifecycle_state": "Detached", "health_status": None}


def _current_state(client, group_name: str, instance_id: str) -> dict:
    return _instance_state(groups.describe(client, group_name), instance_id)


def _already_done(mode: str, state: dict) -> bool:
    lifecycle = state.get("lifecycle_state") or ""
    if lifecycle == "Detached" or lifecycle.startswith("Terminat"):
        return True
    return mode == "mark_unhealthy" and state.get("health_status") == "Unhealthy"


def _undo_surge(client: Any, name: str, how: dict[str, Any]) -> tuple[bool, str]:
    """Take out the instances a surge launched (decrementing the desired capacity back), so the
    group is as it was: its old instances, its old capacity. Left alone when someone else changed
    the desired capacity since."""
    group = groups.describe(client, name)
    surged = int(how["desired_capacity"]) + int(how["surge"])
    if group["DesiredCapacity"] != surged:
        return False, f"desired capacity is {group['DesiredCapacity']}, not the surge's {surged}: left as it is"
    launched = sorted(fleets.Fleet(group).members - set(how["members"]))[: int(how["surge"])]
    for instance_id in launched:
        aws.call(
            client,
            "terminate_instance_in_auto_scaling_group",
            InstanceId=instance_id,
            ShouldDecrementDesiredCapacity=True,
        )
    return bool(launched), f"the surge's instances taken out again: {', '.join(launched) or 'none'}"


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
