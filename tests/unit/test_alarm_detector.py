"""The alarm detector's classification, driven by the sample AWS alarm events and a fake inventory."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft4Validator

from core.contract import (
    CLEARED,
    DETECTED,
    EVENT_SOURCE,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    json_schema,
)
from detectors.alarm import AlarmStateChangeEvent, classify
from detectors.resolve import Configured, resource_key
from tests.builders import MANAGED_TAG, FakeInventory, alarm_tags, target, with_state
from tests.conftest import EVENTS, load_event

UNHEALTHY_HOSTS = "cloudwatch-alarm-state-change-alarm.json"
UNHEALTHY_HOSTS_OK = "cloudwatch-alarm-state-change-ok.json"
STATUS_CHECK = "cloudwatch-alarm-status-check-instance.json"
METRIC_MATH = "cloudwatch-alarm-metric-math.json"
COMPOSITE = "composite-alarm.json"

ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
UNHEALTHY_HOSTS_ARN = ALARM + "web-api-unhealthy-hosts"
STATUS_CHECK_ARN = ALARM + "web-api-i-0abc123def4567890-status-check"
METRIC_MATH_ARN = ALARM + "web-api-5xx-rate"
COMPOSITE_ARN = ALARM + "web-api-service-health"
TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-api/73e2d6bc24d8a067"
GROUP = "web-api-asg"
DETECTION_DELAY = timedelta(seconds=7.25)


def parse(event: dict[str, Any]) -> AlarmStateChangeEvent:
    return AlarmStateChangeEvent.model_validate(event)


def state_time(event: dict[str, Any]) -> datetime:
    return parse(event).detail.state.timestamp


# The deployment's configuration as the stack writes it: web-api declares its target group.
CONFIGURED = Configured.from_declared({"web-api": [resource_key("elasticloadbalancing:targetgroup", TARGET_GROUP_ARN)]})


def run(event: dict[str, Any], inventory: FakeInventory, now: datetime | None = None, configured=CONFIGURED):
    """Classify the event as the handler would, DETECTION_DELAY after the state change."""
    return classify(parse(event), inventory, MANAGED_TAG, now or state_time(event) + DETECTION_DELAY, configured)


def targets(healthy: int, unhealthy: int) -> list[dict[str, Any]]:
    return [target(f"i-{n:017x}", "healthy") for n in range(healthy)] + [
        target(f"i-{n + 100:017x}", "unhealthy", "Target.FailedHealthChecks") for n in range(unhealthy)
    ]


def world(**tags_by_arn: dict[str, str]) -> FakeInventory:
    """Every sample alarm managed by the web-api workload, one of four targets unhealthy; every
    instance and group the alarms name is web-api's."""
    tags = {
        UNHEALTHY_HOSTS_ARN: alarm_tags(impairment_type="instance_failure", severity="high"),
        STATUS_CHECK_ARN: alarm_tags(impairment_type="instance_failure", severity="high"),
        METRIC_MATH_ARN: alarm_tags(impairment_type="application_error", severity="medium", auto_scaling_group=GROUP),
        COMPOSITE_ARN: alarm_tags(impairment_type="service_degradation", auto_scaling_group=GROUP),
    }
    tags.update(tags_by_arn)
    return FakeInventory(
        tags=tags, targets={TARGET_GROUP_ARN: targets(healthy=3, unhealthy=1)}, default_owner="web-api"
    )


# The samples whose alarms world() tags as web-api's (the other alarm samples have tests of their own).
SAMPLE_ALARM_EVENTS = [UNHEALTHY_HOSTS, UNHEALTHY_HOSTS_OK, STATUS_CHECK, METRIC_MATH, COMPOSITE]


def test_the_sample_alarm_events_are_in_the_repository():
    # Guards the parametrized test below: the samples live in tests/events, not outside the clone.
    assert all((EVENTS / name).is_file() for name in SAMPLE_ALARM_EVENTS)


@pytest.mark.parametrize("name", SAMPLE_ALARM_EVENTS)
def test_every_sample_alarm_event_gives_a_contract_event(name):
    # Given a sample alarm state change of a managed alarm
    event = load_event(name)

    # When it is classified
    outcome = run(event, world())

    # Then ALARM gives "Impairment Detected", ALARM -> OK gives "Impairment Cleared", and the
    # event validates against the published schema as it would be put on the bus
    expected = {"ALARM": DETECTED, "OK": CLEARED}[event["detail"]["state"]["value"]]
    assert outcome.detail_type == expected
    assert outcome.model.workload == "web-api"
    bus_event = {"detail-type": expected, "source": EVENT_SOURCE, "detail": json.loads(outcome.model.model_dump_json())}
    assert list(Draft4Validator(json_schema()).iter_errors(bus_event)) == []


