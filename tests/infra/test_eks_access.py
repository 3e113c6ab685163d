"""EKS access for the recovery's roles (infra/eks_access.py): an access entry per declared
cluster and role that calls the Kubernetes API, in the group the documented RBAC binds, and none
for a deployment that declares no EKS workload."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from pydantic import ValidationError

from infra.eks_access import KUBERNETES_GROUP, grant_cluster_access
from infra.workload_config import Workload


def _synth(clusters: list[str]) -> dict:
    stack = Stack(App(), "Test")
    functions = {
        name: lambda_.Function(
            stack, name, runtime=lambda_.Runtime.PYTHON_3_12, handler="h.h", code=lambda_.Code.from_inline("x")
        )
        for name in ("ReplaceEksNodeApply", "Verify", "ReplaceInstanceApply")
    }
    grant_cluster_access(stack, clusters, functions)
    return Template.from_stack(stack).find_resources("AWS::EKS::AccessEntry")


def test_each_cluster_gets_an_entry_per_kubernetes_calling_role_in_the_rbac_group():
    entries = _synth(["prod", "prod", "batch"])
    assert len(entries) == 4  # two clusters x the two roles that call Kubernetes (not replace_instance's)
    for entry in entries.values():
        properties = entry["Properties"]
        assert properties["KubernetesGroups"] == [KUBERNETES_GROUP]
        assert properties["Type"] == "STANDARD"
        # no access policy: the cluster admin one is the only one that patches nodes
        assert "AccessPolicies" not in properties
    principals = sorted(str(e["Properties"]["PrincipalArn"]) for e in entries.values())
    assert not any("ReplaceInstance" in p for p in principals)
    assert sorted({e["Properties"]["ClusterName"] for e in entries.values()}) == ["batch", "prod"]


def test_no_eks_workload_no_access_entry():
    assert _synth([]) == {}


def test_a_workload_may_be_only_an_eks_node_group_and_its_names_are_checked():
    workload = Workload(name="shop", eks={"cluster": "prod", "nodegroup": "workers"})
    assert workload.eks.cluster == "prod"
    with pytest.raises(ValidationError):
        Workload(name="shop", eks={"cluster": "prod"})
    with pytest.raises(ValidationError):
        Workload(name="shop", eks={"cluster": "bad name!", "nodegroup": "workers"})
