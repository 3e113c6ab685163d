"""scale_out: raise an Auto Scaling group's desired capacity, bounded by its MaxSize and the
plan's cap, recording what it added in the group's capacity ledger (core/capacity.py). Rollback
gives back what it added, from the current desired capacity; after a successful recovery the
workflow does the same once the workload has stayed healthy for `return_after_seconds`, unless
the plan sets `keep`."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from actions import autoscaling as asg
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.reads import groups
from core.reads.tags import require_managed

NAME = "scale_out"


class Params(ActionParams, kw_only=True):
    increment: Annotated[int, Meta(ge=1, le=100, description="instances to add")] = 1
    max_desired_capacity: Annotated[int, Meta(ge=1, description="never set desired above this")] | None = None
    # Emergency capacity is returned once the workload has stayed healthy this long after the
    # recovery (the workflow waits, checks health, then runs this action's rollback)...
    return_after_seconds: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600
    # ...unless the plan keeps it.
    keep: bool = False


def apply(ctx: Context) -> ActionResult:
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        name = asg.group_name(client, ctx.impairment)
        group = groups.describe(client, name)
        require_managed(group.get("Tags"), ctx.managed_tag, "Auto Scaling group", name, group=name)
        before = {
            "group": name,
            "desired_capacity": group["DesiredCapacity"],
            "max_size": group["MaxSize"],
            "min_size": group["MinSize"],
        }
        ctx.record_before(before)
    limit = before["max_size"]
    if ctx.params.max_desired_capacity is not None:
        limit = min(limit, ctx.params.max_desired_capacity)
    target = max(before["desired_capacity"], min(before["desired_capacity"] + ctx.params.increment, limit))

    if ctx.dry_run:
        found = after = groups.describe(client, before["group"])["DesiredCapacity"]
    else:  # recorded in the group's capacity ledger, held until its hand-back (or for good if kept)
        hand_back = 0 if ctx.params.keep else ctx.params.return_after_seconds
        found, after = asg.raise_desired_capacity(
            client, ctx.capacity, before["group"], ctx.grant_key, target, ctx.grant(hand_back)
        )
    changed = found < target
    capped = target < before["desired_capacity"] + ctx.params.increment
    return ActionResult(
        action=NAME,
        phase="apply",
        step_index=ctx.step_index,
        result=result_of(ctx, changed),
        targets=[before["group"]],
        before=before,
        after={"group": before["group"], "desired_capacity": after},
        message=(
            f"desired capacity {before['desired_capacity']} -> {target}" + (f" (capped at {limit})" if capped else "")
        ),
    )


def rollback(ctx: Context) -> ActionResult:
    """Give back what this step added (its grant in the capacity ledger), from the current desired
    capacity: what other recoveries and operators added stays (core.capacity.give_back)."""
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    applied = ctx.applied or {}
    before = applied.get("before") or ctx.before
    if not before:
        return ActionResult(
            action=NAME,
            phase="rollback",
            step_index=ctx.step_index,
            result="unchanged",
            targets=[],
            message="nothing was applied",
        )
    if ctx.before is None:  # the rollback's own state before, recorded before it changes anything
        found = groups.describe(client, before["group"])["DesiredCapacity"]
        ctx.record_before({"group": before["group"], "desired_capacity": found})
    found, now, message = asg.give_back_desired_capacity(client, ctx.capacity, before["group"], ctx.grant_key)
    return ActionResult(
        action=NAME,
        phase="rollback",
        step_index=ctx.step_index,
        result="changed" if now != found else "unchanged",
        targets=[before["group"]],
        before={"group": before["group"], "desired_capacity": found},
        after={"group": before["group"], "desired_capacity": now},
        message=message,
    )


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
