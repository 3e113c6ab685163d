"""The scheduled sweeps' handler under moto: real groups, real target groups, a real bus."""

from __future__ import annotations

from collections import Counter

import boto3
import pytest

from core import aws
from core.contract import DETECTED, ImpairmentDetected, ImpairmentType, Severity
from detectors import sweeps
from tests.builders import BUS_NAME, REGION, WORKLOAD, build_workload, capture_bus, received, scheduled_event
from tests.conftest import load_event


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


def count_calls() -> Counter:
    """Counts every API call the handler makes through its (cached) clients."""
    calls: Counter = Counter()
    for service in ("autoscaling", "elbv2", "ec2"):
        aws.client(service).meta.events.register(
            f"before-call.{aws.client(service).meta.service_model.service_id.hyphenize()}",
            lambda model, **_: calls.update([model.name]),
        )
    return calls


def impairments(queue_url: str) -> list[ImpairmentDetected]:
    events = received(queue_url)
    assert {e["detail-type"] for e in events} <= {DETECTED}
    return [ImpairmentDetected.model_validate(e["detail"]) for e in events]


def test_a_healthy_workload_puts_nothing_on_the_bus(bus, lambda_context):
    build_workload()
    response = sweeps.handler(load_event("scheduled-event.json"), lambda_context)
    assert response["status"] == "healthy"
    assert (response["groups"], response["target_groups"]) == (1, 1)
    assert received(bus) == []


def test_an_instance_auto_scaling_reports_unhealthy_is_an_instance_failure(bus, lambda_context):
    # Given one instance of the protected group is marked Unhealthy (and still in service)
    workload = build_workload()
    sick = workload.instance_ids()[2]
    boto3.client("autoscaling", region_name=REGION).set_instance_health(InstanceId=sick, HealthStatus="Unhealthy")

    sweeps.handler(scheduled_event(), lambda_context)

    (impairment,) = impairments(bus)
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.severity is Severity.HIGH
    assert impairment.workload == WORKLOAD
    assert [r.resource_id for r in impairment.affected_resources] == [sick]
    assert impairment.scope["auto_scaling_group"] == workload.group_name


def test_a_stopped_instance_behind_the_target_group_is_a_service_degradation(bus, lambda_context):
    workload = build_workload()
    stopped = workload.instance_ids()[0]
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[stopped])

    sweeps.handler(scheduled_event(), lambda_context)

    (impairment,) = impairments(bus)
    assert impairment.impairment_type is ImpairmentType.SERVICE_DEGRADATION
    assert impairment.severity is Severity.HIGH  # one of three
    assert [r.resource_id for r in impairment.affected_resources] == [stopped]
    assert impairment.scope == {
        "auto_scaling_group": workload.group_name,
        "target_group_arn": workload.target_group_arn,
    }
    assert impairment.metrics["unhealthy_targets"] == 1.0
    assert impairment.metrics["targets"] == 3.0


def test_most_of_the_fleet_stopped_is_critical_and_fails_open(bus, lambda_context):
    workload = build_workload()
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=workload.instance_ids()[:2])

    sweeps.handler(scheduled_event(), lambda_context)

    (impairment,) = impairments(bus)
    assert impairment.severity is Severity.CRITICAL
    assert impairment.metrics["fail_open"] == 1.0
    assert "likely a shared cause" in impairment.description


def test_sweeps_of_one_problem_within_the_window_publish_the_same_impairment(bus, lambda_context):
    # Given an instance that stays stopped over three sweeps, a minute apart, within one 5-minute window
    workload = build_workload()
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=workload.instance_ids()[:1])

    for minute in ("05", "06", "07"):
        sweeps.handler(scheduled_event(f"2026-11-22T20:{minute}:00Z"), lambda_context)

    # Then every sighting carries one impairment id (the recovery starts once: executions are named by it)
    assert len({i.impairment_id for i in impairments(bus)}) == 1


def test_unprotected_groups_are_not_swept(bus, lambda_context):
    legacy = build_workload("legacy", managed=False)
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=legacy.instance_ids()[:1])

    response = sweeps.handler(scheduled_event(), lambda_context)

    assert response["groups"] == 0
    assert received(bus) == []


def test_the_calls_grow_with_groups_not_with_instances(bus, lambda_context):
    # Given two protected workloads of 3 and 40 instances
    build_workload(WORKLOAD)
    build_workload("catalog", min_size=0, max_size=40, desired=40)
    calls = count_calls()

    sweeps.handler(scheduled_event(), lambda_context)

    # Then one group listing and one target health call per target group, and no EC2 call at all
    assert calls == Counter({"DescribeAutoScalingGroups": 1, "DescribeTargetHealth": 2})


@pytest.mark.parametrize(
    "event",
    [
        {},
        None,
        "rate(1 minute)",
        load_event("ec2-instance-state-change-stopped.json"),
        {**scheduled_event(), "time": "soon"},
        {**scheduled_event(), "source": "aws.health"},
    ],
    ids=["empty-object", "null", "a-string", "another-event", "garbage-time", "another-source"],
)
def test_input_other_than_a_scheduled_event_is_rejected_without_raising(bus, lambda_context, event):
    build_workload()
    boto3.client("autoscaling", region_name=REGION).set_instance_health(
        InstanceId=build_workload("other").instance_ids()[0], HealthStatus="Unhealthy"
    )

    response = sweeps.handler(event, lambda_context)

    assert response["status"] == "rejected"
    assert received(bus) == []
