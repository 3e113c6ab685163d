"""EKS look-ups shared by the node group actions (replace_eks_node, scale_eks_nodegroup): which
cluster and node group a step acts on, the node group as described now (opted in by the managed
tag), and how many of its nodes the Kubernetes API says are Ready."""

from __future__ import annotations

from typing import Any

from core import aws
from core.errors import PermanentError
from core.reads.tags import require_managed


def target(cluster: str | None, nodegroup: str | None, scope: dict[str, str], what: str) -> tuple[str, str]:
    """The cluster and node group a step acts on: from its params, else from the impairment's scope."""
    cluster = cluster or scope.get("eks_cluster")
    nodegroup = nodegroup or scope.get("eks_nodegroup")
    if not cluster or not nodegroup:
        raise PermanentError(
            f"{what} needs a cluster and a node group: give cluster and nodegroup in the step's "
            "params, or eks_cluster and eks_nodegroup in the impairment's scope"
        )
    return cluster, nodegroup


def describe_nodegroup(client: Any, cluster: str, nodegroup: str) -> dict[str, Any]:
    return aws.call(client, "describe_nodegroup", clusterName=cluster, nodegroupName=nodegroup)["nodegroup"]


def managed_nodegroup(client: Any, cluster: str, nodegroup: str, managed_tag: tuple[str, str]) -> dict[str, Any]:
    """The node group as described now, if it opted in (the managed tag); else ActionRefused."""
    found = describe_nodegroup(client, cluster, nodegroup)
    require_managed(
        found.get("tags") or {},
        managed_tag,
        "EKS node group",
        f"{cluster}/{nodegroup}",
        nodegroup=found.get("nodegroupArn", nodegroup),
    )
    return found


def auto_scaling_groups(nodegroup: dict[str, Any]) -> list[str]:
    """The node group's Auto Scaling groups (resources.autoScalingGroups): EKS's, named eks-*."""
    return [g["name"] for g in (nodegroup.get("resources") or {}).get("autoScalingGroups") or [] if g.get("name")]


def ready_nodes_check(impairment: Any, cluster: str, nodegroup: str, gone: list[str] = ()) -> dict[str, Any]:
    """Verify's check of a node group: as many Ready, schedulable nodes as its desired size (node
    status from the Kubernetes API), and none of the nodes `gone` still registered."""
    from core import kube

    client = aws.client("eks", max_attempts=1, account=impairment.account_id)
    desired = describe_nodegroup(client, cluster, nodegroup)["scalingConfig"]["desiredSize"]
    nodes = kube.connect(cluster, account=impairment.account_id).nodes(nodegroup)
    names = {n["metadata"]["name"] for n in nodes}
    ready = sorted(n["metadata"]["name"] for n in nodes if kube.is_ready(n) and not kube.is_cordoned(n))
    still = sorted(set(gone) & names)
    return {
        "check": "eks_nodegroup_ready",
        "nodegroup": f"{cluster}/{nodegroup}",
        "passed": len(ready) >= desired and not still,
        "ready": len(ready),
        "desired": desired,
        "old_nodes_registered": still,
    }
