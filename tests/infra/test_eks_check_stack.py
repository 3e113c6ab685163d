"""The EKS signals of a workload that declares a node group: the scheduled EKS check (built from
its declaration, with the node groups in its environment, EKS reads and an access entry for its
role) and the Container Insights failed-node alarm tagged with the EKS scope."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import cdk_context
from tests.infra import cfn

SHOP = {"name": "shop", "eks": {"cluster": "prod", "nodegroup": "workers"}}


def _synth(tmp_path_factory, workloads_extra: list[dict[str, Any]]) -> dict[str, Any]:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import validate
    from infra.stack import RecoveryStack

    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["workloads"] += workloads_extra
    config = validate(raw)
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.eks")), context=cdk_context())
    stack = RecoveryStack(app, config.stack_name, config=config)
    return Template.from_stack(stack).to_json()["Resources"]


@pytest.fixture(scope="module")
def resources(tmp_path_factory) -> dict[str, Any]:
    return _synth(tmp_path_factory, [SHOP])


def test_the_eks_check_reads_the_declared_node_groups_on_a_schedule(resources):
    function_id = cfn.functions_by_handler(resources)["detectors.eks.handler"]
    environment = resources[function_id]["Properties"]["Environment"]["Variables"]
    assert json.loads(environment["EKS_NODEGROUPS"]) == [
        {"workload": "shop", "cluster": "prod", "nodegroup": "workers"}
    ]
    role_id = cfn.get_att(resources[function_id]["Properties"]["Role"])
    granted = {a for s in cfn.role_statements(resources, role_id) for a in cfn.as_list(s["Action"])}
    assert {"eks:DescribeNodegroup", "eks:DescribeCluster"} <= granted
    assert not any(a.startswith("autoscaling:Terminate") for a in granted)  # it only reads
    (rule,) = [
        r
        for r in cfn.of_type(resources, "AWS::Events::Rule").values()
        if cfn.get_att(r["Properties"]["Targets"][0]["Arn"]) == function_id
    ]
    assert rule["Properties"]["ScheduleExpression"].startswith("rate(")
    entries = cfn.of_type(resources, "AWS::EKS::AccessEntry").values()
    assert role_id in {cfn.get_att(e["Properties"]["PrincipalArn"]) for e in entries}


def test_the_failed_node_alarm_carries_the_eks_scope(resources):
    (alarm,) = [
        a
        for a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("AlarmName") == "shop-eks-failed-nodes"
    ]
    properties = alarm["Properties"]
    assert (properties["Namespace"], properties["MetricName"]) == ("ContainerInsights", "cluster_failed_node_count")
    assert properties["Dimensions"] == [{"Name": "ClusterName", "Value": "prod"}]
    tags = {t["Key"]: t["Value"] for t in properties["Tags"]}
    assert tags["recovery:eks-cluster"] == "prod" and tags["recovery:eks-nodegroup"] == "workers"
    assert tags["recovery:impairment-type"] == "instance_failure"


def test_no_eks_workload_no_eks_check(synthesized):
    assert "detectors.eks.handler" not in cfn.functions_by_handler(synthesized.resources)
