"""The alarm detector's Lambda handler under moto: real alarm tags, real target health, a real bus."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from core.contract import CLEARED, DETECTED, EVENT_SOURCE, ImpairmentCleared, ImpairmentDetected, Severity
from core.errors import PublishError
from core.publisher import EventPublisher
from detectors import alarm
from tests.builders import BUS_NAME, REGION, alarm_tags, build_workload, capture_bus, received, with_state
from tests.conftest import load_event
from tests.emf import datapoints, named

STATUS_CHECK = "cloudwatch-alarm-status-check-instance.json"
CANARY = "cloudwatch-alarm-canary.json"
UNHEALTHY_HOSTS = "cloudwatch-alarm-state-change-alarm.json"
UNHEALTHY_HOSTS_OK = "cloudwatch-alarm-state-change-ok.json"


def create_alarm(name: str, tags: dict[str, str] | None, dimensions: dict[str, str]) -> str:
    """A CloudWatch alarm in moto, named as in the sample event, with the given tags."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/EC2",
        MetricName="StatusCheckFailed",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    )
    return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The recovery bus with a rule copying its impairment events to a queue; the queue URL."""
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


def status_check_of(instance_id: str) -> dict[str, Any]:
    """The sample status-check alarm's state change, about `instance_id`."""
    event = copy.deepcopy(load_event(STATUS_CHECK))
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"InstanceId": instance_id}
    return event


def test_a_managed_status_check_alarm_puts_exactly_one_impairment_on_the_bus(bus, lambda_context):
    # Given an instance of web-api's group, and the sample status-check alarm about it, tagged
    # as managed by the web-api workload
    instance = build_workload().instance_ids()[0]
    event = status_check_of(instance)
    arn = create_alarm(
        event["detail"]["alarmName"],
        alarm_tags(impairment_type="instance_failure", severity="high"),
        {"InstanceId": instance},
    )
    assert arn == event["resources"][0]

    # When the alarm's state change reaches the detector
    response = alarm.handler(event, lambda_context)

    # Then exactly one "Impairment Detected" event is on the bus, and it is the one reported
    assert response["status"] == "published"
    events = received(bus)
    assert len(events) == 1
    assert events[0]["detail-type"] == DETECTED
    assert events[0]["source"] == EVENT_SOURCE
    impairment = ImpairmentDetected.model_validate(events[0]["detail"])
    assert response["detected"] == [impairment.impairment_id]
    assert [r.resource_id for r in impairment.affected_resources] == [instance]
    assert impairment.signal.id == arn


def test_unhealthy_hosts_alarm_names_the_stopped_instance_of_a_real_target_group(bus, lambda_context):
    # Given a workload of 3 instances behind a target group, one of them stopped
    workload = build_workload(desired=3)
    stopped = workload.instance_ids()[1]
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[stopped])
    # and the sample unhealthy-hosts alarm, pointing at that target group and tagged as managed
    event = copy.deepcopy(load_event(UNHEALTHY_HOSTS))
    dimensions = event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]
    dimensions["TargetGroup"] = workload.target_group_arn.split(":")[-1]
    create_alarm(
        event["detail"]["alarmName"],
        alarm_tags(impairment_type="instance_failure", auto_scaling_group=workload.group_name),
        {"TargetGroup": dimensions["TargetGroup"]},
    )

    # When the alarm fires
    alarm.handler(event, lambda_context)

    # Then the impairment is about the stopped instance only, scoped to the group and target group
    (published,) = received(bus)
    impairment = ImpairmentDetected.model_validate(published["detail"])
    assert [r.resource_id for r in impairment.affected_resources] == [stopped]
    assert impairment.scope == {
        "auto_scaling_group": workload.group_name,
        "target_group_arn": workload.target_group_arn,
    }
    assert impairment.severity is Severity.HIGH
    assert impairment.metrics["unhealthy_targets"] == 1.0