# --- what is impaired -----------------------------------------------------------------------


def test_status_check_alarm_is_an_instance_failure_of_that_instance():
    # Given the status-check alarm of one instance
    event = load_event(STATUS_CHECK)
    inventory = world()

    # When it is classified
    outcome = run(event, inventory)

    # Then the impairment is that instance failing, with the alarm as its signal
    impairment = outcome.model
    assert isinstance(impairment, ImpairmentDetected)
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.severity is Severity.HIGH
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [
        ("ec2:instance", "i-0abc123def4567890")
    ]
    assert impairment.signal.id == STATUS_CHECK_ARN
    assert impairment.signal.name == "web-api-i-0abc123def4567890-status-check"
    assert impairment.metrics == {"threshold": 1.0, "latest_datapoint": 1.0}
    # and no target group was looked up for a single-instance alarm
    assert [c for c in inventory.calls if c[0] == "target_health"] == []


def test_unhealthy_hosts_alarm_names_the_unhealthy_targets_from_the_inventory():
    # Given the unhealthy-hosts alarm, and a target group where 1 of 4 targets is unhealthy
    event = load_event(UNHEALTHY_HOSTS)
    inventory = world()

    # When it is classified
    impairment = run(event, inventory).model

    # Then exactly the unhealthy target is affected, the target group is the scope, and the
    # counts and the alarm's threshold and latest datapoint are in the metrics
    assert isinstance(impairment, ImpairmentDetected)
    assert [r.resource_id for r in impairment.affected_resources] == ["i-00000000000000064"]
    assert impairment.affected_resources[0].resource_type == "ec2:instance"
    assert impairment.scope["target_group_arn"] == TARGET_GROUP_ARN
    assert impairment.severity is Severity.HIGH
    assert impairment.metrics == {"unhealthy_targets": 1.0, "targets": 4.0, "threshold": 1.0, "latest_datapoint": 2.0}
    assert ("target_health", TARGET_GROUP_ARN) in inventory.calls


def test_stopped_targets_count_as_impaired():
    # Given a target the load balancer reports as unused because its instance is stopped
    inventory = world()
    inventory.targets[TARGET_GROUP_ARN] = [
        target("i-0aaaaaaaaaaaaaaaa", "healthy"),
        target("i-0bbbbbbbbbbbbbbbb", "unused", "Target.InvalidState"),
        target("i-0cccccccccccccccc", "draining"),
        target("i-0dddddddddddddddd", "healthy"),
    ]

    impairment = run(load_event(UNHEALTHY_HOSTS), inventory).model

    # Then it is affected, and a draining target is not
    assert [r.resource_id for r in impairment.affected_resources] == ["i-0bbbbbbbbbbbbbbbb"]


@pytest.mark.parametrize(
    ("healthy", "unhealthy", "expected"),
    [(3, 1, Severity.HIGH), (2, 2, Severity.HIGH), (1, 2, Severity.CRITICAL), (0, 4, Severity.CRITICAL)],
)
def test_more_than_half_of_the_targets_unhealthy_is_critical(healthy, unhealthy, expected):
    # Given a target group with some targets unhealthy and a "high" alarm
    inventory = world()
    inventory.targets[TARGET_GROUP_ARN] = targets(healthy, unhealthy)

    # When the unhealthy-hosts alarm is classified
    impairment = run(load_event(UNHEALTHY_HOSTS), inventory).model

    # Then it becomes critical (a human decides) only when most of the fleet is unhealthy
    assert impairment.severity is expected
    assert len(impairment.affected_resources) == unhealthy


def test_unhealthy_hosts_alarm_with_every_target_healthy_falls_back_to_the_target_group():
    # Given the alarm fired but the targets have recovered by the time the detector looks
    inventory = world()
    inventory.targets[TARGET_GROUP_ARN] = targets(healthy=3, unhealthy=0)

    impairment = run(load_event(UNHEALTHY_HOSTS), inventory).model

    # Then the impairment is about the target group as a whole
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [
        ("elasticloadbalancing:targetgroup", TARGET_GROUP_ARN)
    ]


