"""redirect_deregister_targets: deregister the impaired targets (the impairment's instances, or
every target in the impaired Availability Zone) from their target group; refused when fewer than
min_healthy_targets healthy targets would remain. Rollback registers exactly those targets again.
(`redirect_traffic` with kind "deregister_targets", its default, is this action:
actions/registry.py, ALIASES.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import autoscaling as asg
from actions import ec2
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.arns import TargetGroupArn
from core.errors import ActionRefused, PermanentError
from core.reads import tags, target_health
from core.reads.tags import require_managed

NAME = "redirect_deregister_targets"


class Params(ActionParams, kw_only=True):
    kind: Literal["deregister_targets"] = "deregister_targets"
    target_group_arn: Annotated[TargetGroupArn, Meta(description="default: the impairment's scope")] | None = None
    availability_zone: (
        Annotated[str, Meta(description="zone name or id; default: the scope's when the impairment names no instance")]
        | None
    ) = None
    min_healthy_targets: Annotated[int, Meta(ge=0, description="healthy targets that must remain registered")] = 1


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or ctx.before
    if not before:
        return ctx.result("rollback", "unchanged", [], {}, {}, "nothing was applied")
    return _register_again(ctx, before)


def _deregister(ctx: Context) -> ActionResult:
    client = aws.client("elbv2", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        target_group = ctx.params.target_group_arn or ctx.impairment.scope.get("target_group_arn")
        if not target_group:
            raise PermanentError("deregister_targets needs a target group: scope target_group_arn or the param")
        require_managed(tags.of_load_balancing(client, target_group), ctx.managed_tag, "target group", target_group)
        targets = target_health.registered(target_health.describe(client, target_group))
        selected_by, zone, impaired = _impaired_targets(ctx, targets)
        impaired_keys = {_key(d["Target"]) for d in impaired}
        healthy_left = sum(
            1 for d in targets if d["TargetHealth"].get("State") == "healthy" and _key(d["Target"]) not in impaired_keys
        )
        if impaired and healthy_left < ctx.params.min_healthy_targets:
            raise ActionRefused(
                f"deregistering {len(impaired)} targets would leave {target_group} with {healthy_left} healthy "
                f"targets, below the minimum of {ctx.params.min_healthy_targets}",
                target_group=target_group,
            )
        zones = _zones_of(impaired, ctx.impairment.account_id)
        before = {
            "kind": "deregister_targets",
            "target_group_arn": target_group,
            "selected_by": selected_by,
            "availability_zone": zone,
            "healthy_targets": sum(1 for d in targets if d["TargetHealth"].get("State") == "healthy"),
            "targets": [
                {
                    **_target_record(d["Target"]),
                    "zone": zones.get(d["Target"]["Id"]),
                    "health": d["TargetHealth"].get("State"),
                }
                for d in sorted(impaired, key=lambda d: _key(d["Target"]))
            ],
        }
        ctx.record_before(before)

    target_group = before["target_group_arn"]
    current = {_key(d["Target"]) for d in target_health.registered(target_health.describe(client, target_group))}
    pending = [t for t in before["targets"] if _key(t) in current]
    if pending and not ctx.dry_run:
        aws.call(client, "deregister_targets", TargetGroupArn=target_group, Targets=[_target_param(t) for t in pending])
    ids = [t["id"] for t in before["targets"]]
    message = (
        f"deregistered from {target_group}: {', '.join(t['id'] for t in pending)}"
        if pending
        else f"no impaired target registered in {target_group}"
        if not before["targets"]
        else f"already deregistered from {target_group}: {', '.join(ids)}"
    )
    return ctx.result(
        "apply",
        result_of(ctx, bool(pending)),
        ids,
        before,
        {"target_group_arn": target_group, "deregistered": [] if ctx.dry_run else [t["id"] for t in pending]},
        message,
    )


def _impaired_targets(ctx: Context, targets: list[dict]) -> tuple[str, dict | None, list[dict]]:
    """The targets to deregister: the impairment's instances, or every target in a zone (the
    param's, or the scope's when the impairment names no instance)."""
    instances = set(asg.impaired_instances(ctx.impairment))
    zone_given = ctx.params.availability_zone or (None if instances else ctx.impairment.scope.get("availability_zone"))
    if zone_given:
        zone = ec2.resolve_zone(aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id), zone_given)
        zones = _zones_of(targets, ctx.impairment.account_id)
        return "availability_zone", zone, [d for d in targets if zones.get(d["Target"]["Id"]) == zone["name"]]
    if not instances:
        raise PermanentError(
            "deregister_targets needs an ec2:instance among the affected resources, or an availability_zone"
        )
    return "instances", None, [d for d in targets if d["Target"]["Id"] in instances]


def _zones_of(descriptions: list[dict], account: str | None) -> dict[str, str | None]:
    """target id -> zone name: an instance's placement, else the zone it was registered with."""
    instance_ids = [d["Target"]["Id"] for d in descriptions if d["Target"]["Id"].startswith("i-")]
    instances = (
        ec2.describe_instances(aws.client("ec2", max_attempts=1, account=account), instance_ids) if instance_ids else {}
    )
    zones: dict[str, str | None] = {}
    for d in descriptions:
        target_id = d["Target"]["Id"]
        if target_id in instances:
            zones[target_id] = instances[target_id].get("Placement", {}).get("AvailabilityZone")
        else:
            registered_zone = d["Target"].get("AvailabilityZone")
            zones[target_id] = registered_zone if registered_zone != "all" else None
    return zones