def test_ok_after_alarm_puts_a_cleared_event_with_the_same_id(bus, lambda_context):
    # Given the managed status-check alarm of an instance of web-api fired and was detected
    instance = build_workload().instance_ids()[0]
    alarm_event = status_check_of(instance)
    create_alarm(alarm_event["detail"]["alarmName"], alarm_tags(), {"InstanceId": instance})
    detected = alarm.handler(alarm_event, lambda_context)

    # When the same alarm returns to OK
    ok_event = with_state(
        alarm_event,
        "OK",
        timestamp="2026-11-20T11:09:05.000+0000",
        previous="ALARM",
        previous_timestamp=alarm_event["detail"]["state"]["timestamp"],
    )
    cleared = alarm.handler(ok_event, lambda_context)

    # Then the bus carries the detection, then its clearing, under one impairment id
    events = received(bus)
    assert [e["detail-type"] for e in events] == [DETECTED, CLEARED]
    (impairment_id,) = detected["detected"]
    assert ImpairmentCleared.model_validate(events[1]["detail"]).impairment_id == impairment_id
    assert cleared["cleared"] == [impairment_id]


def test_an_alarm_without_the_managed_tag_puts_nothing_on_the_bus(bus, lambda_context):
    # Given the status-check alarm exists but never opted in
    event = load_event(STATUS_CHECK)
    create_alarm(event["detail"]["alarmName"], {"team": "payments"}, {"InstanceId": "i-0abc123def4567890"})

    # When it fires
    response = alarm.handler(event, lambda_context)

    # Then it is ignored
    assert response["status"] == "ignored"
    assert received(bus) == []


def test_a_deleted_alarm_is_ignored(bus, lambda_context):
    # Given the event of an alarm that no longer exists (deleted since it fired)
    response = alarm.handler(load_event(STATUS_CHECK), lambda_context)

    assert response["status"] == "ignored"
    assert received(bus) == []


def _without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    node = broken
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return broken