def test_metric_math_alarm_is_about_the_workload_group():
    # Given a metric-math alarm (5xx rate over the load balancer: no single resource)
    event = load_event(METRIC_MATH)

    # When it is classified
    impairment = run(event, world()).model

    # Then it is about the workload's Auto Scaling group, as the alarm's tags say
    assert isinstance(impairment, ImpairmentDetected)
    assert impairment.impairment_type is ImpairmentType.APPLICATION_ERROR
    assert impairment.severity is Severity.MEDIUM
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [("autoscaling:group", GROUP)]
    assert impairment.scope == {"auto_scaling_group": GROUP}
    assert impairment.description == "Share of 5XX responses above 5%"


def test_metric_math_alarm_without_any_scope_tag_is_about_the_alarm_itself():
    # Given a managed metric-math alarm that names neither a group nor a target group
    inventory = world(**{METRIC_MATH_ARN: alarm_tags()})

    impairment = run(load_event(METRIC_MATH), inventory).model

    # Then it is still detected, with the alarm as the affected resource and default type/severity
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [
        ("cloudwatch:alarm", METRIC_MATH_ARN)
    ]
    assert impairment.impairment_type is ImpairmentType.SERVICE_DEGRADATION
    assert impairment.severity is Severity.HIGH


def test_auto_scaling_group_alarm_names_the_impaired_instances_of_the_group():
    # Given an alarm on a group metric, and a group with one instance failing its status checks
    event = copy.deepcopy(load_event(STATUS_CHECK))
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {
        "AutoScalingGroupName": GROUP
    }
    ok = {"InstanceState": {"Name": "running"}, "InstanceStatus": {"Status": "ok"}, "SystemStatus": {"Status": "ok"}}
    inventory = world()
    inventory.groups[GROUP] = ["i-1", "i-2", "i-3"]
    inventory.statuses = {
        "i-1": {"InstanceId": "i-1", **ok},
        "i-2": {"InstanceId": "i-2", **ok, "SystemStatus": {"Status": "impaired"}},
        "i-3": {"InstanceId": "i-3", **ok},
    }

    # When it is classified
    impairment = run(event, inventory).model

    # Then the impaired instance is the affected resource, within the group's scope
    assert [r.resource_id for r in impairment.affected_resources] == ["i-2"]
    assert impairment.scope["auto_scaling_group"] == GROUP
    assert impairment.metrics["impaired_instances"] == 1.0
    assert impairment.metrics["instances"] == 3.0


def test_composite_alarm_does_not_crash_and_is_about_the_tagged_group():
    # Given a composite alarm (alarmRule, no metrics) of the workload
    event = load_event(COMPOSITE)
    assert "metrics" not in event["detail"]["configuration"]

    # When it is classified
    outcome = run(event, world())

    # Then it is detected against the group its tags name
    assert outcome.detail_type == DETECTED
    assert [(r.resource_type, r.resource_id) for r in outcome.model.affected_resources] == [
        ("autoscaling:group", GROUP)
    ]
    assert outcome.model.signal.id == COMPOSITE_ARN


def test_unknown_tag_values_fall_back_to_defaults():
    inventory = world(**{STATUS_CHECK_ARN: alarm_tags(impairment_type="gremlins", severity="apocalyptic")})

    impairment = run(load_event(STATUS_CHECK), inventory).model

    assert impairment.impairment_type is ImpairmentType.SERVICE_DEGRADATION
    assert impairment.severity is Severity.HIGH


@pytest.mark.parametrize("reason_data", ["null", "[]", "42", '"text"', "not json"])
def test_reason_data_that_is_not_a_json_object_is_ignored(reason_data):
    # Given an alarm whose reasonData is not the usual JSON object
    event = copy.deepcopy(load_event(STATUS_CHECK))
    event["detail"]["state"]["reasonData"] = reason_data

    # When it is classified
    outcome = run(event, world())

    # Then the impairment is still detected, just without threshold and datapoint metrics
    assert outcome.detail_type == DETECTED
    assert outcome.model.metrics == {}


# --- timing, identity and clearing ----------------------------------------------------------


def test_mttd_is_detection_time_minus_the_alarm_state_timestamp():
    # Given the alarm changed state at T and the detector runs 7.25 s later
    event = load_event(STATUS_CHECK)
    fired = state_time(event)

    # When it is classified
    impairment = run(event, world(), now=fired + DETECTION_DELAY).model

    # Then the signal time is T, the detection time is T + 7.25 s and MTTD is 7.25 s
    assert impairment.signal.signal_time == fired
    assert impairment.detected_at == fired + DETECTION_DELAY
    assert impairment.mttd_seconds == 7.25


def test_mttd_is_never_negative_when_the_detector_clock_is_behind():
    event = load_event(STATUS_CHECK)

    impairment = run(event, world(), now=state_time(event) - timedelta(seconds=3)).model

    assert impairment.mttd_seconds == 0.0
    assert impairment.detected_at == state_time(event)


