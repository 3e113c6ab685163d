"""redirect_traffic: send traffic away from what is impaired.

kind "deregister_targets": deregister the impaired targets (the impairment's instances, or every
target in the impaired Availability Zone) from their target group; refused when fewer than
min_healthy_targets healthy targets would remain. Rollback registers exactly those targets again.

kind "shift_weights": on an ALB listener's default action or a listener rule that forwards to
several target groups by weight, move weight from the impaired target group to the others (or to
to_target_group_arn). Rollback puts the recorded forward configuration back.

kind "zonal_shift": start an ARC zonal shift of the load balancer away from the impaired
Availability Zone, always with an expiry (a routing mitigation is time-boxed). A zonal shift
already active for that load balancer and zone is reused. Rollback cancels the shift this step
started.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from actions import autoscaling as asg
from actions import ec2, elb
from actions import redirect_zonal_shift as zonal_shift
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.arns import ListenerArn, ListenerRuleArn, LoadBalancerArn, TargetGroupArn
from core.errors import ActionRefused, PermanentError
from core.reads import tags, target_health
from core.reads.tags import require_managed

NAME = "redirect_traffic"
MAX_EXPIRY_MINUTES = 72 * 60  # ARC: a zonal shift expires after at most three days
MAX_WEIGHT = 999  # ALB: weight of a target group in a forward action
MAX_FORWARD_GROUPS = 5  # ALB: target groups in one forward action

_KIND_FIELDS = {
    "deregister_targets": {"target_group_arn", "availability_zone", "min_healthy_targets"},
    "shift_weights": {
        "listener_arn",
        "rule_arn",
        "from_target_group_arn",
        "to_target_group_arn",
        "shift_percent",
        "expires_in",
    },
    "zonal_shift": {"load_balancer_arn", "availability_zone", "expires_in"},
}


class Params(ActionParams):
    kind: Literal["deregister_targets", "shift_weights", "zonal_shift"] = "deregister_targets"
    # deregister_targets
    target_group_arn: TargetGroupArn | None = Field(default=None, description="default: the impairment's scope")
    availability_zone: str | None = Field(
        default=None, description="zone name or id; default: the scope's (deregister_targets: when no instance)"
    )
    min_healthy_targets: int = Field(default=1, ge=0, description="healthy targets that must remain registered")
    # shift_weights
    listener_arn: ListenerArn | None = Field(default=None, description="default action to change; default: the scope's")
    rule_arn: ListenerRuleArn | None = Field(
        default=None, description="listener rule to change instead of the default action"
    )
    from_target_group_arn: TargetGroupArn | None = Field(
        default=None, description="default: the scope's target_group_arn"
    )
    to_target_group_arn: TargetGroupArn | None = Field(
        default=None, description="default: the other groups, by their weight"
    )
    shift_percent: int = Field(default=100, ge=1, le=100, description="share of the impaired group's weight to move")
    # zonal_shift
    load_balancer_arn: LoadBalancerArn | None = Field(
        default=None, description="default: the scope's, or the target group's"
    )
    expires_in: str = Field(
        default="1h",
        pattern=r"^[1-9][0-9]*[mh]$",
        description="zonal_shift and shift_weights: the change's time-box, e.g. 30m, 2h; at most 72h (the "
        "zonal shift expires in ARC; shifted weights are put back after a recovery that verified)",
    )

    @field_validator("expires_in")
    @classmethod
    def _within_72_hours(cls, value: str) -> str:
        if _minutes(value) > MAX_EXPIRY_MINUTES:
            raise ValueError(f"a zonal shift expires after at most 72h, not {value}")
        return value

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> Params:
        given = {name for name in self.model_fields_set if name != "kind"}
        foreign = sorted(given - _KIND_FIELDS[self.kind])
        if foreign:
            raise ValueError(f"{', '.join(foreign)} do not apply to kind {self.kind}")
        if self.listener_arn and self.rule_arn:
            raise ValueError("give listener_arn or rule_arn, not both")
        return self


def _minutes(expires_in: str) -> int:
    return int(expires_in[:-1]) * (60 if expires_in.endswith("h") else 1)


def apply(ctx: Context) -> ActionResult:
    return {"deregister_targets": _deregister, "shift_weights": _shift_weights, "zonal_shift": zonal_shift.start}[
        ctx.params.kind
    ](ctx)


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or ctx.before
    if not before:
        return ctx.result("rollback", "unchanged", [], {}, {}, "nothing was applied")
    return {
        "deregister_targets": _register_again,
        "shift_weights": _restore_weights,
        "zonal_shift": zonal_shift.cancel,
    }[before.get("kind", ctx.params.kind)](ctx, before)


# --- deregister_targets ---------------------------------------------------------------------


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


# --- shift_weights --------------------------------------------------------------------------


def _shift_weights(ctx: Context) -> ActionResult:
    client = aws.client("elbv2", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        if ctx.params.rule_arn:
            resource, arn = "rule", ctx.params.rule_arn
        else:
            resource, arn = "listener", ctx.params.listener_arn or ctx.impairment.scope.get("listener_arn")
        if not arn:
            raise PermanentError("shift_weights needs a listener (scope listener_arn, or listener_arn) or a rule_arn")
        from_group = ctx.params.from_target_group_arn or ctx.impairment.scope.get("target_group_arn")
        if not from_group:
            raise PermanentError("shift_weights needs the impaired target group: scope target_group_arn or the param")
        what = "listener" if resource == "listener" else "listener rule"
        require_managed(tags.of_load_balancing(client, arn), ctx.managed_tag, what, arn)
        actions = _actions(client, resource, arn)
        weights = _weights(actions[_forward_index(actions, arn)])
        if from_group not in weights:
            raise PermanentError(f"{arn} does not forward to {from_group}", resource=arn)
        before = {
            "kind": "shift_weights",
            "resource": resource,
            "arn": arn,
            "from_target_group_arn": from_group,
            "to_target_group_arn": ctx.params.to_target_group_arn,
            "weights": weights,
            "actions": actions,
        }
        _shifted_weights(before, ctx.params.shift_percent)  # refuses before anything is recorded
        ctx.record_before(before)

    target = _shifted_weights(before, ctx.params.shift_percent)
    current = _weights(_forward(_actions(client, before["resource"], before["arn"]), before["arn"]))
    changed = current != target
    if changed and not ctx.dry_run:
        _put_actions(client, before["resource"], before["arn"], _with_weights(before["actions"], before["arn"], target))
    return ctx.result(
        "apply",
        result_of(ctx, changed),
        [before["arn"]],
        before,
        {"arn": before["arn"], "weights": current if ctx.dry_run else target},
        f"weights {_describe(before['weights'])} -> {_describe(target)}"
        if changed
        else f"weights already {_describe(target)}",
    )


def _shifted_weights(before: dict, percent: int) -> dict[str, int]:
    """The weights after moving `percent` of the impaired group's weight to the others: computed
    from the recorded weights, so a retry computes the same absolute change."""
    weights = dict(before["weights"])
    source, to = before["from_target_group_arn"], before.get("to_target_group_arn")
    if weights.get(source, 0) == 0:
        return weights  # nothing left to move
    recipients = [to] if to else [arn for arn in weights if arn != source]
    if not recipients:
        raise ActionRefused(
            f"{before['arn']} forwards only to {source}: no other target group to shift traffic to "
            "(set to_target_group_arn)",
            resource=before["arn"],
        )
    if to and to not in weights and len(weights) >= MAX_FORWARD_GROUPS:
        raise PermanentError(f"{before['arn']} already forwards to {MAX_FORWARD_GROUPS} target groups", resource=to)
    total = sum(weights.values())
    if total < 100:  # weights are ratios: scale small ones so a share of them is a whole number
        weights = {arn: w * (100 // max(total, 1)) for arn, w in weights.items()}
    moved = math.ceil(weights[source] * percent / 100)
    weights[source] -= moved
    base = {arn: weights.get(arn, 0) for arn in recipients}
    if sum(base.values()) == 0:
        base = dict.fromkeys(recipients, 1)
    shares = {arn: moved * w / sum(base.values()) for arn, w in base.items()}
    given = {arn: math.floor(s) for arn, s in shares.items()}
    # largest remainder first, so the shares add up to exactly what was moved
    for arn in sorted(shares, key=lambda a: (given[a] - shares[a], a))[: moved - sum(given.values())]:
        given[arn] += 1
    for arn, extra in given.items():
        weights[arn] = min(MAX_WEIGHT, weights.get(arn, 0) + extra)
    return weights


def _restore_weights(ctx: Context, before: dict) -> ActionResult:
    """Put the recorded forward configuration back, unless someone else has changed the weights
    since: then leave them."""
    client = aws.client("elbv2", max_attempts=1, account=ctx.impairment.account_id)
    current = _weights(_forward(_actions(client, before["resource"], before["arn"]), before["arn"]))
    changed = False
    if current == before["weights"]:
        message = f"weights already {_describe(current)}"
    elif current != _shifted_weights(before, ctx.params.shift_percent):
        message = f"weights are {_describe(current)}, changed by someone else since; left as they are"
    else:
        _put_actions(client, before["resource"], before["arn"], before["actions"])
        changed = True
        message = f"weights restored to {_describe(before['weights'])}"
    return ctx.result(
        "rollback",
        "changed" if changed else "unchanged",
        [before["arn"]],
        {"arn": before["arn"], "weights": current},
        {"arn": before["arn"], "weights": before["weights"] if changed else current},
        message,
    )


def _actions(client: Any, resource: str, arn: str) -> list[dict]:
    return elb.listener_actions(client, arn) if resource == "listener" else elb.rule_actions(client, arn)


def _put_actions(client: Any, resource: str, arn: str, actions: list[dict]) -> None:
    if resource == "listener":
        aws.call(client, "modify_listener", ListenerArn=arn, DefaultActions=actions)
    else:
        aws.call(client, "modify_rule", RuleArn=arn, Actions=actions)


def _forward_index(actions: list[dict], arn: str) -> int:
    for index, action in enumerate(actions):
        if action.get("Type") == "forward":
            return index
    raise PermanentError(f"{arn} has no forward action", resource=arn)


def _forward(actions: list[dict], arn: str) -> dict:
    return actions[_forward_index(actions, arn)]


def _weights(action: dict) -> dict[str, int]:
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
    if groups:
        return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
    return {action["TargetGroupArn"]: 1} if action.get("TargetGroupArn") else {}


def _with_weights(actions: list[dict], arn: str, weights: dict[str, int]) -> list[dict]:
    """The actions with the forward action's weights replaced, everything else as it was."""
    changed = [dict(a) for a in actions]
    index = _forward_index(changed, arn)
    forward = changed[index]
    config = dict(forward.get("ForwardConfig") or {})
    config["TargetGroups"] = [{"TargetGroupArn": group, "Weight": weight} for group, weight in weights.items()]
    forward["ForwardConfig"] = config
    if len(weights) > 1:
        forward.pop("TargetGroupArn", None)  # only allowed alongside a single-group ForwardConfig
    return changed


def _describe(weights: dict[str, int]) -> str:
    return ", ".join(f"{arn.rsplit('/', 2)[-2] if '/' in arn else arn}={w}" for arn, w in weights.items())


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
