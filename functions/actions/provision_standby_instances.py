"""provision_standby_instances: ExitStandby for up to `count` of the group's Standby instances
(each one raises the desired capacity by one). Rollback puts exactly those instances back in
Standby, decrementing the desired capacity again. The group must carry the managed tag.
(`provision_backup` with kind "standby_instances" is this action: actions/registry.py, ALIASES.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import autoscaling as asg
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.errors import PermanentError
from core.reads import groups
from core.reads.tags import require_managed

NAME = "provision_standby_instances"
STANDBY_BATCH = 20  # instance ids per EnterStandby / ExitStandby call


class Params(ActionParams, kw_only=True):
    kind: Literal["standby_instances"] = "standby_instances"
    count: Annotated[int, Meta(ge=1, le=100, description="instances to bring into service")] = 1
    group: Annotated[str, Meta(description="default: the impaired workload's Auto Scaling group")] | None = None


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or ctx.before
    if not before:
        return ctx.result("rollback", "unchanged", [], {}, {}, "nothing was applied")
    return _enter_standby_again(ctx, before)


def _exit_standby(ctx: Context) -> ActionResult:
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        name = ctx.params.group or asg.group_name(client, ctx.impairment)
        group = groups.describe(client, name)
        require_managed(group.get("Tags"), ctx.managed_tag, "Auto Scaling group", name, group=name)
        standby = [i for i in group.get("Instances", []) if i.get("LifecycleState") == "Standby"]
        if not standby:
            raise PermanentError(f"Auto Scaling group {name} has no instance in Standby", group=name)
        # Healthy ones first; ExitStandby raises the desired capacity, which must stay within MaxSize.
        standby.sort(key=lambda i: (i.get("HealthStatus") != "Healthy", i["InstanceId"]))
        room = max(0, group["MaxSize"] - group["DesiredCapacity"])
        before = {
            "kind": "standby_instances",
            "group": name,
            "desired_capacity": group["DesiredCapacity"],
            "max_size": group["MaxSize"],
            "min_size": group["MinSize"],
            "standby_instances": sorted(i["InstanceId"] for i in standby),
            "instances": sorted(i["InstanceId"] for i in standby[: min(ctx.params.count, room)]),
        }
        ctx.record_before(before)

    states = _lifecycle_states(client, before["group"])
    pending = [i for i in before["instances"] if states.get(i) == "Standby"]
    if pending and not ctx.dry_run:
        for start in range(0, len(pending), STANDBY_BATCH):
            aws.call(
                client,
                "exit_standby",
                AutoScalingGroupName=before["group"],
                InstanceIds=pending[start : start + STANDBY_BATCH],
            )
        states = _lifecycle_states(client, before["group"])
    if not before["instances"]:
        message = f"{before['group']} is at its MaxSize {before['max_size']}: no room to bring standby instances in"
    elif pending:
        message = f"{before['group']}: out of Standby: {', '.join(pending)}"
    else:
        message = f"{before['group']}: already out of Standby: {', '.join(before['instances'])}"
    return ctx.result(
        "apply",
        result_of(ctx, bool(pending)),
        before["instances"],
        before,
        {"group": before["group"], "instances": {i: states.get(i) for i in before["instances"]}},
        message,
    )


def _enter_standby_again(ctx: Context, before: dict) -> ActionResult:
    """Put exactly the instances apply took out of Standby back, decrementing the desired
    capacity that ExitStandby incremented."""
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    states = _lifecycle_states(client, before["group"])
    if ctx.before is None:  # the rollback's own state before, recorded before it changes anything
        ctx.record_before(
            {
                "kind": "standby_instances",
                "group": before["group"],
                "instances": before["instances"],
                "states": {i: states.get(i) for i in before["instances"]},
            }
        )
    back = [i for i in before["instances"] if states.get(i) == "InService"]
    gone = [i for i in before["instances"] if states.get(i) not in ("InService", "Standby", "EnteringStandby")]
    for start in range(0, len(back), STANDBY_BATCH):
        aws.call(
            client,
            "enter_standby",
            AutoScalingGroupName=before["group"],
            InstanceIds=back[start : start + STANDBY_BATCH],
            ShouldDecrementDesiredCapacity=True,
        )
    after = _lifecycle_states(client, before["group"]) if back else states
    parts = []
    if back:
        parts.append(f"back in Standby: {', '.join(back)}")
    if gone:
        parts.append(f"no longer in service, cannot be put back: {', '.join(gone)}")
    return ctx.result(
        "rollback",
        "irreversible" if gone else ("changed" if back else "unchanged"),
        before["instances"],
        {"group": before["group"], "instances": {i: states.get(i) for i in before["instances"]}},
        {"group": before["group"], "instances": {i: after.get(i) for i in before["instances"]}},
        f"{before['group']}: " + ("; ".join(parts) or "the instances are in Standby already"),
    )


def _lifecycle_states(client: Any, group_name: str) -> dict[str, str]:
    group = groups.describe(client, group_name)
    return {i["InstanceId"]: i.get("LifecycleState", "") for i in group.get("Instances", [])}


ACTION = Action(NAME, Params, _exit_standby, rollback)
apply_handler, rollback_handler = handlers(ACTION)
