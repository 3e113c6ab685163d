"""What provision_warm_pool and provision_standby_group share: a group's desired capacity raised,
and restored on rollback.

provision_warm_pool raises a group's capacity from its warm pool; provision_standby_group scales
a separate standby group, by default the one a region impairment names, so one plan serves every
workload. Both wait until the capacity is in service, so the plan's next step (moving traffic
there) finds it ready.

Design: docs/actions.md#provision_warm_pool-and-provision_standby_group
"""

from __future__ import annotations

from typing import Any

from actions import autoscaling as asg
from actions.base import ActionResult, Context, result_of
from core import aws
from core.errors import ActionRefused, CapacityNotReady, PermanentError
from core.reads import groups, target_health, warm_pool
from core.reads.tags import require_managed


def _standby_target(ctx: Context) -> tuple[str, int]:
    """The standby group and its desired capacity: the step's, else the impairment's scope's."""
    scope = ctx.impairment.scope
    name = ctx.params.standby_group or scope.get("standby_auto_scaling_group")
    desired = ctx.params.desired_capacity
    if desired is None and scope.get("standby_desired_capacity", "").isdigit():
        desired = int(scope["standby_desired_capacity"])
    if not name or not desired:
        raise PermanentError(
            "kind standby_group needs standby_group and desired_capacity (in the step, or the impairment's scope"
            " standby_auto_scaling_group and standby_desired_capacity)",
            impairment=ctx.impairment.impairment_id,
        )
    return name, desired


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or ctx.before
    if not before:
        return ctx.result("rollback", "unchanged", [], {}, {}, "nothing was applied")
    return _restore_desired(ctx, before)


# --- warm_pool and standby_group: a desired capacity ----------------------------------------


def raise_desired(ctx: Context) -> ActionResult:
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        if ctx.params.kind == "standby_group":
            name, wanted = _standby_target(ctx)
        else:
            name = ctx.params.group or asg.group_name(client, ctx.impairment)
        group = groups.describe(client, name)
        require_managed(group.get("Tags"), ctx.managed_tag, "Auto Scaling group", name, group=name)
        desired, max_size = group["DesiredCapacity"], group["MaxSize"]
        before = {
            "kind": ctx.params.kind,
            "group": name,
            "desired_capacity": desired,
            "max_size": max_size,
            "min_size": group["MinSize"],
        }
        if ctx.params.kind == "warm_pool":
            warmed = _warmed_instances(client, name)
            before["warmed_instances"] = warmed
            # Never more than the pool holds warmed, so the new capacity comes from the pool.
            limits = {
                f"{len(warmed)} warmed instances in the pool": len(warmed),
                f"MaxSize {max_size}": max_size - desired,
            }
            increment = max(0, min(ctx.params.count, *limits.values()))
            before["target"] = desired + increment
            before["limited_by"] = [why for why, room in limits.items() if room <= increment < ctx.params.count]
        else:
            before["target"] = max(desired, min(wanted, max_size))
            before["limited_by"] = [f"MaxSize {max_size}"] if wanted > max_size else []
            if before["target"] < 1:
                raise ActionRefused(
                    f"standby group {name} can bring nothing into service: its MaxSize is {max_size} (wanted "
                    f"{wanted}); raise its MaxSize",
                    group=name,
                )
        ctx.record_before(before)

    target = before["target"]
    # This step's change: made now, or by an earlier attempt that then waited for the capacity.
    changed = before["desired_capacity"] < target
    if ctx.dry_run:
        current = groups.describe(client, before["group"])["DesiredCapacity"]
    else:  # recorded in the group's capacity ledger, to be given back as this step's
        current = asg.raise_desired_capacity(client, ctx.capacity, before["group"], ctx.grant_key, target, ctx.grant())[
            1
        ]
    if ctx.params.kind == "standby_group" and ctx.params.wait_until_in_service and not ctx.dry_run:
        _require_in_service(client, before["group"], target)
        scope = ctx.impairment.scope
        if scope.get("target_group_arn") and scope.get("standby_auto_scaling_group") == before["group"]:
            # the standby's own target group (a region impairment names it): serving, not just running
            _require_healthy_targets(ctx.impairment.account_id, scope["target_group_arn"], target)
    limits = before.get("limited_by") or []
    return ctx.result(
        "apply",
        result_of(ctx, changed),
        [before["group"]],
        before,
        {"group": before["group"], "desired_capacity": current if ctx.dry_run else max(current, target)},
        f"{before['group']}: desired capacity {before['desired_capacity']} -> {target}"
        + (f" (limited by {', '.join(limits)})" if limits else ""),
    )


def _require_in_service(client: Any, group_name: str, target: int) -> None:
    """Raise CapacityNotReady until the group has `target` healthy instances in service."""
    ready = len(asg.healthy_in_service(groups.describe(client, group_name)))
    if ready < target:
        raise CapacityNotReady(
            f"{group_name}: {ready} of {target} instances healthy in service; waiting for the rest before the plan "
            "goes on",
            group=group_name,
            ready=ready,
            target=target,
        )


def _require_healthy_targets(account: str | None, target_group_arn: str, target: int) -> None:
    """Raise CapacityNotReady until the target group has `target` healthy targets."""
    descriptions = target_health.describe(aws.client("elbv2", max_attempts=1, account=account), target_group_arn)
    healthy = sum(1 for t in descriptions if t["TargetHealth"]["State"] == "healthy")
    if healthy < target:
        raise CapacityNotReady(
            f"{target_group_arn.split(':')[-1]}: {healthy} of {target} targets healthy; waiting for the rest before "
            "the plan goes on",
            target_group=target_group_arn,
            healthy=healthy,
            target=target,
        )


def _warmed_instances(client: Any, group_name: str) -> list[str]:
    """The warm pool's instances that are ready to enter service."""
    configured, instances = warm_pool.describe(client, group_name)
    if not configured:
        raise PermanentError(f"Auto Scaling group {group_name} has no warm pool", group=group_name)
    warmed = warm_pool.warmed(instances)
    if not warmed:
        raise PermanentError(f"the warm pool of {group_name} has no warmed instance to bring in", group=group_name)
    return warmed


def _restore_desired(ctx: Context, before: dict) -> ActionResult:
    """Give back what apply added (its grant in the capacity ledger), from the current desired
    capacity: what other recoveries and operators added stays (core.capacity.give_back)."""
    client = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    if ctx.before is None:  # the rollback's own state before, recorded before it changes anything
        found = groups.describe(client, before["group"])["DesiredCapacity"]
        ctx.record_before(
            {"kind": before.get("kind"), "group": before["group"], "desired_capacity": found, "target": found}
        )
    found, current, message = asg.give_back_desired_capacity(client, ctx.capacity, before["group"], ctx.grant_key)
    return ctx.result(
        "rollback",
        "changed" if current != found else "unchanged",
        [before["group"]],
        {"group": before["group"], "desired_capacity": found},
        {"group": before["group"], "desired_capacity": current},
        f"{before['group']}: {message}",
    )