def _with(event: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return broken


SAMPLE = load_event(STATUS_CHECK)
MALFORMED = {
    "empty-object": {},
    "a-list": [SAMPLE],
    "null": None,
    "a-string": "ALARM",
    "no-detail": _without(SAMPLE, "detail"),
    "detail-without-state": _without(SAMPLE, "detail", "state"),
    "garbage-state-timestamp": _with(SAMPLE, "yesterday-ish", "detail", "state", "timestamp"),
    "unknown-state-value": _with(SAMPLE, "ON_FIRE", "detail", "state", "value"),
    "empty-alarm-name": _with(SAMPLE, "", "detail", "alarmName"),
    "metrics-not-a-list": _with(SAMPLE, {"m1": 1}, "detail", "configuration", "metrics"),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_rejected_without_raising_and_publishes_nothing(bus, lambda_context, event):
    # Given a managed alarm, so that a parse that got through would publish
    create_alarm(SAMPLE["detail"]["alarmName"], alarm_tags(), {"InstanceId": "i-0abc123def4567890"})

    # When the detector receives something that is not a valid alarm state change
    response = alarm.handler(event, lambda_context)

    # Then it says so, without raising (a retry could never succeed), and the bus stays empty
    assert response["status"] == "rejected"
    assert received(bus) == []


class RefusingEvents:
    """An EventBridge client whose PutEvents rejects every entry."""

    def put_events(self, Entries):  # boto3's parameter name
        return {
            "FailedEntryCount": len(Entries),
            "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} for _ in Entries],
        }


def test_a_detection_the_bus_refuses_is_raised_so_lambda_retries_it(bus, lambda_context):
    # Given a managed alarm of web-api's instance and a bus that refuses the event
    instance = build_workload().instance_ids()[0]
    event = status_check_of(instance)
    create_alarm(event["detail"]["alarmName"], alarm_tags(), {"InstanceId": instance})
    publisher = EventPublisher(BUS_NAME, client=RefusingEvents())

    # When the alarm fires, then the failure is not swallowed
    with pytest.raises(PublishError):
        alarm.handler(event, lambda_context, publisher=publisher)


# --- the workload comes from the resources, not from the alarm's tag alone ----------------------


def test_an_alarm_tagged_for_orders_about_a_web_api_instance_is_refused(bus, lambda_context, caplog, capsys):
    # Given an instance of web-api's group (the group carries recovery:workload=web-api), and an
    # alarm about it tagged recovery:workload=orders
    instance = build_workload("web-api").instance_ids()[0]
    event = status_check_of(instance)
    arn = create_alarm(
        event["detail"]["alarmName"], alarm_tags("orders", impairment_type="instance_failure"), {"InstanceId": instance}
    )

    # When the alarm fires
    response = alarm.handler(event, lambda_context)

    # Then nothing reaches the bus: orders' guardrails must not decide about web-api's instance
    assert response["status"] == "refused"
    assert response["refusal"] == "workload_mismatch"
    assert received(bus) == []
    # and a structured error names the alarm, the tag's workload and the resource's
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.alarm_arn == arn
    assert (error.tag_workload, error.resource, error.resource_workload) == (
        "orders",
        f"ec2:instance:{instance}",
        "web-api",
    )
    output = capsys.readouterr().out
    assert [p.value for p in named(datapoints(output), "SignalsRefused", reason="workload_mismatch")] == [1.0]


def test_a_group_without_a_workload_tag_resolves_to_the_workload_the_configuration_declares(
    bus, lambda_context, monkeypatch
):
    # Given web-api's group carries the managed tag but no recovery:workload tag, and the
    # deployment's configuration declares it for web-api (WORKLOAD_GROUPS, as the stack writes it)
    workload = build_workload("web-api")
    boto3.client("autoscaling", region_name=REGION).delete_tags(
        Tags=[{"ResourceId": workload.group_name, "ResourceType": "auto-scaling-group", "Key": "recovery:workload"}]
    )
    monkeypatch.setenv("WORKLOAD_GROUPS", json.dumps({workload.group_name: "web-api"}))
    instance = workload.instance_ids()[0]
    event = status_check_of(instance)

    # When an alarm tagged orders fires about its instance, it is refused; tagged web-api, published
    create_alarm(event["detail"]["alarmName"], alarm_tags("orders"), {"InstanceId": instance})
    assert alarm.handler(event, lambda_context)["status"] == "refused"
    create_alarm(event["detail"]["alarmName"], alarm_tags("web-api"), {"InstanceId": instance})
    assert alarm.handler(event, lambda_context)["status"] == "published"
    assert [ImpairmentDetected.model_validate(e["detail"]).workload for e in received(bus)] == ["web-api"]


def test_an_instance_of_no_protected_group_is_refused(bus, lambda_context):
    # Given an instance of a group that never opted in (no managed tag), and an alarm about it
    instance = build_workload("legacy", managed=False).instance_ids()[0]
    event = status_check_of(instance)
    create_alarm(event["detail"]["alarmName"], alarm_tags("web-api"), {"InstanceId": instance})

    response = alarm.handler(event, lambda_context)

    assert response["status"] == "refused"
    assert response["refusal"] == "resource_unprotected"
    assert received(bus) == []


def test_a_canary_alarm_is_resolved_by_the_configured_workloads(bus, lambda_context, monkeypatch):
    # Given the configuration declares the canary web-api-home for web-api (WORKLOAD_RESOURCES)
    monkeypatch.setenv("WORKLOAD_RESOURCES", json.dumps({"web-api": ["synthetics:canary:web-api-home"], "orders": []}))
    event = load_event(CANARY)

    # When its alarm, tagged orders, fires: refused; tagged web-api: published
    create_alarm(event["detail"]["alarmName"], alarm_tags("orders"), {"CanaryName": "web-api-home"})
    assert alarm.handler(event, lambda_context)["status"] == "refused"
    create_alarm(event["detail"]["alarmName"], alarm_tags("web-api"), {"CanaryName": "web-api-home"})
    assert alarm.handler(event, lambda_context)["status"] == "published"

    (published,) = received(bus)
    impairment = ImpairmentDetected.model_validate(published["detail"])
    assert (impairment.workload, impairment.affected_resources[0].resource_id) == ("web-api", "web-api-home")


def test_an_alarm_ignored_by_the_detector_is_counted(bus, lambda_context, capsys):
    # Given the status-check alarm exists but never opted in
    event = load_event(STATUS_CHECK)
    create_alarm(event["detail"]["alarmName"], {"team": "payments"}, {"InstanceId": "i-0abc123def4567890"})

    alarm.handler(event, lambda_context)

    assert [p.value for p in named(datapoints(capsys.readouterr().out), "SignalsIgnored")] == [1.0]


def test_a_health_check_alarm_forwarded_from_us_east_1_is_read_there(mocked_aws, monkeypatch, lambda_context):
    """Route 53 health check alarms of a workload in us-west-2 are in us-east-1 (its metrics are
    only there); their state changes are forwarded to us-west-2's default bus
    (infra/route53_alarms.py), with the event's region and the alarm's ARN still us-east-1."""
    from core import aws

    # Given the alarm detector of the us-west-2 stack, and its recovery bus copied to a queue
    standby = "us-west-2"
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, standby)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    aws.reset()
    events = boto3.client("events", region_name=standby)
    events.create_event_bus(Name=BUS_NAME)
    sqs = boto3.client("sqs", region_name=standby)
    url = sqs.create_queue(QueueName="capture")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="capture", EventBusName=BUS_NAME, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
    events.put_targets(Rule="capture", EventBusName=BUS_NAME, Targets=[{"Id": "queue", "Arn": queue_arn}])
    # and web-api's managed health check alarm in us-east-1, of a health check it declares
    event = load_event("cloudwatch-alarm-route53-health-check.json")
    assert event["region"] == "us-east-1"
    check = event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["HealthCheckId"]
    monkeypatch.setenv("WORKLOAD_RESOURCES", json.dumps({"web-api": [f"route53:healthcheck:{check}"]}))
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    cloudwatch.put_metric_alarm(
        AlarmName=event["detail"]["alarmName"],
        Namespace="AWS/Route53",
        MetricName="HealthCheckStatus",
        Statistic="Minimum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="LessThanThreshold",
        Tags=[{"Key": k, "Value": v} for k, v in alarm_tags(impairment_type="network_issue").items()],
    )

    # When its forwarded state change reaches the detector in us-west-2
    response = alarm.handler(event, lambda_context)

    # Then the detector read the alarm's tags in us-east-1 and put a network_issue on its own bus
    assert response["status"] == "published", response
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    (impairment,) = [ImpairmentDetected.model_validate(json.loads(m["Body"])["detail"]) for m in messages]
    assert impairment.impairment_type.value == "network_issue"
    assert impairment.signal.id == event["resources"][0]


def test_an_alarm_of_the_functions_own_region_is_read_with_its_own_client(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert alarm._other_region("arn:aws:cloudwatch:us-west-2:123456789012:alarm:web-api-cpu") is None
    assert alarm._other_region("arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-api-route53-x") == "us-east-1"
    assert alarm._other_region("web-api-cpu") is None  # not an ARN: the function's own region


def test_a_group_alarm_reads_its_group_once_to_find_and_resolve_the_impaired_instance(bus, lambda_context):
    # Given a workload of 3 instances, one of them stopped, and an alarm on its group's metric
    from core import aws

    workload = build_workload(desired=3)
    stopped = workload.instance_ids()[2]
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[stopped])
    event = status_check_of(stopped)
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {
        "AutoScalingGroupName": workload.group_name
    }
    create_alarm(event["detail"]["alarmName"], alarm_tags(), {"AutoScalingGroupName": workload.group_name})
    calls: list[str] = []
    boto3.DEFAULT_SESSION.events.register(
        "before-call.auto-scaling", lambda model, **_: calls.append(model.name), unique_id="count-asg-calls"
    )
    aws.reset()  # clients take the session's hooks when they are made

    # When the alarm fires
    try:
        alarm.handler(event, lambda_context)
    finally:
        boto3.DEFAULT_SESSION.events.unregister("before-call.auto-scaling", unique_id="count-asg-calls")
        aws.reset()

    # Then the stopped instance is the impairment's, its workload resolved from the one group read
    (published,) = received(bus)
    impairment = ImpairmentDetected.model_validate(published["detail"])
    assert [r.resource_id for r in impairment.affected_resources] == [stopped]
    assert calls == ["DescribeAutoScalingGroups"]
