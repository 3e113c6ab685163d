"""The AWS Health detector's handler under moto: a real protected group, real zones, a real bus."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest

from core.contract import CLEARED, DETECTED, ImpairmentCleared, ImpairmentDetected, ImpairmentType, Severity
from detectors import health
from tests.builders import BUS_NAME, REGION, WORKLOAD, aws_event, build_workload, capture_bus, received
from tests.conftest import load_event

ISSUE = "health-event-ec2-issue.json"
CLOSED = "health-event-ec2-issue-closed.json"
ZONAL = "health-event-az-no-entities.json"
PUBLIC = "health-event-public-no-entities.json"


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


def naming(name: str, *instance_ids: str) -> dict[str, Any]:
    """The sample event, about these instances."""
    event = aws_event(load_event(name), affectedEntities=[{"entityValue": i} for i in instance_ids])
    event["resources"] = list(instance_ids)
    return event


def zone_id(zone_name: str) -> str:
    zones = boto3.client("ec2", region_name=REGION).describe_availability_zones(ZoneNames=[zone_name])
    return zones["AvailabilityZones"][0]["ZoneId"]


def test_an_issue_naming_protected_instances_puts_one_az_impairment_on_the_bus(bus, lambda_context):
    # Given two instances of the protected group, named by the sample EC2 issue in use1-az2
    workload = build_workload()
    named = workload.instance_ids()[:2]

    response = health.handler(naming(ISSUE, *named), lambda_context)

    (event,) = received(bus)
    assert event["detail-type"] == DETECTED
    impairment = ImpairmentDetected.model_validate(event["detail"])
    assert [impairment.impairment_id] == response["detected"]
    assert impairment.impairment_type is ImpairmentType.AZ_IMPAIRMENT
    assert impairment.severity is Severity.CRITICAL
    assert impairment.workload == WORKLOAD
    assert sorted(r.resource_id for r in impairment.affected_resources) == named
    assert impairment.scope["availability_zone"] == "use1-az2"
    assert impairment.scope["availability_zone_id"] == "use1-az2"
    assert impairment.scope["auto_scaling_group"] == workload.group_name
    assert impairment.scope["target_group_arn"] == workload.target_group_arn


def test_the_closed_event_clears_the_same_impairment(bus, lambda_context):
    workload = build_workload()
    named = workload.instance_ids()[:2]
    opened = health.handler(naming(ISSUE, *named), lambda_context)

    health.handler(naming(CLOSED, *named), lambda_context)

    events = received(bus)
    assert [e["detail-type"] for e in events] == [DETECTED, CLEARED]
    assert ImpairmentCleared.model_validate(events[1]["detail"]).impairment_id == opened["detected"][0]


def test_a_zonal_event_without_entities_names_the_protected_instances_in_that_zone(bus, lambda_context):
    # Given the protected group's instances run in us-east-1a, and AWS reports an issue in that zone (by id)
    workload = build_workload()
    build_workload("legacy", managed=False)
    event = aws_event(load_event(ZONAL), availabilityZone=zone_id(f"{REGION}a"))

    health.handler(event, lambda_context)

    (published,) = received(bus)
    impairment = ImpairmentDetected.model_validate(published["detail"])
    assert impairment.impairment_type is ImpairmentType.AZ_IMPAIRMENT
    assert sorted(r.resource_id for r in impairment.affected_resources) == workload.instance_ids()
    assert impairment.scope["availability_zone_name"] == f"{REGION}a"


def test_a_zonal_event_in_a_zone_we_do_not_run_in_is_ignored(bus, lambda_context):
    build_workload()  # us-east-1a only; the sample names use1-az2
    response = health.handler(load_event(ZONAL), lambda_context)
    assert response["status"] == "ignored"
    assert received(bus) == []


def test_a_public_event_with_no_affected_resources_is_ignored(bus, lambda_context):
    build_workload()
    response = health.handler(load_event(PUBLIC), lambda_context)
    assert response["status"] == "ignored"
    assert "PUBLIC" in response["reason"]
    assert received(bus) == []


def test_an_event_about_instances_nobody_protects_is_ignored(bus, lambda_context):
    legacy = build_workload("legacy", managed=False)
    response = health.handler(naming(ISSUE, *legacy.instance_ids()), lambda_context)
    assert response["status"] == "ignored"
    assert received(bus) == []


SAMPLE = load_event(ISSUE)


def _broken(**detail: Any) -> dict[str, Any]:
    return aws_event(SAMPLE, **detail)


def _envelope(**fields: Any) -> dict[str, Any]:
    broken = copy.deepcopy(SAMPLE)
    for key, value in fields.items():
        broken[key.replace("_", "-")] = value
    return broken


MALFORMED = {
    "empty-object": {},
    "null": None,
    "a-list": [SAMPLE],
    "no-detail": {k: v for k, v in SAMPLE.items() if k != "detail"},
    "no-event-arn": _broken(eventArn=None),
    "no-start-time": _broken(startTime=None),
    "garbage-start-time": _broken(startTime="the other day"),
    "start-time-without-zone": _broken(startTime="2026-11-22T03:05:00"),
    "entities-not-a-list": _broken(affectedEntities={"entityValue": "i-0abc123def4567890"}),
    "entity-without-value": _broken(affectedEntities=[{"status": "IMPAIRED"}]),
    "another-source": _envelope(source="aws.ec2"),
    "another-detail-type": _envelope(detail_type="AWS API Call via CloudTrail"),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_rejected_without_raising_and_publishes_nothing(bus, lambda_context, event):
    build_workload()
    response = health.handler(event, lambda_context)
    assert response["status"] == "rejected"
    assert received(bus) == []
