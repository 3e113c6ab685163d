"""replace_eks_node: replace an impaired node of an EKS managed node group. Cordon it, drain it
through the Eviction API (respecting PodDisruptionBudgets: a refused eviction is asked again,
up to `drain_timeout_seconds`), then terminate its instance through the node group's Auto
Scaling group without decrementing, so the node group launches the replacement.

An action of its own, not a kind of replace_instance: it needs the Kubernetes API (the stack's
EKS access entry) and the EKS reads, which replace_instance's role must not carry.

Design: docs/actions.md#replace_eks_node, docs/eks.md
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta

from actions import eks
from actions.autoscaling import impaired_instances
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws, clock, kube
from core.contract import ImpairmentDetected
from core.errors import CAPACITY_WAIT_SECONDS, ActionRefused, CapacityNotReady, PermanentError
from core.reads import groups

NAME = "replace_eks_node"


class Params(ActionParams, kw_only=True):
    cluster: Annotated[str, Meta(min_length=1, max_length=100, description="default: the scope's")] | None = None
    nodegroup: Annotated[str, Meta(min_length=1, max_length=63, description="default: the scope's")] | None = None
    nodes: Annotated[
        list[str],
        Meta(
            max_length=20,
            description="node names; default: the impaired instances' nodes, else the node group's NotReady nodes",
        ),
    ] = []
    min_healthy_nodes: Annotated[int, Meta(ge=0, description="default: the node group's minSize")] | None = None
    drain_timeout_seconds: Annotated[
        int, Meta(ge=0, le=CAPACITY_WAIT_SECONDS, description="how long evictions a budget refuses are retried")
    ] = 300


def apply(ctx: Context) -> ActionResult:
    retried = ctx.before is not None  # an earlier attempt recorded the plan: it may have terminated
    before = ctx.before or _plan(ctx)
    cluster = kube.connect(before["cluster"], account=ctx.impairment.account_id)
    autoscaling = aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id)
    # Which instances are on their way out is asked once per attempt: by a retry before it drains
    # (what its earlier attempt terminated is not drained again), by a first attempt right before
    # it terminates (its instances were in their group when CheckGuardrails read it; a drain that
    # must wait for a budget asks nothing).
    terminated = _terminated(autoscaling, before) if retried else set()
    drains = {
        name: _drain(ctx, cluster, name, prior)
        for name, prior in sorted(before["nodes"].items())
        if prior["instance"] not in terminated
    }
    waiting = {name: drain["waiting"] for name, drain in drains.items() if drain["waiting"]}
    if waiting and not ctx.dry_run:
        _wait_or_give_up(ctx, before, waiting)
    terminated = terminated if retried else _terminated(autoscaling, before)
    changed = any(d["cordoned"] or d["evicted"] for d in drains.values())
    for prior in before["nodes"].values():
        if prior["instance"] in terminated:
            continue
        changed = True
        if not ctx.dry_run:
            aws.call(
                autoscaling,
                "terminate_instance_in_auto_scaling_group",
                InstanceId=prior["instance"],
                ShouldDecrementDesiredCapacity=False,
            )
    after = {
        "cluster": before["cluster"],
        "nodegroup": before["nodegroup"],
        "nodes": {
            n: {**drains.get(n, {}), "terminated": p["instance"] in terminated or not ctx.dry_run}
            for n, p in sorted(before["nodes"].items())
        },
    }
    evicted = sum(len(d["evicted"]) for d in drains.values())
    return ctx.result(
        "apply",
        result_of(ctx, changed),
        sorted(p["instance"] for p in before["nodes"].values()),
        before=before,
        after=after,
        message=f"{before['cluster']}/{before['nodegroup']}: cordoned and drained {', '.join(sorted(before['nodes']))}"
        f" ({evicted} pod(s) evicted), instances terminated without decrementing: the node group replaces them",
    )


def _plan(ctx: Context) -> dict[str, Any]:
    """The nodes to replace and the node group's state, checked against its minimum healthy
    nodes; recorded before anything changes (with when the drain started, for its time-out)."""
    name, group = eks.target(ctx.params.cluster, ctx.params.nodegroup, ctx.impairment.scope, NAME)
    client = aws.client("eks", max_attempts=1, account=ctx.impairment.account_id)
    nodegroup = eks.managed_nodegroup(client, name, group, ctx.managed_tag)
    nodes = kube.connect(name, account=ctx.impairment.account_id).nodes(group)
    by_instance = {kube.instance_of(n): n for n in nodes}
    wanted = set(ctx.params.nodes) | (
        {ctx.impairment.scope["eks_node"]} if ctx.impairment.scope.get("eks_node") else set()
    )
    targets = {n["metadata"]["name"]: n for n in nodes if n["metadata"]["name"] in wanted}
    named_instances = impaired_instances(ctx.impairment)
    targets |= {by_instance[i]["metadata"]["name"]: by_instance[i] for i in named_instances if i in by_instance}
    if not wanted and not named_instances:
        # A signal about the node group as a whole (Container Insights' failed node count):
        # its nodes that are not Ready.
        targets = {n["metadata"]["name"]: n for n in nodes if not kube.is_ready(n)}
    if not targets:
        raise PermanentError(f"{NAME}: none of the impaired instances or named nodes is a node of {name}/{group}")
    floor = ctx.params.min_healthy_nodes
    floor = nodegroup["scalingConfig"].get("minSize", 0) if floor is None else floor
    ready_others = [n for n in nodes if kube.is_ready(n) and n["metadata"]["name"] not in targets]
    serving = sorted(t for t, n in targets.items() if kube.is_ready(n))
    if serving and len(ready_others) < floor:
        raise ActionRefused(
            f"replacing {serving} would leave {name}/{group} with {len(ready_others)} Ready nodes, below its minimum "
            f"of {floor}",
            nodegroup=group,
        )
    before = {
        "cluster": name,
        "nodegroup": group,
        "auto_scaling_groups": eks.auto_scaling_groups(nodegroup),
        "desired_size": nodegroup["scalingConfig"].get("desiredSize"),
        "minimum_healthy": floor,
        "drain_started_at": clock.utc_now().isoformat(),
        "nodes": {
            t: {"instance": kube.instance_of(n), "cordoned": kube.is_cordoned(n), "ready": kube.is_ready(n)}
            for t, n in sorted(targets.items())
        },
    }
    ctx.record_before(before)
    return before


def _terminated(autoscaling: Any, before: dict[str, Any]) -> set[str]:
    """The instances already on their way out: no longer in a group, or terminating."""
    instances = [p["instance"] for p in before["nodes"].values()]
    found = groups.memberships(autoscaling, instances)
    return {i for i in instances if i not in found or str(found[i].get("LifecycleState", "")).startswith("Terminat")}


def _drain(ctx: Context, cluster: kube.Cluster, name: str, prior: dict[str, Any]) -> dict[str, Any]:
    """Cordon the node (unless it is already) and evict its pods, DaemonSets' and mirror pods
    left; what a budget refuses, or what is still shutting down, is `waiting`."""
    try:
        node = cluster.node(name)
    except kube.NotFound:
        return {"cordoned": False, "evicted": [], "waiting": [], "node": "gone"}
    cordoned = not kube.is_cordoned(node)
    if cordoned and not ctx.dry_run:
        cluster.cordon(name)
    evicted, waiting = [], []
    for pod in cluster.pods_on(name):
        if not kube.evictable(pod):
            continue
        metadata = pod["metadata"]
        key = f"{metadata.get('namespace', 'default')}/{metadata['name']}"
        if metadata.get("deletionTimestamp"):
            waiting.append(f"{key} (terminating)")
        elif ctx.dry_run:
            evicted.append(key)
        else:
            answer = cluster.evict(metadata.get("namespace", "default"), metadata["name"])
            (evicted if answer in ("evicted", "gone") else waiting).append(key)
    return {"cordoned": cordoned, "evicted": evicted, "waiting": waiting}


def _wait_or_give_up(ctx: Context, before: dict[str, Any], waiting: dict[str, list[str]]) -> None:
    """Pods remain: ask again in a while (CapacityNotReady: the state machine waits 30 s), until
    the drain's time-out; then fail (the rollback uncordons what is not terminated)."""
    elapsed = (clock.utc_now() - datetime.fromisoformat(before["drain_started_at"])).total_seconds()
    pods = "; ".join(f"{node}: {', '.join(pods)}" for node, pods in sorted(waiting.items()))
    if elapsed >= ctx.params.drain_timeout_seconds:
        raise PermanentError(
            f"drain timed out after {int(elapsed)} s (drain_timeout_seconds {ctx.params.drain_timeout_seconds}): "
            f"pods still on the nodes, their disruption budgets refusing the eviction: {pods}; nothing terminated",
            nodegroup=before["nodegroup"],
        )
    raise CapacityNotReady(f"draining: pods not evicted yet (a disruption budget refuses for now): {pods}")


