"""Correlation: signals about the same resource within the window are one impairment and start
one recovery; MTTD counts from the earliest signal."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest

from orchestration import start
from tests.builders import REGION, SIGNAL_TIME, bus_event, create_state_machine, impairment

INSTANCE = "i-0abc123def4567890"
TG_ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-api-target-alarm"
HEALTH = "arn:aws:health:us-east-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/abc"


@pytest.fixture
def state_machine(store, monkeypatch) -> str:
    arn = create_state_machine()
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return arn


def _executions(arn: str) -> list[dict]:
    return boto3.client("stepfunctions", region_name=REGION).list_executions(stateMachineArn=arn)["executions"]


def test_three_signals_about_one_instance_start_one_recovery(state_machine, store, lambda_context):
    # Given three different signals about one instance: its status check alarm, its target
    # going unhealthy (detected first, though it fired later), and an AWS Health event
    status_check = impairment(instances=[INSTANCE], signal_time=SIGNAL_TIME)
    target = impairment(
        instances=[INSTANCE, "i-0other"], signal_id=TG_ALARM, signal_time=SIGNAL_TIME + timedelta(seconds=20)
    )
    health = impairment(instances=[INSTANCE], signal_id=HEALTH, signal_time=SIGNAL_TIME + timedelta(seconds=40))

    # When they arrive, the later-firing target alarm first
    results = [
        start.handler(bus_event(i.model_dump(mode="json")), lambda_context) for i in (target, status_check, health)
    ]

    # Then one execution, the others linked to it
    assert [r["status"] for r in results] == ["started", "correlated", "correlated"]
    assert [e["name"] for e in _executions(state_machine)] == [target.impairment_id]
    primary = store.get_impairment(target.impairment_id)
    assert [s["impairment_id"] for s in primary["linked_signals"]] == [status_check.impairment_id, health.impairment_id]
    # And MTTD counts from the earliest signal (the status check), not from the first detected
    assert primary["mttd_seconds"] == pytest.approx((target.detected_at - SIGNAL_TIME).total_seconds())
    assert store.get_impairment(status_check.impairment_id)["linked_to"] == target.impairment_id


def test_once_the_recovery_is_over_a_new_signal_starts_a_new_one(state_machine, store, lambda_context):
    first = impairment(instances=[INSTANCE])
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    store.release_locks(first.impairment_id, [f"ec2:instance/{INSTANCE}"])  # what Finalize does

    second = impairment(instances=[INSTANCE], signal_id=TG_ALARM)
    assert start.handler(bus_event(second.model_dump(mode="json")), lambda_context)["status"] == "started"
    assert len(_executions(state_machine)) == 2


def test_signals_about_different_resources_are_different_impairments(state_machine, lambda_context):
    one = impairment(instances=["i-0aaa"])
    other = impairment(instances=["i-0bbb"], signal_id=TG_ALARM)
    for item in (one, other):
        assert start.handler(bus_event(item.model_dump(mode="json")), lambda_context)["status"] == "started"
    assert len(_executions(state_machine)) == 2
