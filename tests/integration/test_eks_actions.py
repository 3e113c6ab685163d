"""replace_eks_node and scale_eks_nodegroup under moto, the Kubernetes calls answered by the
local API server: cordon, drain through evictions a disruption budget may refuse, termination
through the node group's Auto Scaling group, rollback, verification."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from actions import registry, replace_eks_node, scale_eks_nodegroup
from core import kube
from core.errors import ActionRefused, CapacityNotReady, PermanentError
from recoveryctl.emulator.kube_server import KubeServer
from tests.builders import REGION, action_event, impairment
from tests.eks import CLUSTER, NODEGROUP, build_nodegroup

SCOPE = {"eks_cluster": CLUSTER, "eks_nodegroup": NODEGROUP}


@pytest.fixture
def server() -> Iterator[KubeServer]:
    running = KubeServer().start()
    yield running
    running.stop()
    kube.use_endpoint(CLUSTER, None)


def replace(model, context, **params) -> dict[str, Any]:
    return replace_eks_node.apply_handler(action_event(model, "replace_eks_node", params=params), context)


def undo_replace(model, context, applied, **params) -> dict[str, Any]:
    event = action_event(model, "replace_eks_node", params=params, applied=applied)
    return replace_eks_node.rollback_handler(event, context)


def node_impairment(instance: str):
    return impairment(instances=[instance], scope=SCOPE)


def test_the_node_is_cordoned_drained_and_its_instance_terminated_without_decrementing(store, lambda_context, server):
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    node = group.node_of(impaired)
    server.state.add_pod("shop", "web-1", node)
    server.state.add_pod("kube-system", "aws-node-1", node, owner_kind="DaemonSet")
    server.state.add_pod("kube-system", "kube-proxy", node, owner_kind="", mirror=True)

    result = replace(node_impairment(impaired), lambda_context)

    assert result["result"] == "changed"
    assert server.state.nodes[node]["spec"]["unschedulable"] is True
    assert server.state.evicted == [("shop", "web-1")]  # not the DaemonSet's pod, not the mirror pod
    assert impaired not in group.instances()
    assert group.group()["DesiredCapacity"] == 3  # the node group launches the replacement
    assert result["after"]["nodes"][node]["evicted"] == ["shop/web-1"]


def test_a_connection_serves_the_plan_the_drain_and_a_retry_then_is_made_again(
    store, lambda_context, server, frozen_clock, monkeypatch
):
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    server.state.add_pod("shop", "web-1", group.node_of(impaired), refusals=1)
    described: list[str] = []
    real = kube.aws.call

    def counting(client: Any, operation: str, **kwargs: Any) -> Any:
        if operation == "describe_cluster":
            described.append(kwargs["name"])
        return real(client, operation, **kwargs)

    monkeypatch.setattr(kube.aws, "call", counting)
    model = node_impairment(impaired)

    with pytest.raises(CapacityNotReady):
        replace(model, lambda_context)  # planned, cordoned, one eviction refused
    frozen_clock.now += timedelta(seconds=30)
    assert replace(model, lambda_context)["result"] == "changed"  # plans again, replays the record, drains
    assert described == [CLUSTER], "one DescribeCluster for the plan, the drain and the retry"

    monkeypatch.setattr(kube, "REUSE_SECONDS", 0)  # past it, the token could have expired
    undo_replace(model, lambda_context, replace(model, lambda_context))
    assert len(described) > 1 and set(described) == {CLUSTER}


def test_a_budget_that_refuses_makes_the_step_wait_then_it_goes_on(store, lambda_context, server, frozen_clock):
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    node = group.node_of(impaired)
    server.state.add_pod("shop", "web-1", node, refusals=1)
    model = node_impairment(impaired)

    with pytest.raises(CapacityNotReady, match="shop/web-1"):
        replace(model, lambda_context)
    assert server.state.nodes[node]["spec"]["unschedulable"] is True
    assert impaired in group.instances()  # nothing terminated while a pod is still there

    frozen_clock.now += timedelta(seconds=30)
    result = replace(model, lambda_context)
    assert result["result"] == "changed"
    assert server.state.evicted == [("shop", "web-1")]
    assert impaired not in group.instances()


def test_a_step_that_waits_for_a_budget_asks_the_group_once_per_attempt_and_only_to_terminate(
    store, lambda_context, server, frozen_clock, aws_calls
):
    # Given a node one of whose pods' budget refuses the first eviction
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    server.state.add_pod("shop", "web-1", group.node_of(impaired), refusals=1)
    model = node_impairment(impaired)
    aws_calls.clear()

    # When the step runs, waits (the budget refuses), and is asked again 30 s later
    with pytest.raises(CapacityNotReady):
        replace(model, lambda_context)
    first = list(aws_calls)
    recorded = store.get_action(model.impairment_id, 0, "apply")["before"]
    aws_calls.clear()
    frozen_clock.now += timedelta(seconds=30)
    result = replace(model, lambda_context)

    # Then the first attempt records its plan and asks nothing of the group (nothing is
    # terminated while a pod is there), and the retry, in the same warm environment, goes on from
    # the record it remembers (no plan, no read) and asks the group's membership once, right
    # before it terminates; its record's final write is conditional on it being as it left it
    assert sorted(first) == ["dynamodb:PutItem", "eks:DescribeCluster", "eks:DescribeNodegroup"]
    assert aws_calls == [
        "auto-scaling:DescribeAutoScalingInstances",
        "auto-scaling:TerminateInstanceInAutoScalingGroup",
        "dynamodb:PutItem",
    ]
    assert result["result"] == "changed" and server.state.evicted == [("shop", "web-1")]
    assert impaired not in group.instances()
    assert result["before"] == recorded  # the drain's time-out counts from the first attempt


def test_a_retry_in_a_cold_container_plans_again_finds_its_record_and_goes_on(
    store, lambda_context, server, frozen_clock, aws_calls
):
    # Given a step that waited for a budget, asked again in another container (nothing kept)
    from core import aws

    group = build_nodegroup(server)
    impaired = group.instances()[0]
    server.state.add_pod("shop", "web-1", group.node_of(impaired), refusals=1)
    model = node_impairment(impaired)
    with pytest.raises(CapacityNotReady):
        replace(model, lambda_context)
    recorded = store.get_action(model.impairment_id, 0, "apply")["before"]
    aws.reset()
    kube.use_endpoint(CLUSTER, server.url)
    frozen_clock.now += timedelta(seconds=30)
    aws_calls.clear()

    result = replace(model, lambda_context)

    # Then it learns of the record at its first write, and goes on from the state it holds
    assert "dynamodb:GetItem" not in aws_calls and aws_calls.count("dynamodb:PutItem") == 2
    assert result["result"] == "changed" and result["before"] == recorded
    assert impaired not in group.instances()


def test_an_instance_gone_from_its_group_before_the_termination_is_not_terminated_again(
    store, lambda_context, server, aws_calls
):
    # Given a node whose instance leaves its group (the node group replaced it itself, say)
    # between CheckGuardrails' read and the step
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    boto3.client("autoscaling", region_name=REGION).detach_instances(
        InstanceIds=[impaired], AutoScalingGroupName=group.group_name, ShouldDecrementDesiredCapacity=False
    )
    aws_calls.clear()

    result = replace(node_impairment(impaired), lambda_context)

    # Then its node is drained, the look-up right before the termination finds it gone, and
    # nothing is terminated
    assert "auto-scaling:TerminateInstanceInAutoScalingGroup" not in aws_calls
    assert aws_calls.count("auto-scaling:DescribeAutoScalingInstances") == 1
    assert result["after"]["nodes"][group.node_of(impaired)]["terminated"] is True
    assert server.state.nodes[group.node_of(impaired)]["spec"]["unschedulable"] is True


def test_a_budget_that_never_allows_times_out_and_the_rollback_uncordons(store, lambda_context, server, frozen_clock):
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    node = group.node_of(impaired)
    server.state.add_pod("shop", "web-1", node, refusals=-1)
    model = node_impairment(impaired)

    with pytest.raises(CapacityNotReady):
        replace(model, lambda_context, drain_timeout_seconds=120)
    frozen_clock.now += timedelta(seconds=121)
    with pytest.raises(PermanentError, match="drain timed out"):
        replace(model, lambda_context, drain_timeout_seconds=120)
    assert impaired in group.instances()

    record = store.get_action(model.impairment_id, 0, "apply")
    undone = undo_replace(model, lambda_context, {"before": record["before"]}, drain_timeout_seconds=120)
    assert undone["result"] == "changed"
    assert (
        "unschedulable" not in server.state.nodes[node]["spec"] or not server.state.nodes[node]["spec"]["unschedulable"]
    )
    assert impaired in group.instances()


def test_a_node_cordoned_before_the_recovery_stays_cordoned_on_rollback(store, lambda_context, server):
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    node = group.node_of(impaired)
    server.state.nodes[node]["spec"]["unschedulable"] = True
    server.state.add_pod("shop", "web-1", node, refusals=-1)
    model = node_impairment(impaired)
    with pytest.raises(CapacityNotReady):
        replace(model, lambda_context)

    record = store.get_action(model.impairment_id, 0, "apply")
    undone = undo_replace(model, lambda_context, {"before": record["before"]})
    assert undone["result"] == "unchanged"
    assert server.state.nodes[node]["spec"]["unschedulable"] is True


def test_replacing_a_ready_node_below_the_minimum_is_refused_and_nothing_is_touched(store, lambda_context, server):
    group = build_nodegroup(server, desired=2, min_size=2)
    impaired = group.instances()[0]

    with pytest.raises(ActionRefused, match="below its minimum of 2"):
        replace(node_impairment(impaired), lambda_context)
    assert not server.state.nodes[group.node_of(impaired)]["spec"].get("unschedulable")
    assert not [r for r in server.state.requests if r[0] != "GET"]


def test_a_not_ready_node_is_replaced_even_at_the_minimum(store, lambda_context, server):
    # a NotReady node serves nothing: replacing it loses no healthy capacity
    group = build_nodegroup(server, desired=2, min_size=2)
    impaired = group.instances()[0]
    server.state.set_condition(group.node_of(impaired), "Ready", "Unknown")

    assert replace(node_impairment(impaired), lambda_context)["result"] == "changed"
    assert impaired not in group.instances()


def test_an_unmanaged_nodegroup_is_refused(store, lambda_context, server):
    group = build_nodegroup(server, managed=False)
    with pytest.raises(ActionRefused, match="not managed"):
        replace(node_impairment(group.instances()[0]), lambda_context)


def test_a_retry_after_the_termination_changes_nothing_more_and_the_rollback_says_irreversible(
    store, lambda_context, server
):
    group = build_nodegroup(server)
    impaired, *others = group.instances()
    model = node_impairment(impaired)
    first = replace(model, lambda_context)
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})
    # the node is gone too by now: the retry still ends, with nothing to change
    del server.state.nodes[group.node_of(impaired)]

    again = replace(model, lambda_context)
    assert again["after"]["nodes"][group.node_of(impaired)]["terminated"] is True
    assert impaired not in group.instances() and set(others) <= set(group.instances())  # no other terminated
    assert undo_replace(model, lambda_context, first)["result"] == "irreversible"


def test_verify_wants_the_desired_ready_nodes_and_the_old_node_gone(store, lambda_context, server):
    group = build_nodegroup(server)
    impaired = group.instances()[0]
    model = node_impairment(impaired)
    applied = replace(model, lambda_context)

    [check] = replace_eks_node.verify_step(model, {}, applied)
    assert (check["passed"], check["ready"], check["old_nodes_registered"]) == (False, 2, [group.node_of(impaired)])

    del server.state.nodes[group.node_of(impaired)]
    server.state.add_node("ip-replacement", "i-0replacement", nodegroup=NODEGROUP)
    [check] = replace_eks_node.verify_step(model, {}, applied)
    assert check["passed"] and check["ready"] == 3


def test_verify_of_a_node_replacement_asks_nothing_of_auto_scaling(store, lambda_context, server, aws_calls):
    # Given a node replaced by its step (no group capacity check declared: the node group's is)
    from orchestration import verify

    group = build_nodegroup(server)
    impaired = group.instances()[0]
    model = node_impairment(impaired)
    applied = replace(model, lambda_context)
    aws_calls.clear()

    # When Verify checks it
    checks = verify.check(model, [{"index": 0, "action": "replace_eks_node", "params": {}}], results=[applied])

    # Then only the node group's own check runs: its group is not looked up for nothing
    assert [c["check"] for c in checks] == ["eks_nodegroup_ready"]
    assert not [c for c in aws_calls if c.startswith("auto-scaling")]


def test_the_drain_of_a_node_with_no_pods_for_an_instance_found_by_node_name(store, lambda_context, server):
    group = build_nodegroup(server)
    target = group.instances()[1]
    model = impairment(resources=[("eks:nodegroup", f"{CLUSTER}/{NODEGROUP}")], scope=SCOPE)

    result = replace(model, lambda_context, nodes=[group.node_of(target)])
    assert result["targets"] == [target]
    assert target not in group.instances()


# --- scale_eks_nodegroup ----------------------------------------------------------------------


def scale(model, context, **params) -> dict[str, Any]:
    return scale_eks_nodegroup.apply_handler(action_event(model, "scale_eks_nodegroup", params=params), context)


def undo_scale(model, context, applied) -> dict[str, Any]:
    event = action_event(model, "scale_eks_nodegroup", applied=applied)
    return scale_eks_nodegroup.rollback_handler(event, context)


def test_scaling_raises_the_desired_size_within_the_cap_and_rolls_back(store, lambda_context, server):
    group = build_nodegroup(server, desired=3, max_size=5)
    model = impairment(resources=[("eks:nodegroup", f"{CLUSTER}/{NODEGROUP}")], scope=SCOPE)

    applied = scale(model, lambda_context, increment=4, max_desired_size=4)
    assert applied["result"] == "changed"
    assert group.desired_size() == 4
    assert "capped at 4" in applied["message"]
    assert registry.get("scale_eks_nodegroup").hand_back_after({}) == 3600

    undone = undo_scale(model, lambda_context, applied)
    assert undone["result"] == "changed"
    assert group.desired_size() == 3


def test_a_size_changed_by_someone_else_since_is_left_on_rollback(store, lambda_context, server):
    group = build_nodegroup(server, desired=3, max_size=5)
    model = impairment(resources=[("eks:nodegroup", f"{CLUSTER}/{NODEGROUP}")], scope=SCOPE)
    applied = scale(model, lambda_context, increment=1)
    boto3.client("eks", region_name=REGION).update_nodegroup_config(
        clusterName=CLUSTER, nodegroupName=NODEGROUP, scalingConfig={"desiredSize": 5}
    )

    assert undo_scale(model, lambda_context, applied)["result"] == "unchanged"
    assert group.desired_size() == 5


def test_scaling_a_nodegroup_at_its_maximum_changes_nothing(store, lambda_context, server):
    group = build_nodegroup(server, desired=5, max_size=5)
    model = impairment(resources=[("eks:nodegroup", f"{CLUSTER}/{NODEGROUP}")], scope=SCOPE)
    assert scale(model, lambda_context)["result"] == "unchanged"
    assert group.desired_size() == 5


def test_scaling_verify_reads_ready_nodes(store, lambda_context, server):
    build_nodegroup(server, desired=2, max_size=5)
    model = impairment(resources=[("eks:nodegroup", f"{CLUSTER}/{NODEGROUP}")], scope=SCOPE)
    applied = scale(model, lambda_context, increment=1)
    [check] = scale_eks_nodegroup.verify_step(model, {}, applied)
    assert (check["passed"], check["ready"], check["desired"]) == (False, 2, 3)
    server.state.add_node("ip-new", "i-0new", nodegroup=NODEGROUP)
    assert scale_eks_nodegroup.verify_step(model, {}, applied)[0]["passed"]


def test_a_node_group_signal_replaces_its_not_ready_nodes_only(store, lambda_context, server):
    # Container Insights' failed node count names no node: the step finds the NotReady ones.
    group = build_nodegroup(server)
    failed = group.instances()[2]
    server.state.set_condition(group.node_of(failed), "Ready", "Unknown")
    model = impairment(resources=[("eks:nodegroup", f"{CLUSTER}/{NODEGROUP}")], scope=SCOPE)

    result = replace(model, lambda_context)

    assert result["result"] == "changed"
    assert list(result["before"]["nodes"]) == [group.node_of(failed)]
    assert failed not in group.instances()  # the group launched its replacement


def test_a_node_group_signal_with_every_node_ready_replaces_nothing(store, lambda_context, server):
    group = build_nodegroup(server)

    with pytest.raises(PermanentError, match="none of the impaired instances"):
        replace(impairment(resources=[("eks:nodegroup", f"{CLUSTER}/{NODEGROUP}")], scope=SCOPE), lambda_context)
    assert len(group.instances()) == 3
