"""scale_eks_nodegroup: raise an EKS managed node group's desired size by a bounded amount
(UpdateNodegroupConfig, within its maxSize and the plan's cap), as scale_out does for an Auto
Scaling group, and give the nodes back after a recovery that held (unless `keep`). Rollback
restores the desired size recorded before, unless someone changed it since.

An action of its own: a managed node group's size is EKS's to set (setting its Auto Scaling
group's desired capacity behind EKS's back is undone by EKS).

Design: docs/actions.md#scale_eks_nodegroup
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from actions import eks
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused

NAME = "scale_eks_nodegroup"


class Params(ActionParams, kw_only=True):
    cluster: Annotated[str, Meta(min_length=1, max_length=100, description="default: the scope's")] | None = None
    nodegroup: Annotated[str, Meta(min_length=1, max_length=63, description="default: the scope's")] | None = None
    increment: Annotated[int, Meta(ge=1, le=100, description="nodes to add")] = 1
    max_desired_size: Annotated[int, Meta(ge=1, description="never set the desired size above this")] | None = None
    # The extra nodes go back once the workload has stayed healthy this long after the recovery...
    return_after_seconds: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600
    # ...unless the plan keeps them.
    keep: bool = False


def apply(ctx: Context) -> ActionResult:
    client = aws.client("eks", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before or _record_before(ctx, client)
    wanted = before["desired_size"] + ctx.params.increment
    limit = min(before["max_size"], ctx.params.max_desired_size or before["max_size"])
    target = max(before["desired_size"], min(wanted, limit))
    current = eks.describe_nodegroup(client, before["cluster"], before["nodegroup"])["scalingConfig"]["desiredSize"]
    changed = current < target
    if changed and not ctx.dry_run:
        _set_desired(client, before, target)
    capped = f" (capped at {limit})" if target < wanted else ""
    return ctx.result(
        "apply",
        result_of(ctx, changed),
        [before["nodegroup_arn"]],
        before=before,
        after=_state(before, current if ctx.dry_run else max(current, target)),
        message=f"{before['cluster']}/{before['nodegroup']}: desired size {before['desired_size']} -> {target}{capped}",
    )


def _record_before(ctx: Context, client: Any) -> dict[str, Any]:
    cluster, name = eks.target(ctx.params.cluster, ctx.params.nodegroup, ctx.impairment.scope, NAME)
    nodegroup = eks.managed_nodegroup(client, cluster, name, ctx.managed_tag)
    if nodegroup.get("status") not in ("ACTIVE", "DEGRADED"):
        raise ActionRefused(f"EKS node group {cluster}/{name} is {nodegroup.get('status')}: it cannot be scaled")
    scaling = nodegroup["scalingConfig"]
    before = {"cluster": cluster, "nodegroup": name, "nodegroup_arn": nodegroup["nodegroupArn"]}
    before = _state(before, scaling["desiredSize"]) | {"max_size": scaling["maxSize"], "min_size": scaling["minSize"]}
    ctx.record_before(before)
    return before


def _set_desired(client: Any, nodegroup: dict[str, Any], size: int) -> None:
    aws.call(
        client,
        "update_nodegroup_config",
        clusterName=nodegroup["cluster"],
        nodegroupName=nodegroup["nodegroup"],
        scalingConfig={"desiredSize": size},
    )


def rollback(ctx: Context) -> ActionResult:
    """Put the desired size back, unless someone else has changed it since: then leave it."""
    applied = ctx.applied or {}
    before = applied.get("before") or ctx.before
    if not before or "desired_size" not in before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    client = aws.client("eks", max_attempts=1, account=ctx.impairment.account_id)
    current = eks.describe_nodegroup(client, before["cluster"], before["nodegroup"])["scalingConfig"]["desiredSize"]
    if ctx.before is None:  # the rollback's own state before, recorded before it changes anything
        ctx.record_before(_state(before, current))
    previous, set_to = before["desired_size"], (applied.get("after") or {}).get("desired_size")
    if current == previous:
        changed, message = False, "desired size already at its previous value"
    elif set_to is not None and current != set_to:
        changed, message = False, f"desired size is {current}, changed by someone else since; left as it is"
    else:
        _set_desired(client, before, max(previous, before.get("min_size", 0)))
        changed, message = True, f"desired size restored to {previous}"
    return ctx.result(
        "rollback",
        "changed" if changed else "unchanged",
        [before["nodegroup_arn"]],
        before=_state(before, current),
        after=_state(before, previous if changed else current),
        message=f"{before['cluster']}/{before['nodegroup']}: {message}",
    )


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after the step: the node group has its desired count of Ready nodes."""
    after = (applied or {}).get("after") or {}
    if not after.get("nodegroup"):
        return []
    return [eks.ready_nodes_check(impairment, after["cluster"], after["nodegroup"])]


def _state(nodegroup: dict[str, Any], desired_size: int) -> dict[str, Any]:
    return {k: nodegroup[k] for k in ("cluster", "nodegroup", "nodegroup_arn")} | {"desired_size": desired_size}


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