def _register_again(ctx: Context, before: dict) -> ActionResult:
    """Register exactly the recorded targets that are not registered now; an instance that is
    gone or not running cannot be registered and is reported."""
    client = aws.client("elbv2", max_attempts=1, account=ctx.impairment.account_id)
    target_group = before["target_group_arn"]
    current = {_key(d["Target"]) for d in target_health.registered(target_health.describe(client, target_group))}
    missing = [t for t in before["targets"] if _key(t) not in current]
    instance_ids = [t["id"] for t in missing if t["id"].startswith("i-")]
    instances = (
        ec2.describe_instances(aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id), instance_ids)
        if instance_ids
        else {}
    )
    gone = [
        t
        for t in missing
        if t["id"].startswith("i-")
        and instances.get(t["id"], {}).get("State", {}).get("Name") not in ("running", "pending")
    ]
    to_register = [t for t in missing if t not in gone]
    if to_register:
        aws.call(
            client, "register_targets", TargetGroupArn=target_group, Targets=[_target_param(t) for t in to_register]
        )
    parts = []
    if to_register:
        parts.append(f"registered again with {target_group}: {', '.join(t['id'] for t in to_register)}")
    if gone:
        parts.append(f"no longer running, cannot be registered again: {', '.join(t['id'] for t in gone)}")
    return ctx.result(
        "rollback",
        "irreversible" if gone else ("changed" if to_register else "unchanged"),
        [t["id"] for t in before["targets"]],
        {
            "target_group_arn": target_group,
            "registered": sorted(t["id"] for t in before["targets"] if _key(t) in current),
        },
        {"target_group_arn": target_group, "registered_again": [t["id"] for t in to_register]},
        "; ".join(parts) or f"the targets are registered with {target_group} already",
    )


def _key(target: dict) -> tuple[str, int | None]:
    """A target is an id and a port (one instance may be registered on several ports)."""
    if "id" in target:
        return target["id"], target.get("port")
    return target["Id"], target.get("Port")


def _target_record(target: dict) -> dict:
    record: dict[str, Any] = {"id": target["Id"], "port": target.get("Port")}
    if target.get("AvailabilityZone"):
        record["availability_zone"] = target["AvailabilityZone"]
    return record


def _target_param(record: dict) -> dict:
    """A TargetDescription as Register/DeregisterTargets take it: exactly as registered."""
    param: dict[str, Any] = {"Id": record["id"]}
    if record.get("port") is not None:
        param["Port"] = record["port"]
    if record.get("availability_zone"):
        param["AvailabilityZone"] = record["availability_zone"]
    return param


ACTION = Action(NAME, Params, _deregister, rollback)
apply_handler, rollback_handler = handlers(ACTION)
