"""The Spot detector's handler under moto: a real protected group, a real bus, a member account."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest

from core.contract import DETECTED, EVENT_SOURCE, ImpairmentDetected, ImpairmentType, Severity
from detectors import spot
from tests.builders import BUS_NAME, REGION, WORKLOAD, build_workload, capture_bus, in_account, received
from tests.conftest import load_event

WARNING = "ec2-spot-instance-interruption-warning.json"
REBALANCE = "ec2-instance-rebalance-recommendation.json"
MEMBER = "111122223333"


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


def about(instance_id: str, name: str = WARNING, account: str | None = None) -> dict[str, Any]:
    """The sample event, about this instance (and from this account)."""
    event = copy.deepcopy(load_event(name))
    event["detail"]["instance-id"] = instance_id
    event["resources"] = [f"arn:aws:ec2:{REGION}:{event['account']}:instance/{instance_id}"]
    if account:
        event["account"] = account
    return event


@pytest.mark.parametrize(
    ("name", "severity"), [(REBALANCE, Severity.MEDIUM), (WARNING, Severity.HIGH)], ids=["rebalance", "interruption"]
)
def test_a_warning_about_an_instance_of_a_protected_group_puts_one_instance_failure_on_the_bus(
    name, severity, bus, lambda_context
):
    # Given a protected group of three, one of whose instances EC2 warns about
    workload = build_workload()
    instance = workload.instance_ids()[1]

    # When the warning reaches the detector
    response = spot.handler(about(instance, name), lambda_context)

    # Then the bus carries one instance failure of that instance, scoped to its group and target group
    assert response["status"] == "published"
    (event,) = received(bus)
    assert (event["detail-type"], event["source"]) == (DETECTED, EVENT_SOURCE)
    impairment = ImpairmentDetected.model_validate(event["detail"])
    assert response["detected"] == [impairment.impairment_id]
    assert (impairment.impairment_type, impairment.severity) == (ImpairmentType.INSTANCE_FAILURE, severity)
    assert impairment.workload == WORKLOAD
    assert [r.resource_id for r in impairment.affected_resources] == [instance]
    assert impairment.scope == {
        "auto_scaling_group": workload.group_name,
        "target_group_arn": workload.target_group_arn,
    }
    assert impairment.account_id is None


def test_a_redelivered_warning_is_the_same_impairment_and_the_two_kinds_are_two(bus, lambda_context):
    instance = build_workload().instance_ids()[0]
    first = spot.handler(about(instance), lambda_context)["detected"]
    again = spot.handler(about(instance), lambda_context)["detected"]
    rebalance = spot.handler(about(instance, REBALANCE), lambda_context)["detected"]
    assert first == again != rebalance


def test_an_instance_the_group_moved_to_standby_is_not_an_impairment(bus, lambda_context):
    workload = build_workload()
    standby = workload.instance_ids()[0]
    boto3.client("autoscaling", region_name=REGION).enter_standby(
        InstanceIds=[standby], AutoScalingGroupName=workload.group_name, ShouldDecrementDesiredCapacity=True
    )

    response = spot.handler(about(standby), lambda_context)

    assert response["status"] == "ignored"
    assert "Standby" in response["reason"]
    assert received(bus) == []


def test_instances_of_unprotected_groups_and_unknown_instances_are_ignored(bus, lambda_context):
    unmanaged = build_workload("legacy", managed=False)
    for instance_id in (unmanaged.instance_ids()[0], "i-0fedcba9876543210"):
        assert spot.handler(about(instance_id, REBALANCE), lambda_context)["status"] == "ignored"
    assert received(bus) == []


def test_a_member_accounts_warning_is_resolved_there_and_marked_with_its_account(bus, lambda_context, monkeypatch):
    # Given a member account's protected group, whose warning its member stack forwarded
    monkeypatch.setenv("MEMBER_ROLE_NAME", "ImpairmentRecoveryMember")
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{MEMBER}"]')
    with in_account(MEMBER, monkeypatch):
        instance = build_workload().instance_ids()[0]

    response = spot.handler(about(instance, account=MEMBER), lambda_context)

    # Then it is resolved through the member role, and the impairment names the member's account
    assert response["status"] == "published"
    (event,) = received(bus)
    assert ImpairmentDetected.model_validate(event["detail"]).account_id == MEMBER


def test_an_account_that_is_not_a_member_is_refused_without_a_look_up(bus, lambda_context, monkeypatch):
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{MEMBER}"]')

    class NoLookups:
        def __getattr__(self, name):
            raise AssertionError(f"unexpected look-up {name}")

    event = about("i-0abc123def4567890", account="999988887777")
    assert spot.handler(event, lambda_context, inventory=NoLookups())["status"] == "refused"
    assert received(bus) == []


SAMPLE = load_event(WARNING)


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
    "no-detail": _with(None, "detail"),
    "no-instance-id": _with(None, "detail", "instance-id"),
    "instance-id-not-an-instance": _with("vol-0abc123def4567890", "detail", "instance-id"),
    "unknown-action": _with("explode", "detail", "instance-action"),
    "time-without-zone": _with("2026-11-22T21:14:02", "time"),
    "another-source": _with("aws.autoscaling", "source"),
    "another-detail-type": _with("EC2 Instance State-change Notification", "detail-type"),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_rejected_without_raising_and_publishes_nothing(bus, lambda_context, event):
    build_workload()
    assert spot.handler(event, lambda_context)["status"] == "rejected"
    assert received(bus) == []
