"""CheckGuardrails for an EKS node's recovery: the node group's Auto Scaling group (EKS's eks-*,
which carries no managed tag) is read as the fleet, its instances the nodes, so the blast radius
and fail open count nodes; the missing tag refuses nothing (replace_eks_node checks the node
group's own tag)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core import kube
from orchestration import check_guardrails
from recoveryctl.emulator.kube_server import KubeServer
from tests.builders import capture_topic, impairment, use_runtime_config
from tests.eks import CLUSTER, NODEGROUP, build_nodegroup

PLAN = {"name": "eks", "steps": [{"index": 0, "action": "replace_eks_node", "params": {}}]}
PLANS = [
    {
        "name": "eks",
        "match": {"impairment_types": ["instance_failure"], "scope_has": "eks_node"},
        "steps": [{"action": "replace_eks_node"}],
    }
]


@pytest.fixture
def server(store, monkeypatch, tmp_path) -> Iterator[KubeServer]:
    topic_arn, _ = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    use_runtime_config(monkeypatch, tmp_path, plans=PLANS, guardrails={}, maintenance={})
    running = KubeServer().start()
    yield running
    running.stop()
    kube.use_endpoint(CLUSTER, None)


def _check(store, model, context):
    store.put_impairment(model.model_dump(mode="json"), status="admitted")
    state = {
        "impairment": model.model_dump(mode="json"),
        "plan": PLAN,
        "admission": {"lock_keys": [r.key for r in model.affected_resources]},
    }
    return check_guardrails.handler(state, context, store=store)


def _node(group, instance: str):
    scope = {"eks_cluster": CLUSTER, "eks_nodegroup": NODEGROUP, "eks_node": group.node_of(instance)}
    return impairment(instances=[instance], scope=scope)


def test_a_node_of_the_untagged_eks_group_passes_and_the_group_is_counted(store, server, lambda_context):
    group = build_nodegroup(server, desired=4)
    assert group.group_name.startswith("eks-") and not group.group().get("Tags")
    node = group.instances()[0]

    out = _check(store, _node(group, node), lambda_context)

    assert out["guardrails"]["tripped"] == [] and out["guardrails"]["deferred"] == []
    assert out["guardrails"]["groups"] == [group.group_name]
    assert [r["resource_id"] for r in out["impairment"]["affected_resources"]] == [node]


def test_the_blast_radius_counts_the_node_groups_nodes(store, server, lambda_context):
    # Two of three nodes at once: the blast radius (of the eks-* group's three instances) lets
    # one be replaced now and defers the other, as for any group.
    group = build_nodegroup(server, desired=3)
    first, second = group.instances()[:2]
    model = impairment(instances=[first, second], scope={"eks_cluster": CLUSTER, "eks_nodegroup": NODEGROUP})

    out = _check(store, model, lambda_context)

    acted = [r["resource_id"] for r in out["impairment"]["affected_resources"]]
    assert len(acted) == 1 and len(out["guardrails"]["deferred"]) == 1
    assert set(acted + out["guardrails"]["deferred"]) == {first, second}
    assert out["guardrails"]["groups"] == [group.group_name]
