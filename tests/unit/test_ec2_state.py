"""The EC2 state-change detector's classification: the sample AWS events and a fake inventory."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from core.contract import ImpairmentType, Severity, make_impairment_id
from core.errors import TransientError
from detectors.ec2_state import InstanceStateChangeEvent, classify, handler
from tests.builders import (
    WORKLOAD,
    FakeResolver,
    RecordingPublisher,
    aws_event,
    member,
    protected_group,
    scaling_activity,
)
from tests.conftest import load_event

STOPPED = "ec2-instance-state-change-stopped.json"
TERMINATED = "ec2-instance-state-change-terminated.json"
INSTANCE = "i-0abc123def4567890"
TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-api/73e2d6bc24d8a067"
GROUP = protected_group(target_group_arns=[TARGET_GROUP])
DELAY = timedelta(seconds=3)


def parse(event: dict[str, Any]) -> InstanceStateChangeEvent:
    return InstanceStateChangeEvent.model_validate(event)


def run(event: dict[str, Any], inventory: FakeResolver):
    parsed = parse(event)
    return classify(parsed, inventory, parsed.time + DELAY)


def world(lifecycle: str | None = "InService", activities: list[dict[str, Any]] | None = None) -> FakeResolver:
    """The sample instance, listed by the protected web-api group in this lifecycle state."""
    return FakeResolver(
        owners={INSTANCE: member(INSTANCE, GROUP, lifecycle=lifecycle)},
        activities={GROUP.name: activities or []},
    )


def changed_at(name: str = STOPPED) -> datetime:
    return parse(load_event(name)).time


def test_an_instance_of_a_protected_group_that_stops_on_its_own_is_an_instance_failure():
    # Given the sample "stopped" event of an in-service instance of the web-api group, and no
    # scaling activity about it
    event = load_event(STOPPED)

    # When it is classified
    findings = run(event, world())

    # Then it is one high-severity instance failure of that instance, scoped to its group
    (impairment,) = findings.detected
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.severity is Severity.HIGH
    assert impairment.workload == WORKLOAD
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [("ec2:instance", INSTANCE)]
    assert impairment.scope == {"auto_scaling_group": GROUP.name, "target_group_arn": TARGET_GROUP}
    assert impairment.signal.source == "aws.ec2"
    assert impairment.signal.signal_time == changed_at()
    assert impairment.mttd_seconds == DELAY.total_seconds()
    assert impairment.impairment_id == make_impairment_id(WORKLOAD, "aws.ec2", INSTANCE, changed_at())
    assert findings.cleared == []


def test_a_redelivered_event_gives_the_same_impairment_id():
    first = run(load_event(STOPPED), world()).detected[0]
    again = run(aws_event(load_event(STOPPED)), world()).detected[0]
    assert again.impairment_id == first.impairment_id


@pytest.mark.parametrize("state", ["stopping", "stopped", "shutting-down", "terminated"])
def test_every_state_that_takes_an_instance_out_is_an_impairment(state):
    findings = run(aws_event(load_event(STOPPED), state=state), world())
    assert [i.impairment_type for i in findings.detected] == [ImpairmentType.INSTANCE_FAILURE]


@pytest.mark.parametrize("state", ["pending", "running"])
def test_an_instance_coming_up_is_not_an_impairment_and_is_not_looked_up(state):
    inventory = world()
    findings = run(aws_event(load_event(STOPPED), state=state), inventory)
    assert findings.detected == []
    assert inventory.calls == []


@pytest.mark.parametrize(
    "lifecycle",
    [
        "Terminating",
        "Terminating:Wait",
        "Terminating:Proceed",
        "Terminated",
        "Detaching",
        "EnteringStandby",
        "Standby",
        "Warmed:Stopped",
        "Warmed:Pending",
    ],
)
def test_an_instance_its_group_is_taking_out_is_not_an_impairment(lifecycle):
    # Given the group is terminating, detaching, standing by or warm-pooling the instance
    findings = run(load_event(STOPPED), world(lifecycle=lifecycle))

    # Then its stop is the group's doing
    assert findings.detected == []
    assert lifecycle in findings.reason


def test_a_termination_a_scale_in_asked_for_is_not_an_impairment():
    # Given the group no longer lists the instance, and a scale-in terminated it two minutes before
    terminated_at = changed_at(TERMINATED)
    scale_in = scaling_activity(
        INSTANCE,
        terminated_at - timedelta(minutes=2),
        cause=(
            "At 2026-11-22T20:39:02Z a monitor alarm web-api-cpu-low in state ALARM triggered policy scale-in "
            f"changing the desired capacity from 3 to 2. At 2026-11-22T20:39:07Z an instance was taken out of "
            f"service in response to a difference between desired and actual capacity, shrinking the capacity "
            f"from 3 to 2. At 2026-11-22T20:39:07Z instance {INSTANCE} was selected for termination."
        ),
    )

    # When its termination is classified
    findings = run(load_event(TERMINATED), world(lifecycle=None, activities=[scale_in]))

    # Then it is nobody's failure
    assert findings.detected == []
    assert scale_in["ActivityId"] in findings.reason


def test_an_instance_refresh_named_only_in_the_cause_is_not_an_impairment():
    refresh = scaling_activity(
        INSTANCE,
        changed_at(TERMINATED) - timedelta(minutes=7),
        description="Terminating EC2 instance",
        cause=f"At 2026-11-22T20:34:00Z an instance was taken out of service in response to an instance refresh. "
        f"At 2026-11-22T20:34:00Z instance {INSTANCE} was selected for termination.",
    )
    assert run(load_event(TERMINATED), world(lifecycle=None, activities=[refresh])).detected == []


@pytest.mark.parametrize(
    "activity",
    [
        pytest.param(scaling_activity("i-0fff000000000000f", datetime(2026, 11, 22, 20, 40)), id="another-instance"),
        pytest.param(
            scaling_activity(INSTANCE, datetime(2026, 11, 22, 20, 44, 30)), id="started-after-the-change-a-reaction"
        ),
        pytest.param(
            scaling_activity(
                INSTANCE, datetime(2026, 11, 22, 20, 35), description=f"Launching a new EC2 instance: {INSTANCE}"
            ),
            id="the-launch-of-the-instance",
        ),
        pytest.param(scaling_activity(INSTANCE, datetime(2026, 11, 22, 17, 30)), id="older-than-the-lookback"),
    ],
)
def test_activities_that_did_not_ask_for_the_termination_do_not_excuse_it(activity):
    activity = {**activity, "StartTime": activity["StartTime"].replace(tzinfo=changed_at(TERMINATED).tzinfo)}
    findings = run(load_event(TERMINATED), world(lifecycle=None, activities=[activity]))
    assert [r.resource_id for i in findings.detected for r in i.affected_resources] == [INSTANCE]


def test_an_instance_of_no_protected_group_is_ignored():
    # Given nothing protected resolves the instance (unmanaged group, unknown or long-gone instance)
    findings = run(load_event(STOPPED), FakeResolver())
    assert findings.detected == []
    assert "not protected" in findings.reason


def test_a_protected_instance_outside_any_group_is_ignored():
    # Given a standalone instance with the managed tag: nothing can tell a deliberate stop from a failure
    from detectors.resolve import InstanceOwner, Owner

    inventory = FakeResolver(owners={INSTANCE: InstanceOwner(instance_id=INSTANCE, owner=Owner(workload="batch"))})
    findings = run(load_event(STOPPED), inventory)
    assert findings.detected == []
    assert "no protected Auto Scaling group" in findings.reason


def test_the_handler_publishes_the_impairment(lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    publisher = RecordingPublisher()
    response = handler(load_event(STOPPED), lambda_context, inventory=world(), publisher=publisher)
    assert response["status"] == "published"
    ((detail_type, details),) = publisher.published
    assert detail_type == "Impairment Detected"
    assert [d.impairment_id for d in details] == response["detected"]


def test_the_handler_lets_a_transient_aws_error_through_for_the_asynchronous_retry(lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")

    class Throttled(FakeResolver):
        def instances(self, instance_ids):
            raise TransientError("autoscaling:DescribeAutoScalingInstances failed: Throttling", code="Throttling")

    with pytest.raises(TransientError):
        handler(load_event(STOPPED), lambda_context, inventory=Throttled(), publisher=RecordingPublisher())