def test_redelivery_of_one_alarm_event_gives_the_same_impairment_id():
    # Given the same state change delivered twice, the second handled a minute later
    event = load_event(UNHEALTHY_HOSTS)
    first = run(event, world()).model
    second = run(event, world(), now=state_time(event) + timedelta(minutes=1)).model

    # Then both are the same impairment
    assert first.impairment_id == second.impairment_id


def test_the_next_alarm_of_the_same_alarm_is_a_new_impairment():
    event = load_event(UNHEALTHY_HOSTS)
    later = with_state(event, "ALARM", timestamp="2026-11-20T10:40:00.000+0000")

    assert run(event, world()).model.impairment_id != run(later, world()).model.impairment_id


def test_ok_after_alarm_clears_the_impairment_that_alarm_raised():
    # Given the ALARM of the unhealthy-hosts alarm was detected
    detected = run(load_event(UNHEALTHY_HOSTS), world()).model

    # When the same alarm returns to OK
    outcome = run(load_event(UNHEALTHY_HOSTS_OK), world())

    # Then "Impairment Cleared" carries the SAME impairment id, and when it cleared
    cleared = outcome.model
    assert outcome.detail_type == CLEARED
    assert isinstance(cleared, ImpairmentCleared)
    assert cleared.impairment_id == detected.impairment_id
    assert cleared.signal.signal_time == detected.signal.signal_time
    assert cleared.cleared_at == state_time(load_event(UNHEALTHY_HOSTS_OK))


def test_ok_after_a_later_alarm_does_not_clear_the_earlier_impairment():
    # Given a second ALARM of the same alarm, later than the first
    first = run(load_event(UNHEALTHY_HOSTS), world()).model
    ok_after_second = with_state(
        load_event(UNHEALTHY_HOSTS_OK), "OK", previous_timestamp="2026-11-20T10:40:00.000+0000"
    )

    # Then its OK clears the second impairment, not the first
    assert run(ok_after_second, world()).model.impairment_id != first.impairment_id


@pytest.mark.parametrize("previous", ["OK", "INSUFFICIENT_DATA"])
def test_ok_that_did_not_follow_an_alarm_clears_nothing(previous):
    event = with_state(load_event(UNHEALTHY_HOSTS_OK), "OK", previous=previous)

    outcome = run(event, world())

    assert outcome.model is None and outcome.detail_type is None


@pytest.mark.parametrize("name", [UNHEALTHY_HOSTS, STATUS_CHECK])
def test_insufficient_data_is_not_an_impairment(name):
    # Given a managed alarm going to INSUFFICIENT_DATA (missing data is not evidence of failure)
    event = with_state(load_event(name), "INSUFFICIENT_DATA", previous="ALARM")

    # Then nothing is emitted
    outcome = run(event, world())
    assert outcome.model is None
    assert "INSUFFICIENT_DATA" in outcome.reason


@pytest.mark.parametrize(
    "tags",
    [
        None,
        {},
        {"recovery:workload": "web-api"},
        {"recovery:managed": "false", "recovery:workload": "web-api"},
        {"recovery:managed": "true"},
    ],
    ids=["alarm-gone", "no-tags", "no-managed-tag", "managed-false", "no-workload"],
)
def test_alarms_that_did_not_opt_in_are_ignored(tags):
    # Given an alarm without the managed tag (or without a workload)
    inventory = world(**{STATUS_CHECK_ARN: tags})

    # When it goes to ALARM
    outcome = run(load_event(STATUS_CHECK), inventory)

    # Then it is none of our business
    assert outcome.model is None
    assert outcome.detail_type is None


def test_an_unmanaged_alarm_returning_to_ok_clears_nothing():
    inventory = world(**{UNHEALTHY_HOSTS_ARN: {"team": "payments"}})

    assert run(load_event(UNHEALTHY_HOSTS_OK), inventory).model is None


def test_a_custom_managed_tag_is_honoured():
    # Given a deployment that marks managed alarms with its own tag
    inventory = world(**{STATUS_CHECK_ARN: {"ops:auto-recover": "yes", "recovery:workload": "web-api"}})
    event = parse(load_event(STATUS_CHECK))
    now = event.detail.state.timestamp + DETECTION_DELAY

    # Then that tag opts the alarm in, and the default one alone would not
    assert classify(event, inventory, ("ops:auto-recover", "yes"), now, CONFIGURED).model is not None
    assert classify(event, inventory, MANAGED_TAG, now, CONFIGURED).model is None
