"""redirect_shift_weights: on an ALB listener's default action or a listener rule that forwards to
several target groups by weight, move weight from the impaired target group to the others (or to
to_target_group_arn). Rollback puts the recorded forward configuration back, unless someone changed
the weights since. Time-boxed: a recovery that verified has the weights put back after `expires_in`
(its HandBack). (`redirect_traffic` with kind "shift_weights" is this action: actions/registry.py,
ALIASES.)
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import elb
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from actions.redirect_zonal_shift import EXPIRES_IN, within_72_hours
from core import aws
from core.arns import ListenerArn, ListenerRuleArn, TargetGroupArn
from core.errors import ActionRefused, PermanentError
from core.reads import tags
from core.reads.tags import require_managed

NAME = "redirect_shift_weights"
MAX_WEIGHT = 999  # ALB: weight of a target group in a forward action
MAX_FORWARD_GROUPS = 5  # ALB: target groups in one forward action


class Params(ActionParams, kw_only=True):
    kind: Literal["shift_weights"] = "shift_weights"
    listener_arn: Annotated[ListenerArn, Meta(description="default action to change; default: the scope's")] | None = (
        None
    )
    rule_arn: (
        Annotated[ListenerRuleArn, Meta(description="listener rule to change instead of the default action")] | None
    ) = None
    from_target_group_arn: (
        Annotated[TargetGroupArn, Meta(description="default: the scope's target_group_arn")] | None
    ) = None
    to_target_group_arn: (
        Annotated[TargetGroupArn, Meta(description="default: the other groups, by their weight")] | None
    ) = None
    shift_percent: Annotated[int, Meta(ge=1, le=100, description="share of the impaired group's weight to move")] = 100
    expires_in: EXPIRES_IN = "1h"

    def _check(self) -> None:
        within_72_hours(self.expires_in)
        if self.listener_arn and self.rule_arn:
            raise ValueError("give listener_arn or rule_arn, not both")


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or ctx.before
    if not before:
        return ctx.result("rollback", "unchanged", [], {}, {}, "nothing was applied")
    return _restore_weights(ctx, before)


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


ACTION = Action(NAME, Params, _shift_weights, rollback)
apply_handler, rollback_handler = handlers(ACTION)
