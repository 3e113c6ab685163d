"""The EKS node failure drill through the emulator: the node group's Auto Scaling group and nodes
backed on the local Kubernetes API server, a node NotReady detected by the scheduled EKS check,
cordoned, drained through evictions a disruption budget refuses once, its instance replaced
through the group; and, when the budget never allows, the drain times out, the node is
uncordoned and nothing is terminated."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoveryctl import drill, scenario
from recoveryctl.emulator import eks

pytestmark = pytest.mark.e2e


def _eviction_posts(backed: eks.NodeGroup) -> list[str]:
    return [path for method, path, _ in backed.server.state.requests if method == "POST" and path.endswith("/eviction")]


def test_a_not_ready_node_is_cordoned_drained_and_replaced_by_a_ready_one(drill_synth_cache: Path):
    with drill.Drill(scenario.load("eks-node-failure"), None, drill_synth_cache) as run:
        report = run.run()
        backed = eks.of(run.home, run.workload)
        assert backed is not None and run.home is not None
        ec2 = run.home.client("ec2")
        impaired = report["workload"]["impaired_instances"]
        gone = ec2.describe_instances(InstanceIds=impaired)["Reservations"][0]["Instances"][0]["State"]["Name"]
        described = run.home.client("eks").describe_cluster(name="shop")["cluster"]
        nodes = dict(backed.server.state.nodes)
        evicted = list(backed.server.state.evicted)
        posts = _eviction_posts(backed)

    # Then the recovery recovered, as the scenario expects (its expectations judge the state left)
    assert report["expectation_met"], report["expectations"]
    assert report["outcome"] == "recovered"
    assert [(a["type"], a["phase"], a["result"]) for a in report["actions"]] == [
        ("replace_eks_node", "apply", "changed")
    ]
    # And the old node is gone from the API, its instance terminated; three Ready nodes, one of them new
    before, after = report["workload"]["before"]["eks"], report["workload"]["after"]["eks"]
    assert len(impaired) == 1 and gone in ("shutting-down", "terminated")
    assert impaired[0] not in {kube_node["instance"] for kube_node in after["nodes"].values()}
    assert len(nodes) == 3 and all(n["status"]["conditions"][0]["status"] == "True" for n in nodes.values())
    assert len(set(after["in_service"]) - set(before["in_service"])) == 1
    # And the guarded pod's eviction was refused once, asked again, then allowed; the DaemonSet's stayed
    guarded = [pod for pod in evicted if pod[0] == "checkout"]
    assert len(guarded) == 2 and not [pod for pod in evicted if pod[0] == "kube-system"]
    assert len(posts) == 3  # the guarded pod twice (429, then 201), the other workload pod once
    # And DescribeCluster answered the local server (plain http on 127.0.0.1)
    assert described["endpoint"] == backed.server.url.rstrip("/")
    assert described["endpoint"].startswith("http://127.0.0.1:")


def test_a_budget_that_never_allows_times_out_uncordons_terminates_nothing_and_escalates(drill_synth_cache: Path):
    base = scenario.load("eks-node-failure")
    fault = base.instance_faults[0].model_copy(update={"pdb_refusals": -1})
    blocked = base.model_copy(update={"instance_faults": [fault], "expect": scenario.Expectation()})
    with drill.Drill(blocked, None, drill_synth_cache) as run:
        report = run.run()
        backed = eks.of(run.home, run.workload)
        assert backed is not None
        impaired = report["workload"]["impaired_instances"]
        node = backed.nodes_of[impaired[0]]
        spec = dict(backed.server.state.nodes[node]["spec"])

    # Then the drain timed out and the recovery escalated after rolling the step back
    assert report["outcome"] == "escalated"
    assert "drain timed out" in (report["reason"] or "")
    steps = [(a["type"], a["phase"], a["result"]) for a in report["actions"]]
    assert ("replace_eks_node", "rollback", "changed") in steps
    assert report["escalations"]
    # And the node is uncordoned, still registered, its instance still in the group: nothing terminated
    assert spec.get("unschedulable") is False
    after = report["workload"]["after"]["eks"]
    assert impaired[0] in after["in_service"]
    assert after["in_service"] == report["workload"]["before"]["eks"]["in_service"]
    # And the pod its budget guards is still on the node
    assert any(key[0] == "checkout" for key, pod in backed.server.state.pods.items() if pod["spec"]["nodeName"] == node)


def test_the_nodes_follow_the_node_group_and_its_instances(drill_synth_cache: Path):
    # Not the drill's path: scale_eks_nodegroup's UpdateNodegroupConfig, which EKS carries to its group
    with drill.Drill(scenario.load("eks-node-failure"), None, drill_synth_cache) as run:
        backed = eks.of(run.home, run.workload)
        assert backed is not None and run.home is not None
        run.home.client("eks").update_nodegroup_config(
            clusterName="shop", nodegroupName="workers", scalingConfig={"desiredSize": 4}
        )
        run.home.advance(60)
        grown = backed.state()
        run.home.client("eks").update_nodegroup_config(
            clusterName="shop", nodegroupName="workers", scalingConfig={"desiredSize": 2}
        )
        run.home.advance(60)
        shrunk = backed.state()
        stopped = shrunk["in_service"][0]
        run.home.client("ec2").stop_instances(InstanceIds=[stopped])
        run.home.advance(1)
        after_stop = backed.state()

    assert len(grown["in_service"]) == 4 and len(grown["nodes"]) == 4
    assert all(n["ready"] for n in grown["nodes"].values())
    assert len(shrunk["in_service"]) == 2
    assert sorted(n["instance"] for n in shrunk["nodes"].values()) == shrunk["in_service"]
    # And a stopped instance's node stays registered, NotReady (its kubelet is silent), not deleted
    by_instance = {n["instance"]: n for n in after_stop["nodes"].values()}
    assert stopped in by_instance and by_instance[stopped]["ready"] is False
