"""The EKS check against moto's EKS and the local Kubernetes API server: the real inventory
(DescribeNodegroup, the node list by node group label through core/kube.py), then the shipped
plan that the node impairment selects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from core import kube
from core.plans import parse_plans, select_plan
from detectors.eks import AwsInventory, NodeGroupRef, check
from recoveryctl.emulator.kube_server import KubeServer
from tests.eks import CLUSTER, NODEGROUP, build_nodegroup

REF = NodeGroupRef(workload="shop", cluster=CLUSTER, nodegroup=NODEGROUP)
AT = datetime(2026, 11, 22, 20, 7, tzinfo=UTC)


@pytest.fixture
def server(mocked_aws) -> Iterator[KubeServer]:
    running = KubeServer().start()
    yield running
    running.stop()
    kube.use_endpoint(CLUSTER, None)


def test_a_not_ready_node_of_the_declared_node_group_is_found_through_the_api(server):
    group = build_nodegroup(server)
    bad = group.instances()[1]
    server.state.set_condition(group.node_of(bad), "Ready", "Unknown")
    server.state.add_node("other-node", "i-0other", nodegroup="other", ready=False)  # another node group's

    findings, failed = check(AwsInventory(), [REF], AT, 300, AT)

    assert failed == []
    (found,) = findings.detected
    assert found.scope["eks_node"] == group.node_of(bad)
    assert [r.resource_id for r in found.affected_resources] == [bad]
    # the list was asked by the node group's label, with a bearer token
    assert any("labelSelector=eks.amazonaws.com" in path for _, path, _ in server.state.requests)


def test_the_shipped_plans_replace_the_failing_node_through_its_node_group(server):
    group = build_nodegroup(server)
    server.state.set_condition(group.node_of(group.instances()[0]), "NetworkingReady", "False")
    with open("cdk.json") as file:
        plans = parse_plans(json.load(file)["context"]["recovery"]["plans"])

    (found,), _ = check(AwsInventory(), [REF], AT, 300, AT)[0].detected, None

    plan = select_plan(plans, found)
    assert plan is not None and plan.name == "replace-failed-eks-node"
    assert [s.action for s in plan.steps] == ["replace_eks_node"]
