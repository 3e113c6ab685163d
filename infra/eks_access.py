"""EKS access for the recovery's roles: one access entry per declared cluster and role that
calls the Kubernetes API (the EKS actions' functions, Verify, ReturnCapacity, the EKS check), generated only for
workloads that declare `eks`. No EKS access policy is narrow enough (cordoning patches nodes,
cluster-scoped; only the cluster admin policy allows it), so the entries put the roles in a
Kubernetes group, KUBERNETES_GROUP, which the user binds with the RBAC in docs/eks.md."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_eks as eks
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

KUBERNETES_GROUP = "impairment-recovery"
# The functions that reach a cluster's Kubernetes API (construct ids in the workflow).
KUBE_FUNCTIONS = (
    "ReplaceEksNodeApply",
    "ReplaceEksNodeRollback",
    "ScaleEksNodegroupApply",
    "ScaleEksNodegroupRollback",
    "Verify",
    "ReturnCapacity",
    "EksCheck",  # the scheduled EKS check (detectors/eks.py): lists nodes
)


def grant_cluster_access(scope: Construct, clusters: Sequence[str], functions: dict[str, lambda_.Function]) -> None:
    """An access entry (STANDARD, in KUBERNETES_GROUP) for each cluster and each function's role."""
    for cluster in sorted(set(clusters)):
        for name in KUBE_FUNCTIONS:
            role = functions[name].role if name in functions else None
            if role is None:
                continue
            eks.CfnAccessEntry(
                scope,
                f"EksAccess-{cluster}-{name}",
                cluster_name=cluster,
                principal_arn=role.role_arn,
                type="STANDARD",
                kubernetes_groups=[KUBERNETES_GROUP],
            )
