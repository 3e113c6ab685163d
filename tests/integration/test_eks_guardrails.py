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


def _scoped(group, instance: str, auto_scaling_group: str | None):
    """A node's impairment as the EKS check raises it: with its node group's only Auto Scaling
    group in the scope (or none: a node group of several groups, an alarm about the instance)."""
    scope = {"eks_cluster": CLUSTER, "eks_nodegroup": NODEGROUP, "eks_node": group.node_of(instance)}
    return impairment(
        instances=[instance], scope=scope | ({"auto_scaling_group": auto_scaling_group} if auto_scaling_group else {})
    )


def _check_counting(store, model, context, aws_calls):
    """CheckGuardrails' own calls (the impairment's record is put first, not counted)."""
    store.put_impairment(model.model_dump(mode="json"), status="admitted")
    state = {
        "impairment": model.model_dump(mode="json"),
        "plan": PLAN,
        "admission": {"lock_keys": [r.key for r in model.affected_resources]},
    }
    aws_calls.clear()
    return check_guardrails.handler(state, context, store=store), list(aws_calls)


def test_a_node_scoped_to_its_group_is_decided_in_five_calls_with_no_look_up(store, server, lambda_context, aws_calls):
    # Given a node whose impairment names the node group's one Auto Scaling group
    group = build_nodegroup(server, desired=4)
    node = group.instances()[0]

    out, calls = _check_counting(store, _scoped(group, node, group.group_name), lambda_context, aws_calls)

    # Then the group's listing is its membership (no DescribeAutoScalingInstances), the blocking
    # check reads that group's refreshes, and the blast radius shards are in the first read
    assert out["guardrails"]["groups"] == [group.group_name] and out["guardrails"]["tripped"] == []
    assert sorted(calls) == [
        "auto-scaling:DescribeAutoScalingGroups",
        "auto-scaling:DescribeInstanceRefreshes",
        "dynamodb:BatchGetItem",
        "dynamodb:TransactWriteItems",
        "ec2:DescribeInstanceStatus",
    ]


def test_a_node_with_no_group_in_its_scope_is_looked_up_once(store, server, lambda_context, aws_calls):
    # Given a node group of several Auto Scaling groups, say: the check names none
    group = build_nodegroup(server, desired=4)
    node = group.instances()[1]

    out, calls = _check_counting(store, _scoped(group, node, None), lambda_context, aws_calls)

    # Then the instance is looked up once, for the blocking check and the fleet both, and its
    # group is the one decided on
    assert out["guardrails"]["groups"] == [group.group_name]
    assert calls.count("auto-scaling:DescribeAutoScalingInstances") == 1
    assert calls.count("auto-scaling:DescribeInstanceRefreshes") == 1


def test_a_scope_whose_group_no_longer_holds_the_node_is_not_taken_at_its_word(
    store, server, lambda_context, aws_calls, instance_refreshes
):
    # Given a node whose impairment names a group that no longer holds it (replaced between the
    # detection and the check), and an instance refresh under way in the group that does
    import boto3

    group = build_nodegroup(server, desired=3)
    node = group.instances()[0]
    boto3.client("autoscaling", region_name="us-east-1").create_auto_scaling_group(
        AutoScalingGroupName="eks-workers-old",
        LaunchTemplate={"LaunchTemplateName": group.group_name, "Version": "$Latest"},
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=0,
        VPCZoneIdentifier=group.group()["VPCZoneIdentifier"],
    )
    model = _scoped(group, node, "eks-workers-old")

    # When the guardrails are checked, with no refresh, then with one in the node's own group
    out, calls = _check_counting(store, model, lambda_context, aws_calls)
    instance_refreshes[group.group_name] = [
        {"InstanceRefreshId": "r-1", "AutoScalingGroupName": group.group_name, "Status": "InProgress"}
    ]
    waited = check_guardrails.handler(
        {"impairment": model.model_dump(mode="json"), "plan": PLAN, "admission": {"lock_keys": []}},
        lambda_context,
        store=store,
    )

    # Then the node's own group is found (looked up) and decided on, and its refresh blocks
    assert out["guardrails"]["groups"] == [group.group_name]
    assert calls.count("auto-scaling:DescribeAutoScalingInstances") == 1
    assert waited["guardrails"]["blocked"]["wait_seconds"] > 0
    assert waited["guardrails"]["blocking"]["blocked_by"][0]["resource"] == f"autoscaling:group/{group.group_name}"
