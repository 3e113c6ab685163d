"""The whole configuration is validated at once: every problem, of every layer, with its field's
path and a message in the author's terms (infra/validation.py, core/problems.py)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from infra.config import ConfigError, validate
from infra.validation import check
from tests.conftest import cdk_context

Raw = dict[str, Any]
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-api/73e2d6bc24d8a067"


def shipped() -> Raw:
    return copy.deepcopy(cdk_context()["recovery"])


def plan(name: str, *steps: Raw, **match: Any) -> Raw:
    return {"name": name, "match": {"impairment_types": ["service_degradation"], **match}, "steps": list(steps)}


def problems(raw: Any) -> dict[str, str]:
    """path -> message of every problem; each message is in the author's terms."""
    found = check(raw).problems
    for problem in found:
        assert "Value error" not in problem.message and "should match pattern" not in problem.message, problem
        assert not re.search(r"\^|\$'|\[0-9\]|\\d", problem.message), f"a regular expression leaks: {problem}"
    return {p.path: p.message for p in found}


@pytest.mark.parametrize(
    ("step", "path", "expected"),
    [
        (
            {"action": "redirect_traffic", "params": {"kind": "deregister_targets", "target_group_arn": "web-api-tg"}},
            "plans.8.steps.0.params.target_group_arn",
            "must be a target group ARN like arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID "
            "(got 'web-api-tg')",
        ),
        (
            {
                "action": "redirect_traffic",
                "params": {"kind": "zonal_shift", "load_balancer_arn": TG},  # a target group's, not a balancer's
            },
            "plans.8.steps.0.params.load_balancer_arn",
            "must be an Application or Network Load Balancer ARN like",
        ),
        (
            {"action": "redirect_traffic", "params": {"kind": "zonal_shift", "expires_in": "2 hours"}},
            "plans.8.steps.0.params.expires_in",
            "must be a duration like 30m or 2h (got '2 hours')",
        ),
        (
            {"action": "redirect_traffic", "params": {"kind": "shift_weights", "listener_arn": TG}},
            "plans.8.steps.0.params.listener_arn",
            "must be a listener ARN like",
        ),
        (
            {"action": "failover", "params": {"kind": "dns", "hosted_zone_id": "my zone"}},
            "plans.8.steps.0.params.hosted_zone_id",
            "must be a Route 53 hosted zone ID like",
        ),
    ],
    ids=["deregister-target-group", "zonal-shift-balancer", "duration", "listener", "hosted-zone"],
)
def test_a_malformed_step_parameter_is_refused_with_its_path(step, path, expected):
    # Given the shipped configuration with one more plan whose step has a malformed parameter
    raw = shipped()
    raw["plans"].append(plan("extra", step))

    # Then it is refused naming the parameter's path, in words (no pattern, no prefix)
    found = problems(raw)
    assert list(found) == [path]
    assert found[path].startswith(expected), found[path]
    within = f"action {step['action']}" + (f", kind {step['params']['kind']}" if "kind" in step["params"] else "")
    with pytest.raises(ConfigError, match=re.escape(f"  - {path} (plan 'extra', {within}): ")):
        validate(raw)


def test_a_plan_matching_a_workload_that_is_not_configured_is_refused():
    raw = shipped()
    raw["plans"][0]["match"]["workloads"] = ["web-api", "web-apj"]

    assert problems(raw) == {
        "plans.0.match.workloads.1": "no workload is named 'web-apj', so the plan would never match it "
        "(workloads: checkout, ledger, orders, web-api)"
    }


def test_problems_of_every_layer_are_reported_together():
    # Given a field error in a workload, a step error in a plan, a plan's own field error, an
    # unknown workload in a plan's match, a bad region and a practice drill of an unknown workload
    raw = shipped()
    raw["workloads"][0]["target_group_arn"] = "arn:aws:elasticloadbalancing:us-east-1:123456789012:web-api"
    raw["plans"][0]["steps"][0]["params"]["expires_in"] = "forever"
    raw["plans"][1]["verify"]["max_attempts"] = 0
    raw["plans"][2]["match"]["workloads"] = ["checkuot"]
    raw["regions"] = {"primary": "us-east-1", "standby": ["us-east-1"]}
    raw["practice_drills"] = [{"workload": "nobody", "alarm": "status_check", "schedule": "rate(7 days)"}]

    # Then every one of them is reported, in the order of the file, each with its path
    assert list(problems(raw)) == [
        "workloads.0.target_group_arn",
        "plans.0.steps.0.params.expires_in",
        "plans.1.verify.max_attempts",
        "plans.2.match.workloads.0",
        "regions",
        "practice_drills.0.workload",
    ]
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    message = str(caught.value)
    assert message.count("\n  - ") == 6, message
    assert "plans.1.verify.max_attempts (plan 'fail-over-database'): must be at least 1 (got 0)" in message
    assert "regions: the primary region us-east-1 cannot also be a standby region" in message


