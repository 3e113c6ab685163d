"""The scheduled EKS check: node group health issues and failing nodes -> impairments, with ids
stable over a series of checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.contract import ImpairmentType, Severity
from core.errors import TransientError
from detectors import eks
from detectors.eks import CheckFailed, NodeGroupRef, check, failing_condition, handler
from tests.builders import RecordingPublisher, scheduled_event

REF = NodeGroupRef(workload="shop", cluster="prod", nodegroup="workers")
SINCE = "2026-11-22T20:01:00Z"
AT = datetime(2026, 11, 22, 20, 7, tzinfo=UTC)
ARN = "arn:aws:eks:us-east-1:123456789012:nodegroup/prod/workers/abc"


def node(name: str, instance: str, **conditions: str) -> dict[str, Any]:
    all_conditions = {"Ready": "True", **conditions}
    return {
        "metadata": {"name": name},
        "spec": {"providerID": f"aws:///us-east-1a/{instance}"},
        "status": {
            "conditions": [
                {
                    "type": k,
                    "status": v,
                    "reason": f"{k}x",
                    "message": "m",
                    "lastTransitionTime": "2026-11-22T20:01:00Z",
                }
                for k, v in all_conditions.items()
            ]
        },
    }


class Fake:
    def __init__(self, nodes=None, issues=None, fail: Exception | None = None, groups=()) -> None:
        self._nodes, self._issues, self.fail, self.groups = nodes or [], issues or [], fail, list(groups)

    def nodegroup(self, ref: NodeGroupRef) -> dict[str, Any]:
        if self.fail:
            raise self.fail
        resources = {"autoScalingGroups": [{"name": g} for g in self.groups]}
        return {"nodegroupArn": ARN, "health": {"issues": self._issues}, "resources": resources}

    def nodes(self, ref: NodeGroupRef) -> list[dict[str, Any]]:
        return self._nodes


def run(inventory, at: datetime = AT, refs=(REF,)):
    findings, failed = check(inventory, list(refs), at, 300, at + timedelta(seconds=1))
    return findings.detected, failed


def healthy(n: int = 3) -> list[dict[str, Any]]:
    return [node(f"n{k}", f"i-{k:017x}") for k in range(n)]


def test_healthy_node_groups_raise_nothing():
    assert run(Fake(healthy())) == ([], [])


def test_a_not_ready_node_is_an_instance_failure_naming_node_instance_and_condition():
    nodes = [*healthy(3), node("bad", "i-0bad", Ready="Unknown")]

    (found,), _ = run(Fake(nodes))

    assert found.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert found.severity is Severity.HIGH
    assert [(r.resource_type, r.resource_id) for r in found.affected_resources] == [("ec2:instance", "i-0bad")]
    assert found.scope == {
        "eks_cluster": "prod",
        "eks_nodegroup": "workers",
        "eks_node": "bad",
        "eks_condition": "Ready",
    }
    assert "bad" in found.description and "i-0bad" in found.description and "Ready is Unknown" in found.description
    assert found.signal.signal_time == datetime(2026, 11, 22, 20, 1, tzinfo=UTC)


def test_an_agent_condition_false_on_a_ready_node_is_raised_at_medium():
    nodes = [*healthy(3), node("disk", "i-0d", StorageReady="False", KernelReady="True")]

    (found,), _ = run(Fake(nodes))

    assert found.scope["eks_condition"] == "StorageReady"
    assert found.severity is Severity.MEDIUM


def test_ready_false_wins_over_an_agent_condition():
    assert failing_condition(node("x", "i-1", Ready="False", KernelReady="False"))["type"] == "Ready"
    assert failing_condition(node("x", "i-1", SomethingElse="False")) is None  # not an agent condition


def test_a_node_that_stays_not_ready_keeps_its_id_over_windows():
    # A node already being replaced is seen again by the next checks: the same id (admission
    # dedupes it) rather than a new recovery every window.
    nodes = [*healthy(3), node("bad", "i-0bad", Ready="False")]

    (first,), _ = run(Fake(nodes))
    (later,), _ = run(Fake(nodes), AT + timedelta(minutes=20))

    assert first.impairment_id == later.impairment_id


def test_a_node_being_deleted_is_left_alone():
    going = node("bad", "i-0bad", Ready="Unknown")
    going["metadata"]["deletionTimestamp"] = "2026-11-22T20:05:00Z"
    assert run(Fake([*healthy(2), going])) == ([], [])


def test_most_of_the_node_group_failing_at_once_is_critical():
    nodes = [node(f"n{k}", f"i-{k}", Ready="Unknown") for k in range(2)] + healthy(1)

    found, _ = run(Fake(nodes))

    assert [f.severity for f in found] == [Severity.CRITICAL, Severity.CRITICAL]


@pytest.mark.parametrize(
    ("codes", "kind", "severity"),
    [
        (["InstanceLimitExceeded"], ImpairmentType.RESOURCE_EXHAUSTION, Severity.HIGH),
        (["AsgInstanceLaunchFailures"], ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
        (["Ec2InstancesNotFound"], ImpairmentType.INSTANCE_FAILURE, Severity.MEDIUM),
        (["SomeFutureCode"], ImpairmentType.SERVICE_DEGRADATION, Severity.MEDIUM),
        # the gravest code decides
        (["Ec2InstancesNotFound", "NodeCreationFailure"], ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    ],
)
def test_health_issues_are_an_impairment_of_the_node_group(codes, kind, severity):
    issues = [{"code": c, "message": f"{c} happened", "resourceIds": ["i-0abc"]} for c in codes]

    (found,), _ = run(Fake(healthy(), issues))

    assert (found.impairment_type, found.severity) == (kind, severity)
    assert found.affected_resources[0].resource_type == "eks:nodegroup"
    assert found.affected_resources[0].resource_id == ARN
    assert ("ec2:instance", "i-0abc") in [(r.resource_type, r.resource_id) for r in found.affected_resources]
    assert found.scope["eks_health_issues"] == ",".join(sorted(set(codes)))


def test_health_issues_keep_one_id_per_window():
    issues = [{"code": "NodeCreationFailure", "message": "x"}]
    (a,), _ = run(Fake(healthy(), issues))
    (b,), _ = run(Fake(healthy(), issues), AT + timedelta(seconds=100))
    (c,), _ = run(Fake(healthy(), issues), AT + timedelta(seconds=400))
    assert a.impairment_id == b.impairment_id != c.impairment_id


def test_same_named_node_groups_in_two_accounts_never_share_an_id():
    member = NodeGroupRef(workload="shop", cluster="prod", nodegroup="workers", account_id="210987654321")
    nodes = [*healthy(3), node("bad", "i-0bad", Ready="False")]
    (ours, theirs), _ = run(Fake(nodes), refs=(REF, member))
    assert ours.impairment_id != theirs.impairment_id
    assert theirs.account_id == "210987654321"


def test_a_node_group_that_cannot_be_read_does_not_stop_the_others():
    class OneFails(Fake):
        def nodegroup(self, ref):
            if ref.nodegroup == "broken":
                raise TransientError("Kubernetes list nodes failed: no answer")
            return super().nodegroup(ref)

    broken = NodeGroupRef(workload="shop", cluster="prod", nodegroup="broken")
    found, failed = run(OneFails([*healthy(3), node("bad", "i-0bad", Ready="False")]), refs=(broken, REF))

    assert [f.scope["eks_node"] for f in found] == ["bad"]
    assert failed == [{"nodegroup": "prod/broken", "error": "Kubernetes list nodes failed: no answer"}]


def test_the_handler_publishes_and_fails_when_no_node_group_could_be_checked(monkeypatch, lambda_context):
    monkeypatch.setenv("EVENT_BUS_NAME", "recovery-bus")
    monkeypatch.setenv("EKS_NODEGROUPS", json.dumps([REF.model_dump(exclude_none=True)]))
    publisher = RecordingPublisher()
    nodes = [*healthy(3), node("bad", "i-0bad", Ready="False")]

    result = handler(scheduled_event(), lambda_context, inventory=Fake(nodes), publisher=publisher)

    assert result["status"] == "published" and len(result["detected"]) == 1
    with pytest.raises(CheckFailed, match="no EKS node group could be checked"):
        handler(
            scheduled_event(), lambda_context, inventory=Fake(fail=TransientError("throttled")), publisher=publisher
        )


def test_a_bad_node_group_list_is_a_configuration_error(monkeypatch, lambda_context):
    monkeypatch.setenv("EVENT_BUS_NAME", "recovery-bus")
    monkeypatch.setenv("EKS_NODEGROUPS", '{"not": "a list"}')
    with pytest.raises(Exception, match="EKS_NODEGROUPS"):
        handler(scheduled_event(), lambda_context, inventory=Fake(), publisher=RecordingPublisher())


def test_the_check_does_not_import_the_kubernetes_client_for_its_classification():
    # The detector module imports core.kube (its REST calls, urllib3, ssl) only where nodes are listed.
    assert "kube" not in vars(eks)


def test_a_node_of_a_node_group_with_one_auto_scaling_group_is_scoped_to_it():
    # DescribeNodegroup (read anyway) names the group: the recovery need not look the instance up.
    nodes = [*healthy(3), node("bad", "i-0bad", Ready="False")]

    (found,), _ = run(Fake(nodes, groups=["eks-workers-1a2b"]))

    assert found.scope["auto_scaling_group"] == "eks-workers-1a2b"
    assert found.scope["eks_node"] == "bad"


def test_a_node_group_with_several_auto_scaling_groups_names_none_rather_than_guess():
    # One group per zone, say: which holds the node is the recovery's look-up, never a guess.
    nodes = [*healthy(3), node("bad", "i-0bad", Ready="False")]

    (found,), _ = run(Fake(nodes, groups=["eks-workers-a", "eks-workers-b"]))
    (bare,), _ = run(Fake(nodes))

    assert "auto_scaling_group" not in found.scope and "auto_scaling_group" not in bare.scope


def test_a_node_groups_health_issues_are_not_scoped_to_its_group():
    # About the node group as a whole, not a member: naming the group would fold it under (or
    # over) a member's recovery of that group (orchestration/start.py).
    (issue,), _ = run(Fake(healthy(), [{"code": "NodeCreationFailure", "message": "x"}], groups=["eks-workers-1"]))
    assert "auto_scaling_group" not in issue.scope
