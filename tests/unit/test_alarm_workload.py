"""The alarm's workload tag does not choose the workload on its own: the resources the alarm names
decide, and an alarm whose tag they contradict is refused (detectors/alarm_workload.py's docstring)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from core.contract import ImpairmentDetected
from detectors.alarm import AlarmStateChangeEvent, Named, classify
from detectors.resolve import Configured, resource_key
from tests.builders import MANAGED_TAG, FakeInventory, alarm_tags, target
from tests.conftest import load_event

ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
STATUS_CHECK = "cloudwatch-alarm-status-check-instance.json"
UNHEALTHY_HOSTS = "cloudwatch-alarm-state-change-alarm.json"
METRIC_MATH = "cloudwatch-alarm-metric-math.json"
CANARY = "cloudwatch-alarm-canary.json"
ECS_RUNNING_TASKS = "cloudwatch-alarm-ecs-running-tasks.json"
RDS_FREE_STORAGE = "cloudwatch-alarm-rds-free-storage.json"

INSTANCE = "i-0abc123def4567890"
GROUP = "web-api-asg"
TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-api/73e2d6bc24d8a067"
SERVICE_ARN = "arn:aws:ecs:us-east-1:123456789012:service/checkout/checkout-api"

# The deployment's configuration: web-api (a group, its target group, a canary), checkout (an ECS
# service), orders (a database).
CONFIGURED = Configured.from_declared(
    {
        "web-api": [
            resource_key("elasticloadbalancing:targetgroup", TARGET_GROUP_ARN),
            resource_key("synthetics:canary", "web-api-home"),
        ],
        "checkout": [resource_key("ecs:service", SERVICE_ARN)],
        "orders": [resource_key("rds:db", "orders-db")],
    }
)


def run(event: dict[str, Any], inventory: FakeInventory, configured: Configured = CONFIGURED):
    parsed = AlarmStateChangeEvent.model_validate(event)
    return classify(parsed, inventory, MANAGED_TAG, parsed.detail.state.timestamp + timedelta(seconds=5), configured)


def alarm_of(file: str, workload: str, owners: dict[str, str] | None = None, **scope: str) -> FakeInventory:
    """The sample alarm of `file`, tagged for `workload`; `owners`: what the look-ups resolve."""
    arn = load_event(file)["resources"][0]
    return FakeInventory(
        tags={arn: alarm_tags(workload, **scope)},
        targets={TARGET_GROUP_ARN: [target("i-0aaaaaaaaaaaaaaaa", "healthy"), target(INSTANCE, "unhealthy")]},
        owners=owners or {},
    )


def looked_up(inventory: FakeInventory) -> list[str]:
    return [key for name, keys in inventory.calls if name == "workloads_of" for key in keys.split(",")]


# --- the issue: another workload's tag on web-api's instance -------------------------------


def test_an_alarm_tagged_for_another_workload_about_its_instance_is_refused():
    # Given an alarm tagged recovery:workload=orders naming an instance of web-api's group
    inventory = alarm_of(STATUS_CHECK, "orders", owners={INSTANCE: "web-api"})

    # When it goes to ALARM
    outcome = run(load_event(STATUS_CHECK), inventory)

    # Then nothing is published (orders' guardrails must not apply to web-api's instance), and
    # the refusal names the tag's workload, the resource and the resource's workload
    assert outcome.model is None and outcome.detail_type is None
    refusal = outcome.refusal
    assert refusal is not None
    assert refusal.kind == "workload_mismatch"
    assert (refusal.tag_workload, refusal.resource, refusal.resource_workload) == (
        "orders",
        f"ec2:instance:{INSTANCE}",
        "web-api",
    )
    assert "orders" in outcome.reason and "web-api" in outcome.reason


def test_the_same_alarm_tagged_for_the_instance_s_own_workload_is_published():
    inventory = alarm_of(STATUS_CHECK, "web-api", owners={INSTANCE: "web-api"})

    outcome = run(load_event(STATUS_CHECK), inventory)

    assert isinstance(outcome.model, ImpairmentDetected)
    assert outcome.model.workload == "web-api"
    assert outcome.refusal is None
    assert looked_up(inventory) == [f"ec2:instance:{INSTANCE}"]


def test_the_group_the_scope_names_is_checked_too():
    # Given a metric-math alarm tagged web-api whose scope names a group that is orders'
    inventory = alarm_of(METRIC_MATH, "web-api", owners={"orders-asg": "orders"}, auto_scaling_group="orders-asg")

    outcome = run(load_event(METRIC_MATH), inventory)

    assert outcome.refusal is not None and outcome.refusal.kind == "workload_mismatch"
    assert outcome.refusal.resource == "autoscaling:group:orders-asg"


def test_every_named_resource_must_agree():
    # Given the unhealthy-hosts alarm tagged web-api: the target group is web-api's (configured)
    # but the unhealthy target is an instance of orders' group
    inventory = alarm_of(UNHEALTHY_HOSTS, "web-api", owners={INSTANCE: "orders"})

    outcome = run(load_event(UNHEALTHY_HOSTS), inventory)

    assert outcome.refusal is not None
    assert (outcome.refusal.resource, outcome.refusal.resource_workload) == (f"ec2:instance:{INSTANCE}", "orders")


def test_a_target_group_is_resolved_by_the_configuration_without_a_look_up():
    # Given the unhealthy-hosts alarm tagged orders, every target healthy again: it is about the
    # target group, which the configuration declares for web-api
    inventory = alarm_of(UNHEALTHY_HOSTS, "orders")
    inventory.targets[TARGET_GROUP_ARN] = [target("i-0aaaaaaaaaaaaaaaa", "healthy")]

    outcome = run(load_event(UNHEALTHY_HOSTS), inventory)

    assert outcome.refusal is not None and outcome.refusal.kind == "workload_mismatch"
    assert outcome.refusal.resource == resource_key("elasticloadbalancing:targetgroup", TARGET_GROUP_ARN)
    assert looked_up(inventory) == []


# --- resources that should belong to a group -------------------------------------------------


def test_an_instance_that_belongs_to_no_protected_workload_is_refused_whatever_the_tag():
    # Given the alarm is tagged for a configured workload, but its instance is in no managed
    # group and carries no managed tag: nothing protects it, so nothing may act on it
    inventory = alarm_of(STATUS_CHECK, "web-api", owners={})

    outcome = run(load_event(STATUS_CHECK), inventory)

    assert outcome.refusal is not None
    assert outcome.refusal.kind == "resource_unprotected"
    assert outcome.refusal.resource == f"ec2:instance:{INSTANCE}"


def test_an_unprotected_group_is_refused_too():
    inventory = alarm_of(METRIC_MATH, "web-api", owners={}, auto_scaling_group="someone-elses-asg")

    outcome = run(load_event(METRIC_MATH), inventory)

    assert outcome.refusal is not None and outcome.refusal.kind == "resource_unprotected"


# --- resources that legitimately have no group -------------------------------------------------


def test_an_alarm_naming_nothing_but_itself_is_published_for_a_configured_workload():
    # Given a metric-math alarm with no scope tags: it names only itself
    inventory = alarm_of(METRIC_MATH, "web-api")

    outcome = run(load_event(METRIC_MATH), inventory)

    assert isinstance(outcome.model, ImpairmentDetected)
    assert [r.resource_type for r in outcome.model.affected_resources] == ["cloudwatch:alarm"]


def test_an_alarm_naming_nothing_but_itself_is_refused_for_a_workload_no_one_configured():
    inventory = alarm_of(METRIC_MATH, "shadow-workload")

    outcome = run(load_event(METRIC_MATH), inventory)

    assert outcome.model is None
    assert outcome.refusal is not None and outcome.refusal.kind == "unknown_workload"
    assert outcome.refusal.tag_workload == "shadow-workload"


@pytest.mark.parametrize(("workload", "published"), [("web-api", True), ("orders", False)])
def test_a_canary_is_resolved_by_the_configuration(workload, published):
    inventory = alarm_of(CANARY, workload)

    outcome = run(load_event(CANARY), inventory)

    assert (outcome.model is not None) is published
    if not published:
        assert outcome.refusal.resource == "synthetics:canary:web-api-home"
        assert outcome.refusal.resource_workload == "web-api"


def test_a_canary_no_workload_declares_is_published_for_a_configured_workload_only():
    unconfigured = Configured.from_declared({"web-api": []})

    assert run(load_event(CANARY), alarm_of(CANARY, "web-api"), unconfigured).model is not None
    refused = run(load_event(CANARY), alarm_of(CANARY, "ghost"), unconfigured)
    assert refused.model is None and refused.refusal.kind == "unknown_workload"


@pytest.mark.parametrize(("workload", "published"), [("checkout", True), ("orders", False)])
def test_an_ecs_service_the_configuration_declares_needs_no_look_up(workload, published):
    inventory = alarm_of(ECS_RUNNING_TASKS, workload, ecs_cluster="checkout", ecs_service="checkout-api")

    outcome = run(load_event(ECS_RUNNING_TASKS), inventory)

    assert (outcome.model is not None) is published
    assert looked_up(inventory) == []


def test_an_ecs_service_the_configuration_does_not_declare_is_resolved_by_its_tags():
    # Given the service's own tags say it is payments'
    configured = Configured.from_declared({"checkout": [], "payments": []})
    inventory = alarm_of(ECS_RUNNING_TASKS, "checkout", owners={SERVICE_ARN: "payments"})

    outcome = run(load_event(ECS_RUNNING_TASKS), inventory, configured)

    assert outcome.refusal is not None and outcome.refusal.resource_workload == "payments"
    assert looked_up(inventory) == [resource_key("ecs:service", SERVICE_ARN)]


def test_a_database_the_configuration_does_not_declare_is_looked_up_by_its_arn():
    # Given a free-storage alarm of a database the configuration does not declare
    configured = Configured.from_declared({"orders": []})
    seen: list[Named] = []

    class Recording(FakeInventory):
        def workloads_of(self, resources):
            seen.extend(resources)
            return super().workloads_of(resources)

    inventory = Recording(tags={load_event(RDS_FREE_STORAGE)["resources"][0]: alarm_tags("orders")})
    inventory.owners = {"orders-db": "orders"}

    outcome = run(load_event(RDS_FREE_STORAGE), inventory, configured)

    # Then its tags are read by the ARN of the DB instance, and they agree
    assert outcome.model is not None
    assert [(r.resource_type, r.arn) for r in seen] == [("rds:db", "arn:aws:rds:us-east-1:123456789012:db:orders-db")]


def test_a_resource_two_workloads_declare_belongs_to_both():
    shared = Configured.from_declared(
        {
            "web-api": [resource_key("synthetics:canary", "web-api-home")],
            "web-api-admin": [resource_key("synthetics:canary", "web-api-home")],
        }
    )

    assert run(load_event(CANARY), alarm_of(CANARY, "web-api-admin"), shared).model is not None
    assert run(load_event(CANARY), alarm_of(CANARY, "web-api"), shared).model is not None


# --- what is not checked --------------------------------------------------------------------


def test_an_ignored_alarm_looks_nothing_up():
    inventory = alarm_of(STATUS_CHECK, "orders", owners={INSTANCE: "web-api"})
    event = copy.deepcopy(load_event(STATUS_CHECK))
    event["detail"]["state"]["value"] = "INSUFFICIENT_DATA"

    outcome = run(event, inventory)

    assert outcome.model is None and outcome.refusal is None
    assert looked_up(inventory) == []


def test_resource_keys_are_short_and_the_same_for_an_arn_and_its_configuration():
    assert resource_key("elasticloadbalancing:targetgroup", TARGET_GROUP_ARN) == (
        "elasticloadbalancing:targetgroup:web-api/73e2d6bc24d8a067"
    )
    assert resource_key("ecs:service", SERVICE_ARN) == "ecs:service:checkout/checkout-api"
    assert resource_key("rds:cluster", "ledger-cluster") == "rds:cluster:ledger-cluster"