def test_a_workload_whose_own_fields_are_invalid_is_still_a_workload_plans_may_name():
    # Given web-api with a malformed ARN: plans naming web-api are not told it does not exist
    raw = shipped()
    raw["workloads"][0]["load_balancer_arn"] = "balancer"

    assert list(problems(raw)) == ["workloads.0.load_balancer_arn"]


def test_a_plan_naming_an_action_that_does_not_exist_is_refused_with_the_actions_there_are():
    raw = shipped()
    raw["plans"][5]["steps"].append({"action": "reboot_everything"})

    found = problems(raw)
    assert list(found) == ["plans.5.steps.1.action"]
    assert found["plans.5.steps.1.action"].startswith("no action is named 'reboot_everything' (actions: failover,")


def test_duplicate_workload_names_are_refused_at_the_second():
    raw = shipped()
    raw["workloads"][2]["name"] = "checkout"

    assert problems(raw) == {
        "workloads.2.name": "another workload is already named 'checkout': names must be unique",
    }


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        ({"stack_name": "1st"}, "stack_name", "must be a CloudFormation stack name"),
        ({"lock_ttl_seconds": "an hour"}, "lock_ttl_seconds", "must be a whole number (got 'an hour')"),
        ({"dry_run": "maybe"}, "dry_run", "must be true or false (got 'maybe')"),
        ({"plan": []}, "plan", "is not a field here (check its spelling and where it is nested)"),
        ({"regions": {"primary": "us-east"}}, "regions.primary", "must be a region name like us-east-1"),
        ({"regions": {"standby": ["us-west-2"]}}, "regions.primary", "is required"),
        ({"plans": {"name": "p"}}, "plans", "must be a list"),
    ],
)
def test_field_errors_are_worded_for_the_author(change, path, expected):
    raw = {**shipped(), **change}
    found = problems(raw)
    assert path in found, found
    assert found[path].startswith(expected), found[path]


def test_a_file_holding_an_object_around_the_configuration_is_told_so():
    # The file given with recovery_config holds the `recovery` object itself, not {"recovery": ...}
    assert problems({"recovery": shipped()}) == {
        "recovery": 'holds the configuration one level down: give the value of "recovery" itself, not an object '
        "around it"
    }
    assert problems(["not", "an", "object"]) == {"": "the configuration must be a JSON object (the `recovery` object)"}


def test_a_literal_or_enum_names_the_values_it_takes():
    raw = shipped()
    raw["plans"][0]["match"]["min_severity"] = "huge"

    found = problems(raw)
    assert found == {"plans.0.match.min_severity": "must be one of 'low', 'medium', 'high' or 'critical' (got 'huge')"}


def test_blocking_conditions_are_validated_whole_each_problem_with_its_path():
    raw = shipped()
    raw["guardrails"] = {**raw.get("guardrails", {}), "blocking": {"max_wait_seconds": -1, "then": "wait"}}
    raw["plans"][0]["blocking"] = {"alarms": ["a", "a"], "check_every_seconds": 1}

    found = problems(raw)

    assert {"guardrails.blocking.max_wait_seconds", "guardrails.blocking.then"} <= set(found)
    assert any(p.startswith("plans.0.blocking.alarms") for p in found), found
    assert any(p.startswith("plans.0.blocking.check_every_seconds") for p in found), found
    assert any("named twice" in m for m in found.values())


def test_a_deployment_wide_blocking_default_and_a_plan_of_its_own_validate():
    raw = shipped()
    raw["guardrails"] = {**raw.get("guardrails", {}), "blocking": {"alarms": ["payments-5xx"], "then": "act"}}
    raw["plans"][0]["blocking"] = {"instance_refresh": False, "max_wait_seconds": 600}
    assert problems(raw) == {}
