"""The EC2 state-change detector's handler under moto: a real protected group, a real bus."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest

from core.contract import DETECTED, EVENT_SOURCE, ImpairmentDetected, ImpairmentType, Severity
from detectors import ec2_state
from tests.builders import BUS_NAME, REGION, WORKLOAD, build_workload, capture_bus, received
from tests.conftest import load_event

STOPPED = "ec2-instance-state-change-stopped.json"
TERMINATED = "ec2-instance-state-change-terminated.json"


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


def about(instance_id: str, name: str = STOPPED, state: str | None = None) -> dict[str, Any]:
    """The sample event, about this instance (and in this state)."""
    event = copy.deepcopy(load_event(name))
    event["detail"]["instance-id"] = instance_id
    event["resources"] = [f"arn:aws:ec2:{REGION}:123456789012:instance/{instance_id}"]
    if state:
        event["detail"]["state"] = state
    return event


def test_a_stopped_instance_of_a_protected_group_puts_one_instance_failure_on_the_bus(bus, lambda_context):
    # Given a protected group of three, one of whose instances stopped on its own
    workload = build_workload()
    stopped = workload.instance_ids()[1]
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[stopped])

    # When its state change reaches the detector
    response = ec2_state.handler(about(stopped), lambda_context)

    # Then the bus carries one instance failure of that instance, scoped to its group and target group
    assert response["status"] == "published"
    (event,) = received(bus)
    assert (event["detail-type"], event["source"]) == (DETECTED, EVENT_SOURCE)
    impairment = ImpairmentDetected.model_validate(event["detail"])
    assert impairment.impairment_id == response["detected"][0]
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.severity is Severity.HIGH
    assert impairment.workload == WORKLOAD
    assert [r.resource_id for r in impairment.affected_resources] == [stopped]
    assert impairment.scope == {
        "auto_scaling_group": workload.group_name,
        "target_group_arn": workload.target_group_arn,
    }


def test_the_configured_workload_names_a_group_without_a_workload_tag(bus, lambda_context, monkeypatch):
    # Given the group lacks the recovery:workload tag, and the deployment declares it as "storefront"
    workload = build_workload()
    boto3.client("autoscaling", region_name=REGION).delete_tags(
        Tags=[{"ResourceId": workload.group_name, "ResourceType": "auto-scaling-group", "Key": "recovery:workload"}]
    )
    monkeypatch.setenv("WORKLOAD_GROUPS", f'{{"{workload.group_name}": "storefront"}}')

    ec2_state.handler(about(workload.instance_ids()[0]), lambda_context)

    (event,) = received(bus)
    assert event["detail"]["workload"] == "storefront"


def test_an_instance_the_group_moved_to_standby_is_not_an_impairment(bus, lambda_context):
    workload = build_workload()
    standby = workload.instance_ids()[0]
    boto3.client("autoscaling", region_name=REGION).enter_standby(
        InstanceIds=[standby], AutoScalingGroupName=workload.group_name, ShouldDecrementDesiredCapacity=True
    )

    response = ec2_state.handler(about(standby), lambda_context)

    assert response["status"] == "ignored"
    assert "Standby" in response["reason"]
    assert received(bus) == []


def test_instances_of_unprotected_groups_and_unknown_instances_are_ignored(bus, lambda_context):
    unmanaged = build_workload("legacy", managed=False)
    for instance_id in (unmanaged.instance_ids()[0], "i-0fedcba9876543210"):
        response = ec2_state.handler(about(instance_id, TERMINATED), lambda_context)
        assert response["status"] == "ignored"
    assert received(bus) == []


def test_a_running_instance_is_ignored_without_an_aws_call(bus, lambda_context):
    # The detector sees every state change of the account: the common case must cost nothing.
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"unexpected look-up {name}")

    response = ec2_state.handler(about("i-0abc123def4567890", state="running"), lambda_context, inventory=NoCalls())
    assert response["status"] == "ignored"
    assert received(bus) == []


SAMPLE = load_event(STOPPED)


def _with(value: Any, *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(SAMPLE)
    node = broken
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return broken


MALFORMED = {
    "empty-object": {},
    "null": None,
    "a-list": [SAMPLE],
    "no-detail": _with(None, "detail"),
    "no-instance-id": _with(None, "detail", "instance-id"),
    "instance-id-not-an-instance": _with("vol-0abc123def4567890", "detail", "instance-id"),
    "unknown-state": _with("exploded", "detail", "state"),
    "time-without-zone": _with("2026-11-22T20:05:33", "time"),
    "garbage-time": _with("yesterday", "time"),
    "another-source": _with("aws.autoscaling", "source"),
    "another-detail-type": _with("EC2 Spot Instance Interruption Warning", "detail-type"),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_rejected_without_raising_and_publishes_nothing(bus, lambda_context, event):
    # Given a protected group, so that a parse that got through could publish
    build_workload()

    response = ec2_state.handler(event, lambda_context)

    assert response["status"] == "rejected"
    assert received(bus) == []