def rollback(ctx: Context) -> ActionResult:
    """Uncordon the nodes whose instance is not terminated and that this step cordoned; a
    terminated instance cannot come back (the node group's replacement stands in its place)."""
    applied = ctx.applied or {}
    before = applied.get("before") or ctx.before
    if not before or not before.get("nodes"):
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    cluster = kube.connect(before["cluster"], account=ctx.impairment.account_id)
    terminated = _terminated(aws.client("autoscaling", max_attempts=1, account=ctx.impairment.account_id), before)
    uncordoned, irreversible = [], []
    for name, prior in sorted(before["nodes"].items()):
        if prior["instance"] in terminated:
            irreversible.append(name)
            continue
        try:
            if kube.is_cordoned(cluster.node(name)) and not prior["cordoned"]:
                cluster.cordon(name, False)
                uncordoned.append(name)
        except kube.NotFound:
            irreversible.append(name)
    notes = [f"uncordoned {', '.join(uncordoned)}"] if uncordoned else []
    if irreversible:
        notes.append(f"terminated or gone, cannot be restored: {', '.join(irreversible)}")
    return ctx.result(
        "rollback",
        "irreversible" if irreversible else ("changed" if uncordoned else "unchanged"),
        sorted(p["instance"] for p in before["nodes"].values()),
        before=before,
        after={"uncordoned": uncordoned, "irreversible": irreversible},
        message="; ".join(notes) or "nothing to undo: the nodes are as they were",
    )


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after the step: the node group has its desired count of Ready nodes,
    and the replaced nodes are gone from the cluster."""
    before = (applied or {}).get("before") or {}
    if not before.get("nodes"):
        return []
    return [eks.ready_nodes_check(impairment, before["cluster"], before["nodegroup"], sorted(before["nodes"]))]


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
