"""The AWS Health detector's classification: the sample AWS Health events and a fake inventory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.contract import ImpairmentType, Severity, make_impairment_id
from detectors.health import HealthEvent, classify, handler, parse_time
from tests.builders import (
    WORKLOAD,
    FakeResolver,
    RecordingPublisher,
    asg_instance,
    aws_event,
    member,
    protected_group,
)
from tests.conftest import load_event

ISSUE = "health-event-ec2-issue.json"
CLOSED = "health-event-ec2-issue-closed.json"
ZONAL = "health-event-az-no-entities.json"
PUBLIC = "health-event-public-no-entities.json"
RETIREMENT = "health-event-instance-retirement-scheduled.json"
FIRST, SECOND = "i-0abc123def4567890", "i-0def456abc7890123"
STARTED = datetime(2026, 11, 22, 3, 5, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 3, 12, 4, tzinfo=UTC)
GROUP = protected_group()
ZONES = {"use1-az2": ("us-east-1c", "use1-az2"), "us-east-1c": ("us-east-1c", "use1-az2")}


def run(event: dict[str, Any], inventory: FakeResolver, now: datetime = NOW):
    return classify(HealthEvent.model_validate(event), inventory, now)


def world(*instances: str, group=GROUP) -> FakeResolver:
    """These instances are in-service members of the protected web-api group."""
    return FakeResolver(owners={i: member(i, group) for i in instances}, zones=dict(ZONES))


def arn(name: str) -> str:
    return load_event(name)["detail"]["eventArn"]


def test_the_sample_zonal_issue_about_two_protected_instances_is_one_critical_az_impairment():
    # Given both instances named by the sample EC2 issue in use1-az2 belong to the web-api group
    findings = run(load_event(ISSUE), world(FIRST, SECOND))

    # Then there is one impairment of the workload, about its two instances, scoped to the zone
    (impairment,) = findings.detected
    assert impairment.impairment_type is ImpairmentType.AZ_IMPAIRMENT
    assert impairment.severity is Severity.CRITICAL
    assert impairment.workload == WORKLOAD
    assert sorted(r.resource_id for r in impairment.affected_resources) == [FIRST, SECOND]
    assert impairment.scope == {
        "auto_scaling_group": GROUP.name,
        "availability_zone": "use1-az2",
        "availability_zone_name": "us-east-1c",
        "availability_zone_id": "use1-az2",
    }
    # MTTD counts from when AWS says the problem started (RFC 1123 in the event)
    assert impairment.signal.signal_time == STARTED
    assert impairment.signal.id == arn(ISSUE)
    assert impairment.mttd_seconds == (NOW - STARTED).total_seconds()
    assert impairment.impairment_id == make_impairment_id(WORKLOAD, "aws.health", f"{arn(ISSUE)}#{WORKLOAD}", STARTED)
    assert "use1-az2" in impairment.description


def test_only_the_protected_instances_of_the_event_are_named():
    (impairment,) = run(load_event(ISSUE), world(SECOND)).detected
    assert [r.resource_id for r in impairment.affected_resources] == [SECOND]


def test_instances_of_two_workloads_are_two_impairments_with_their_own_ids():
    other = protected_group("billing-asg", workload="billing")
    inventory = FakeResolver(owners={FIRST: member(FIRST, GROUP), SECOND: member(SECOND, other)})
    detected = run(load_event(ISSUE), inventory).detected
    assert sorted(i.workload for i in detected) == ["billing", WORKLOAD]
    assert len({i.impairment_id for i in detected}) == 2
    assert {i.workload: [r.resource_id for r in i.affected_resources] for i in detected} == {
        WORKLOAD: [FIRST],
        "billing": [SECOND],
    }


def test_every_update_of_an_open_event_is_the_same_impairment():
    first = run(load_event(ISSUE), world(FIRST)).detected[0]
    update = aws_event(load_event(ISSUE), lastUpdatedTime="Sun, 22 Nov 2026 03:40:00 GMT")
    update["id"] = "another-delivery"
    assert run(update, world(FIRST)).detected[0].impairment_id == first.impairment_id


def test_a_closed_event_clears_the_impairment_it_opened():
    opened = run(load_event(ISSUE), world(FIRST, SECOND)).detected[0]

    findings = run(load_event(CLOSED), world(FIRST, SECOND))

    assert findings.detected == []
    (cleared,) = findings.cleared
    assert cleared.impairment_id == opened.impairment_id
    assert cleared.workload == WORKLOAD
    assert cleared.cleared_at == datetime(2026, 11, 22, 4, 27, tzinfo=UTC)  # the event's endTime


def test_a_zonal_event_without_entities_concerns_the_protected_groups_in_that_zone():
    # Given a group with instances in us-east-1c (= use1-az2) and us-east-1a, and a group only in us-east-1a
    in_zone = protected_group(
        instances=[
            asg_instance("i-000000000000000c1", zone="us-east-1c"),
            asg_instance("i-000000000000000a1", zone="us-east-1a"),
            asg_instance("i-000000000000000c2", zone="us-east-1c", lifecycle="Terminating"),
        ],
        zones=["us-east-1a", "us-east-1c"],
    )
    elsewhere = protected_group(
        "billing-asg", workload="billing", instances=[asg_instance("i-000000000000000a2")], zones=["us-east-1a"]
    )
    inventory = FakeResolver(groups=[in_zone, elsewhere], zones=dict(ZONES))

    # When the public EC2 issue in use1-az2 arrives
    findings = run(load_event(ZONAL), inventory)

    # Then the workload with instances there has a critical az_impairment naming them, and only them
    (impairment,) = findings.detected
    assert impairment.workload == WORKLOAD
    assert impairment.impairment_type is ImpairmentType.AZ_IMPAIRMENT
    assert impairment.severity is Severity.CRITICAL
    assert [r.resource_id for r in impairment.affected_resources] == ["i-000000000000000c1"]
    assert impairment.scope["availability_zone"] == "use1-az2"
    assert impairment.scope["auto_scaling_group"] == in_zone.name


def test_a_group_that_spans_the_zone_without_instances_there_is_itself_concerned():
    spanning = protected_group(instances=[asg_instance("i-000000000000000a1")], zones=["us-east-1a", "us-east-1c"])
    (impairment,) = run(load_event(ZONAL), FakeResolver(groups=[spanning], zones=dict(ZONES))).detected
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [
        ("autoscaling:group", spanning.name)
    ]


def test_a_zonal_event_about_no_zone_we_run_in_emits_nothing():
    elsewhere = protected_group(instances=[asg_instance("i-000000000000000a1")], zones=["us-east-1a"])
    findings = run(load_event(ZONAL), FakeResolver(groups=[elsewhere], zones=dict(ZONES)))
    assert findings.detected == []
    assert "PUBLIC" in findings.reason


def test_a_public_event_with_no_affected_resources_emits_nothing_and_looks_nothing_up():
    inventory = FakeResolver(groups=[GROUP])
    findings = run(load_event(PUBLIC), inventory)
    assert findings.detected == findings.cleared == []
    assert "PUBLIC" in findings.reason
    assert inventory.calls == []


def test_entities_nobody_protects_emit_nothing():
    findings = run(load_event(ISSUE), FakeResolver(zones=dict(ZONES)))
    assert findings.detected == []


@pytest.mark.parametrize(
    ("service", "impairment_type"),
    [
        ("EC2", ImpairmentType.INSTANCE_FAILURE),
        ("ELASTICLOADBALANCING", ImpairmentType.NETWORK_ISSUE),
        ("RDS", ImpairmentType.DATABASE_ISSUE),
        ("ECS", ImpairmentType.SERVICE_DEGRADATION),
        ("SOMETHING_NEW", ImpairmentType.SERVICE_DEGRADATION),
    ],
)
def test_without_a_zone_the_type_follows_the_service(service, impairment_type):
    event = aws_event(load_event(ISSUE), service=service, availabilityZone=None)
    (impairment,) = run(event, world(FIRST)).detected
    assert impairment.impairment_type is impairment_type
    assert impairment.severity is Severity.HIGH
    assert "availability_zone" not in impairment.scope


def test_a_scheduled_instance_retirement_is_an_upcoming_medium_instance_failure():
    # Given AWS schedules the retirement of a protected instance for December 2
    findings = run(load_event(RETIREMENT), world(FIRST), now=datetime(2026, 11, 23, 8, 0, 5, tzinfo=UTC))

    (impairment,) = findings.detected
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.severity is Severity.MEDIUM
    assert [r.resource_id for r in impairment.affected_resources] == [FIRST]
    # detected now, for a change that starts later: no negative MTTD, no detection in the future
    assert impairment.detected_at == datetime(2026, 11, 23, 8, 0, 5, tzinfo=UTC)
    assert impairment.signal.signal_time == datetime(2026, 12, 2, tzinfo=UTC)
    assert impairment.mttd_seconds == 0.0


def test_an_account_notification_is_low():
    event = aws_event(load_event(RETIREMENT), eventTypeCategory="accountNotification", statusCode="open")
    assert run(event, world(FIRST)).detected[0].severity is Severity.LOW


@pytest.mark.parametrize(
    ("field", "value"),
    [("statusCode", "resolved-ish"), ("eventTypeCategory", "investigation")],
    ids=["status", "category"],
)
def test_unknown_status_or_category_emits_nothing(field, value):
    findings = run(aws_event(load_event(ISSUE), **{field: value}), world(FIRST, SECOND))
    assert findings.detected == findings.cleared == []
    assert value in findings.reason


def test_entities_given_as_instance_arns_are_understood():
    event = aws_event(
        load_event(ISSUE),
        affectedEntities=[{"entityValue": f"arn:aws:ec2:us-east-1:123456789012:instance/{FIRST}"}],
    )
    event["resources"] = []
    (impairment,) = run(event, world(FIRST)).detected
    assert [r.resource_id for r in impairment.affected_resources] == [FIRST]


@pytest.mark.parametrize(
    "text",
    ["Sun, 22 Nov 2026 03:05:00 GMT", "2026-11-22T03:05:00Z", "2026-11-22T03:05:00+00:00", "2026-11-22T04:05:00+01:00"],
)
def test_start_times_parse_in_rfc_1123_and_iso_8601(text):
    assert parse_time(text) == STARTED


@pytest.mark.parametrize("text", ["yesterday", "Sun, 22 Nov 2026 03:05:00 -0000", "2026-11-22T03:05:00"])
def test_times_that_are_garbage_or_have_no_zone_are_refused(text):
    with pytest.raises(ValueError):
        HealthEvent.model_validate(aws_event(load_event(ISSUE), startTime=text))


def test_the_handler_publishes_detections_and_clearings(lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    publisher = RecordingPublisher()
    opened = handler(load_event(ISSUE), lambda_context, inventory=world(FIRST, SECOND), publisher=publisher)
    closed = handler(load_event(CLOSED), lambda_context, inventory=world(FIRST, SECOND), publisher=publisher)
    assert [detail_type for detail_type, _ in publisher.published] == ["Impairment Detected", "Impairment Cleared"]
    assert opened["detected"] == closed["cleared"]
    assert publisher.published[0][1][0].signal.signal_time == STARTED
