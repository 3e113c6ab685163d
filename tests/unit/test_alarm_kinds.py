"""The standard alarm kinds of a workload, as the alarm detector sees them: each alarm's state
change (in the shape CloudWatch sends for that metric) becomes an impairment about the right
resource, with the type and severity the alarm's tags give it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from jsonschema import Draft4Validator

from core.contract import DETECTED, EVENT_SOURCE, ImpairmentDetected, ImpairmentType, Severity, json_schema
from detectors.alarm import AlarmStateChangeEvent, classify
from detectors.resolve import Configured, resource_key
from tests.builders import MANAGED_TAG, FakeInventory, alarm_tags, target
from tests.conftest import load_event

ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
GROUP = "web-api-asg"
TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-api/73e2d6bc24d8a067"
NLB_TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout/1a2b3c4d5e6f7a8b"
CHECKOUT_SERVICE_ARN = "arn:aws:ecs:us-east-1:123456789012:service/checkout/checkout-api"
HEALTH_CHECK = "8f2c1d3e-1111-2222-3333-444455556666"

# The tags the onboarding construct puts on each alarm (infra/constructs/workloads.py).
WEB_API_SCOPE = {"auto_scaling_group": GROUP, "target_group_arn": TARGET_GROUP_ARN}
CHECKOUT_SCOPE = {"ecs_cluster": "checkout", "ecs_service": "checkout-api"}
SHOP_SCOPE = {"eks_cluster": "prod", "eks_nodegroup": "workers"}


def tags(impairment_type: str, severity: str, workload: str = "web-api", **scope: str) -> dict[str, str]:
    return alarm_tags(workload, impairment_type=impairment_type, severity=severity, **scope)


def web_api(impairment_type: str, severity: str) -> dict[str, str]:
    return tags(impairment_type, severity, **WEB_API_SCOPE)


def checkout(impairment_type: str, severity: str, **scope: str) -> dict[str, str]:
    return tags(impairment_type, severity, "checkout", **scope)


# file -> (alarm tags, expected type, severity, affected resources, scope)
KINDS: dict[str, tuple[dict[str, str], ImpairmentType, Severity, list[tuple[str, str]], dict[str, str]]] = {
    "cloudwatch-alarm-canary.json": (
        web_api("network_issue", "high"),
        ImpairmentType.NETWORK_ISSUE,
        Severity.HIGH,
        [("synthetics:canary", "web-api-home")],
        WEB_API_SCOPE,
    ),
    "cloudwatch-alarm-route53-health-check.json": (
        web_api("network_issue", "high"),
        ImpairmentType.NETWORK_ISSUE,
        Severity.HIGH,
        [("route53:healthcheck", HEALTH_CHECK)],
        WEB_API_SCOPE,
    ),
    "cloudwatch-alarm-ecs-running-tasks.json": (
        checkout("service_degradation", "high", ecs_cluster="checkout", ecs_service="checkout-api"),
        ImpairmentType.SERVICE_DEGRADATION,
        Severity.HIGH,
        [("ecs:service", CHECKOUT_SERVICE_ARN)],
        CHECKOUT_SCOPE,
    ),
    "cloudwatch-alarm-rds-free-storage.json": (
        checkout("database_issue", "high"),
        ImpairmentType.DATABASE_ISSUE,
        Severity.HIGH,
        [("rds:db", "orders-db")],
        {"db_instance": "orders-db"},
    ),
    "cloudwatch-alarm-latency-anomaly.json": (
        web_api("application_error", "medium"),
        ImpairmentType.APPLICATION_ERROR,
        Severity.MEDIUM,
        [("autoscaling:group", GROUP)],
        WEB_API_SCOPE,
    ),
    "cloudwatch-alarm-5xx-rate-target-group.json": (
        web_api("application_error", "high"),
        ImpairmentType.APPLICATION_ERROR,
        Severity.HIGH,
        [("autoscaling:group", GROUP)],
        WEB_API_SCOPE,
    ),
    "cloudwatch-alarm-latency-p99.json": (
        web_api("application_error", "medium"),
        ImpairmentType.APPLICATION_ERROR,
        Severity.MEDIUM,
        [("autoscaling:group", GROUP)],
        WEB_API_SCOPE,
    ),
    "cloudwatch-alarm-cpu-group.json": (
        web_api("resource_exhaustion", "medium"),
        ImpairmentType.RESOURCE_EXHAUSTION,
        Severity.MEDIUM,
        [("autoscaling:group", GROUP)],
        WEB_API_SCOPE,
    ),
    "cloudwatch-alarm-memory-agent.json": (
        web_api("resource_exhaustion", "medium"),
        ImpairmentType.RESOURCE_EXHAUSTION,
        Severity.MEDIUM,
        [("autoscaling:group", GROUP)],
        WEB_API_SCOPE,
    ),
    # Container Insights names the cluster alone: the recovery acts on the workload's node group.
    "cloudwatch-alarm-eks-failed-nodes.json": (
        tags("instance_failure", "high", "shop", **SHOP_SCOPE),
        ImpairmentType.INSTANCE_FAILURE,
        Severity.HIGH,
        [("eks:nodegroup", "prod/workers")],
        SHOP_SCOPE,
    ),
    "cloudwatch-alarm-nlb-unhealthy-hosts.json": (
        checkout("service_degradation", "high", target_group_arn=NLB_TARGET_GROUP_ARN),
        ImpairmentType.SERVICE_DEGRADATION,
        Severity.HIGH,
        [("ec2:instance", "i-00000000000000064")],
        {"target_group_arn": NLB_TARGET_GROUP_ARN},
    ),
}


# What the configuration declares for each workload (the stack writes it as WORKLOAD_RESOURCES).
CONFIGURED = Configured.from_declared(
    {
        "web-api": [
            resource_key("elasticloadbalancing:targetgroup", TARGET_GROUP_ARN),
            resource_key("synthetics:canary", "web-api-home"),
            resource_key("route53:healthcheck", HEALTH_CHECK),
        ],
        "checkout": [
            resource_key("elasticloadbalancing:targetgroup", NLB_TARGET_GROUP_ARN),
            resource_key("ecs:service", CHECKOUT_SERVICE_ARN),
            resource_key("rds:db", "orders-db"),
        ],
        "shop": [resource_key("eks:nodegroup", "prod/workers")],
    }
)


def healthy_fleet() -> list[dict[str, Any]]:
    return [target(f"i-{n:017x}", "healthy") for n in range(4)]


def world(file: str, alarm_tags_: dict[str, str]) -> FakeInventory:
    """The alarm of `file` tagged as given; every web-api target healthy; one of the checkout
    NLB's four targets unhealthy; the group's instances all passing their status checks."""
    ok = {"InstanceState": {"Name": "running"}, "InstanceStatus": {"Status": "ok"}, "SystemStatus": {"Status": "ok"}}
    event = load_event(file)
    return FakeInventory(
        tags={event["resources"][0]: alarm_tags_},
        targets={
            TARGET_GROUP_ARN: healthy_fleet(),
            NLB_TARGET_GROUP_ARN: [*healthy_fleet()[:3], target("i-00000000000000064", "unhealthy")],
        },
        groups={GROUP: ["i-1", "i-2"]},
        statuses={"i-1": {"InstanceId": "i-1", **ok}, "i-2": {"InstanceId": "i-2", **ok}},
        # the group is web-api's; the NLB's instance is in checkout's group
        owners={GROUP: "web-api", "i-00000000000000064": "checkout"},
    )


def run(event: dict[str, Any], inventory: FakeInventory):
    parsed = AlarmStateChangeEvent.model_validate(event)
    return classify(parsed, inventory, MANAGED_TAG, parsed.detail.state.timestamp + timedelta(seconds=4), CONFIGURED)


@pytest.mark.parametrize("file", sorted(KINDS))
def test_each_alarm_kind_is_an_impairment_of_the_resource_it_watches(file):
    # Given the state change of one of the standard alarms, tagged as the construct tags it
    alarm_tags_, impairment_type, severity, resources, scope = KINDS[file]
    event = load_event(file)

    # When the alarm detector classifies it
    outcome = run(event, world(file, alarm_tags_))

    # Then it is an impairment of that type and severity, about the resource the metric is about
    impairment = outcome.model
    assert outcome.detail_type == DETECTED
    assert isinstance(impairment, ImpairmentDetected)
    assert impairment.impairment_type is impairment_type
    assert impairment.severity is severity
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == resources
    assert impairment.scope == scope
    assert impairment.signal.id == event["resources"][0]
    # and it is a valid contract event as it would be put on the bus
    bus_event = {"detail-type": DETECTED, "source": EVENT_SOURCE, "detail": json.loads(impairment.model_dump_json())}
    assert list(Draft4Validator(json_schema()).iter_errors(bus_event)) == []


@pytest.mark.parametrize(
    "file",
    [
        "cloudwatch-alarm-canary.json",
        "cloudwatch-alarm-route53-health-check.json",
        "cloudwatch-alarm-ecs-running-tasks.json",
        "cloudwatch-alarm-rds-free-storage.json",
        "cloudwatch-alarm-latency-anomaly.json",
        "cloudwatch-alarm-5xx-rate-target-group.json",
        "cloudwatch-alarm-eks-failed-nodes.json",
    ],
)
def test_alarms_about_one_named_resource_or_a_rate_look_nothing_else_up(file):
    # Given an alarm whose dimensions name its resource, or a metric-math alarm (a rate or a
    # learned band over the whole target group, which no single target explains)
    inventory = world(file, KINDS[file][0])

    # When it is classified
    run(load_event(file), inventory)

    # Then the detector reads the alarm's tags and the workload of what they name, nothing more
    # (no target or instance look-ups)
    assert [call[0] for call in inventory.calls if call[0] != "workloads_of"] == ["alarm_tags"]


def test_anomaly_band_alarm_reports_the_latest_datapoint_and_no_fixed_threshold():
    # Given the latency anomaly alarm, whose reasonData carries bands instead of a threshold
    file = "cloudwatch-alarm-latency-anomaly.json"

    impairment = run(load_event(file), world(file, KINDS[file][0])).model

    assert impairment.metrics == {"latest_datapoint": 1.84}


def test_rds_free_storage_reports_bytes_free_and_the_threshold():
    file = "cloudwatch-alarm-rds-free-storage.json"

    impairment = run(load_event(file), world(file, KINDS[file][0])).model

    assert impairment.metrics == {"threshold": 5368709120.0, "latest_datapoint": 4.1e9}


def test_a_rate_alarm_of_a_workload_without_a_group_is_about_its_ecs_service():
    # Given the 5XX rate alarm of a load balancer in front of an ECS service (no Auto Scaling group)
    file = "cloudwatch-alarm-5xx-rate-target-group.json"
    alarm_tags_ = checkout("application_error", "high", target_group_arn=NLB_TARGET_GROUP_ARN, **CHECKOUT_SCOPE)

    impairment = run(load_event(file), world(file, alarm_tags_)).model

    # Then the service is what a recovery acts on, with the target group in the scope
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [
        ("ecs:service", CHECKOUT_SERVICE_ARN)
    ]
    assert impairment.scope == {"target_group_arn": NLB_TARGET_GROUP_ARN, **CHECKOUT_SCOPE}


def test_the_ecs_alarm_and_the_ecs_detector_name_a_service_alike():
    # Signals about one service correlate only when both detectors give it the same key.
    from detectors.ecs import service_arn

    file = "cloudwatch-alarm-ecs-running-tasks.json"
    impairment = run(load_event(file), world(file, KINDS[file][0])).model

    assert impairment.affected_resources[0].resource_id == service_arn(
        "arn:aws:ecs:us-east-1:123456789012:cluster/checkout", "checkout-api"
    )


def test_cpu_alarm_of_a_group_names_an_instance_that_fails_its_status_checks():
    # Given the group's CPU alarm and one instance of the group failing its status checks
    file = "cloudwatch-alarm-cpu-group.json"
    inventory = world(file, KINDS[file][0])
    inventory.statuses["i-2"] = {**inventory.statuses["i-2"], "InstanceStatus": {"Status": "impaired"}}

    impairment = run(load_event(file), inventory).model

    # Then that instance is the affected resource (the group's exhaustion shows on it first)
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [("ec2:instance", "i-2")]
    assert impairment.impairment_type is ImpairmentType.RESOURCE_EXHAUSTION


def test_an_eks_alarm_tagged_for_another_workload_is_refused():
    # The node group is shop's (the configuration declares it): an alarm about it tagged for
    # web-api must not run web-api's guardrails on shop's nodes.
    file = "cloudwatch-alarm-eks-failed-nodes.json"

    outcome = run(load_event(file), world(file, tags("instance_failure", "high", "web-api", **SHOP_SCOPE)))

    assert outcome.model is None and outcome.refusal is not None
    assert outcome.refusal.kind == "workload_mismatch" and outcome.refusal.resource == "eks:nodegroup:prod/workers"
