"""The Spot detector's classification: the sample AWS events and a fake inventory."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.contract import ImpairmentType, Severity, make_impairment_id
from detectors.spot import SpotEvent, classify, handler
from tests.builders import WORKLOAD, FakeResolver, RecordingPublisher, member, protected_group
from tests.conftest import load_event

WARNING = "ec2-spot-instance-interruption-warning.json"
REBALANCE = "ec2-instance-rebalance-recommendation.json"
INSTANCE = "i-0abc123def4567890"
TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-api/73e2d6bc24d8a067"
GROUP = protected_group(target_group_arns=[TARGET_GROUP])
DELAY = timedelta(seconds=2)


def run(name: str, inventory: FakeResolver, **detail: Any):
    event = load_event(name)
    event["detail"].update(detail)
    parsed = SpotEvent.model_validate(event)
    return classify(parsed, inventory, parsed.time + DELAY), parsed


def world(lifecycle: str | None = "InService") -> FakeResolver:
    return FakeResolver(owners={INSTANCE: member(INSTANCE, GROUP, lifecycle=lifecycle)})


@pytest.mark.parametrize(
    ("name", "severity", "kind", "says"),
    [
        (REBALANCE, Severity.MEDIUM, "rebalance", "elevated risk of interruption"),
        (WARNING, Severity.HIGH, "interruption", "EC2 will terminate Spot instance"),
    ],
    ids=["rebalance", "interruption"],
)
def test_a_warning_about_an_instance_of_a_protected_group_is_an_instance_failure(name, severity, kind, says):
    findings, event = run(name, world())

    (impairment,) = findings.detected
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.severity is severity
    assert impairment.workload == WORKLOAD
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [("ec2:instance", INSTANCE)]
    assert impairment.scope == {"auto_scaling_group": GROUP.name, "target_group_arn": TARGET_GROUP}
    assert impairment.signal.source == "aws.ec2"
    assert impairment.signal.signal_time == event.time
    assert impairment.mttd_seconds == DELAY.total_seconds()
    assert says in impairment.description
    # Stable for a redelivery; the recommendation and the warning are two impairments of one instance
    assert impairment.impairment_id == make_impairment_id(WORKLOAD, "aws.ec2", f"{INSTANCE}#{kind}", event.time)


def test_the_warning_says_what_ec2_will_do():
    findings, _ = run(WARNING, world(), **{"instance-action": "hibernate"})
    assert "EC2 will hibernate" in findings.detected[0].description


@pytest.mark.parametrize(
    ("inventory", "reason"),
    [
        (FakeResolver(), "not protected"),
        (FakeResolver(owners={INSTANCE: member(INSTANCE, GROUP).__class__(INSTANCE, GROUP.owner)}), "no protected"),
        (world("Terminating:Wait"), "already taking it out (Terminating:Wait)"),
        (world("Standby"), "already taking it out (Standby)"),
    ],
    ids=["unknown", "in-no-group", "terminating", "standby"],
)
def test_instances_that_are_not_a_protected_group_s_to_recover_are_ignored(inventory, reason):
    findings, _ = run(WARNING, inventory)
    assert findings.detected == findings.cleared == []
    assert reason in findings.reason


def test_the_handler_publishes_through_the_shared_path_and_marks_a_member_s_account(monkeypatch, lambda_context):
    # Given a member account's warning (forwarded by its member stack)
    monkeypatch.setenv("EVENT_BUS_NAME", "recovery-test-bus")
    monkeypatch.setenv("MEMBER_ACCOUNTS", '["111122223333"]')
    event = load_event(WARNING)
    event["account"] = "111122223333"
    publisher = RecordingPublisher()

    response = handler(event, lambda_context, inventory=world(), publisher=publisher)

    assert response["status"] == "published"
    ((detail_type, (impairment,)),) = publisher.published
    assert detail_type == "Impairment Detected"
    assert impairment.account_id == "111122223333"
    assert response["detected"] == [impairment.impairment_id]
