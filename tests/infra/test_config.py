"""A bad configuration fails synthesis with a message that names what to fix."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from infra.config import ConfigError, validate
from tests.conftest import ROOT, cdk_context

Raw = dict[str, Any]


def shipped_config() -> Raw:
    """A copy of cdk.json's "recovery" configuration, to break one thing at a time."""
    return copy.deepcopy(cdk_context()["recovery"])


def _plan(raw: Raw, name: str) -> Raw:
    return next(plan for plan in raw["plans"] if plan["name"] == name)


def unknown_action(raw: Raw) -> None:
    _plan(raw, "replace-failed-instance")["steps"][0]["action"] = "reboot_everything"


def out_of_range_parameter(raw: Raw) -> None:
    _plan(raw, "surge-and-replace-unhealthy")["steps"][0]["params"] = {"increment": 0}


def unknown_parameter(raw: Raw) -> None:
    _plan(raw, "surge-and-replace-unhealthy")["steps"][1]["params"] = {"mode": "terminate", "force": True}


def duplicate_plan_names(raw: Raw) -> None:
    _plan(raw, "surge-and-replace-unhealthy")["name"] = "replace-failed-instance"


def malformed_target_group_arn(raw: Raw) -> None:
    raw["workloads"][0]["target_group_arn"] = "arn:aws:elasticloadbalancing:us-east-1:123456789012:web-api"


def target_group_without_load_balancer(raw: Raw) -> None:
    del raw["workloads"][0]["load_balancer_arn"]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (
            unknown_action,
            [
                "plans.6.steps.0.action (plan 'replace-failed-instance'): no action is named 'reboot_everything'",
                "replace_instance",
            ],
        ),
        (
            out_of_range_parameter,
            ["plans.7.steps.0.params.increment (plan 'surge-and-replace-unhealthy', action scale_out)", "at least 1"],
        ),
        (unknown_parameter, ["plans.7.steps.1.params.force", "action replace_instance)"]),
        (duplicate_plan_names, ["plans.7.name", "another plan is already named 'replace-failed-instance'"]),
        (malformed_target_group_arn, ["workloads.0.target_group_arn", "must be a target group ARN like arn:aws:"]),
        (target_group_without_load_balancer, ["workloads.0", "target_group_arn and load_balancer_arn go together"]),
    ],
    ids=lambda value: value.__name__ if callable(value) else "",
)
def test_invalid_configuration_is_rejected_with_a_message_naming_the_problem(
    breakage: Callable[[Raw], None], expected: list[str]
):
    # Given the shipped configuration with one thing broken
    raw = shipped_config()
    breakage(raw)

    # When it is validated, Then it is rejected and the message says where and what
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    message = str(caught.value)
    assert message.startswith("invalid recovery configuration:")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_shipped_configuration_is_valid():
    config = validate(shipped_config())
    assert [p.name for p in config.parsed_plans()] == [
        "shift-away-from-impaired-zone",
        "fail-over-database",
        "restart-crashed-container",
        "fail-over-region",
        "fail-over-to-standby-region",
        "replace-failed-eks-node",
        "replace-failed-instance",
        "surge-and-replace-unhealthy",
    ]
    assert {w.name for w in config.workloads} == {"web-api", "checkout", "orders", "ledger"}


def test_cdk_app_exits_with_the_message_on_a_bad_configuration_file(tmp_path):
    # Given a configuration file whose plan names an unknown action, passed the way the CDK CLI
    # passes `-c recovery_config=FILE` to the app (CDK_CONTEXT_JSON)
    raw = shipped_config()
    unknown_action(raw)
    config_file = tmp_path / "recovery.json"
    config_file.write_text(json.dumps(raw))
    outdir = tmp_path / "cdk.out"
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({"recovery_config": str(config_file)}),
        "CDK_OUTDIR": str(outdir),
    }

    # When the app runs
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )

    # Then synthesis fails before writing anything, naming the plan, the step and the action
    assert result.returncode == 1, result.stderr
    assert "cdk synth: invalid recovery configuration:" in result.stderr
    assert "plans.6.steps.0.action (plan 'replace-failed-instance'): no action is named" in result.stderr
    assert not list(outdir.glob("*.template.json"))


# --- a workload's standby region (regional failover) ---

STANDBY_TG = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/web-api-standby/0123456789abcdef"


def with_standby(**standby: Any) -> Raw:
    """The shipped configuration in two regions, web-api with a standby group in us-west-2."""
    raw = shipped_config()
    raw["regions"] = {"primary": "us-east-1", "standby": ["us-west-2"]}
    raw["workloads"][0]["standby"] = {
        "region": "us-west-2",
        "auto_scaling_group": "web-api-standby",
        "desired_capacity": 3,
        **standby,
    }
    return raw


def test_a_standby_region_is_valid_and_probed_only_from_that_region():
    # Given web-api (us-east-1) with standby capacity in us-west-2
    config = validate(with_standby(target_group_arn=STANDBY_TG, probe_failures=5))

    # Then only the us-west-2 stack probes it, with what the failover needs
    assert config.region_probes("us-east-1") == []
    (probe,) = config.region_probes("us-west-2")
    assert probe.model_dump(mode="json") == {
        "workload": "web-api",
        "region": "us-east-1",
        "account_id": None,
        "auto_scaling_group": "web-api-asg",
        "ecs_service": None,
        "failures_to_impair": 5,
        "standby": {
            "region": "us-west-2",
            "auto_scaling_group": "web-api-standby",
            "desired_capacity": 3,
            "ecs_service": None,
            "target_group_arn": STANDBY_TG,
            "global_database": None,
            "read_replica": None,
        },
        "dns": {
            "hosted_zone_id": "Z0EXAMPLE0WEBAPI",
            "record_name": "api.example.com",
            "record_type": "A",
            "primary_set_identifier": "web-api-primary",
            "secondary_set_identifier": "web-api-standby",
        },
    }
    assert config.runtime_config("us-west-2").probes == [probe]
    assert config.runtime_config("us-east-1").probes == []
    assert config.workloads[0].standby.probe_failures == 5


def test_an_ecs_workload_may_stand_by_with_an_ecs_service_its_service_probed():
    # Given checkout, an ECS workload without a group, with a standby ECS service in us-west-2
    raw = with_standby()
    checkout = next(w for w in raw["workloads"] if w["name"] == "checkout")
    assert "auto_scaling_group" not in checkout
    checkout["dns"] = {**raw["workloads"][0]["dns"], "hosted_zone_id": "Z0EXAMPLE0CHECKOUT"}
    checkout["standby"] = {
        "region": "us-west-2",
        "ecs_service": {"cluster": "checkout-standby", "service": "checkout-api", "desired_count": 2},
    }

    config = validate(raw)

    # Then us-west-2 probes checkout's own service in us-east-1, and names its standby service
    probes = {p.workload: p for p in config.region_probes("us-west-2")}
    probe = probes["checkout"]
    assert probe.auto_scaling_group is None
    assert probe.ecs_service is not None
    assert (probe.ecs_service.cluster, probe.ecs_service.service) == ("checkout", "checkout-api")
    assert probe.standby.auto_scaling_group is None
    assert probe.standby.ecs_service is not None and probe.standby.ecs_service.desired_count == 2
    # And a group workload is still probed by its group, whatever else it has
    assert probes["web-api"].auto_scaling_group == "web-api-asg" and probes["web-api"].ecs_service is None


def test_a_workload_with_both_a_group_and_a_service_is_probed_by_its_group():
    raw = with_standby(ecs_service={"cluster": "web-standby", "service": "web", "desired_count": 2})
    raw["workloads"][0]["ecs_service"] = {"cluster": "web", "service": "web"}
    (probe,) = validate(raw).region_probes("us-west-2")
    assert probe.auto_scaling_group == "web-api-asg" and probe.ecs_service is None
    assert probe.standby.auto_scaling_group == "web-api-standby"
    assert probe.standby.ecs_service is not None and probe.standby.ecs_service.cluster == "web-standby"


def test_a_workload_of_a_standby_region_may_stand_by_in_the_primary():
    # Given web-api running in us-west-2, with its standby capacity in the primary region
    raw = with_standby(region="us-east-1", auto_scaling_group="web-api-fallback")
    raw["workloads"][0]["region"] = "us-west-2"

    config = validate(raw)

    # Then the primary's stack probes us-west-2 for it, and the us-west-2 stack does not
    (probe,) = config.region_probes("us-east-1")
    assert (probe.region, probe.standby.region, probe.standby.auto_scaling_group) == (
        "us-west-2",
        "us-east-1",
        "web-api-fallback",
    )
    assert config.region_probes("us-west-2") == []


def test_probe_failures_defaults_to_three_and_no_regions_means_no_probes():
    config = validate(with_standby())
    assert config.workloads[0].standby.probe_failures == 3
    assert validate(shipped_config()).runtime_config().probes == []


def _no_regions(raw: Raw) -> None:
    del raw["regions"]


def _no_group(raw: Raw) -> None:
    del raw["workloads"][0]["auto_scaling_group"]
    raw["workloads"][0]["database"] = {"db_instance_identifier": "web-db"}


def _own_region(raw: Raw) -> None:
    raw["workloads"][0]["region"] = "us-west-2"


@pytest.mark.parametrize(
    ("standby", "breakage", "expected"),
    [
        ({"region": "eu-west-1"}, None, ["standby.region (workload 'web-api'): eu-west-1 is not one of", "us-west-2"]),
        ({"region": "us-east-1"}, None, ["standby.region (workload 'web-api'): us-east-1 is the workload's own"]),
        ({}, _own_region, ["standby.region (workload 'web-api'): us-west-2 is the workload's own region"]),
        ({}, _no_regions, ["standby.region (workload 'web-api'): names region us-west-2 but no `regions`"]),
        ({}, _no_group, ["workloads.0", "standby needs the workload's auto_scaling_group"]),
        ({"region": "uswest2"}, None, ["workloads.0.standby.region"]),
        ({"desired_capacity": 0}, None, ["workloads.0.standby.desired_capacity"]),
        ({"probe_failures": 0}, None, ["workloads.0.standby.probe_failures"]),
        ({"probe_failures": 61}, None, ["workloads.0.standby.probe_failures"]),
        ({"auto_scaling_group": ""}, None, ["workloads.0.standby.auto_scaling_group"]),
        ({"target_group_arn": "arn:aws:elb:nope"}, None, ["standby.target_group_arn", "must be a target group ARN"]),
        (
            {"target_group_arn": STANDBY_TG.replace("us-west-2", "us-east-1")},
            None,
            ["workloads.0.standby", "target_group_arn is in region us-east-1, not in the standby region us-west-2"],
        ),
        ({"health_check": "x"}, None, ["workloads.0.standby.health_check"]),
        (
            {"auto_scaling_group": None, "desired_capacity": None},
            None,
            ["workloads.0.standby", "a standby needs an auto_scaling_group (with desired_capacity) or an ecs_service"],
        ),
        ({"desired_capacity": None}, None, ["auto_scaling_group and desired_capacity go together"]),
        ({"ecs_service": {"cluster": "c", "service": "s"}}, None, ["workloads.0.standby.ecs_service.desired_count"]),
        (
            {"ecs_service": {"cluster": "c", "service": "s", "desired_count": 0}},
            None,
            ["workloads.0.standby.ecs_service.desired_count"],
        ),
    ],
)
def test_a_bad_standby_is_refused_naming_the_field(
    standby: Raw, breakage: Callable[[Raw], None] | None, expected: list[str]
):
    raw = with_standby(**standby)
    if breakage:
        breakage(raw)
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


STANDBY_DB = "arn:aws:rds:us-west-2:123456789012:cluster:web-api-db-standby"


def test_a_standbys_global_database_reaches_the_probe_and_the_impairments_scope():
    from detectors.region_probe import scope_of

    global_database = {"global_cluster_identifier": "web-api-global", "db_cluster_arn": STANDBY_DB}
    (probe,) = validate(with_standby(global_database=global_database)).region_probes("us-west-2")
    scope = scope_of(probe)
    assert scope["global_cluster_id"] == "web-api-global"
    assert scope["standby_db_cluster_arn"] == STANDBY_DB
    # data loss is the workload's explicit choice: off unless it says so
    assert scope["global_cluster_allow_data_loss"] == "false"
    assert "standby_db_instance" not in scope
    (probe,) = validate(with_standby(read_replica={"db_instance_identifier": "web-api-replica"})).region_probes(
        "us-west-2"
    )
    assert scope_of(probe)["standby_db_instance"] == "web-api-replica"
    assert "global_cluster_id" not in scope_of(probe)


@pytest.mark.parametrize(
    ("standby", "fragment"),
    [
        (  # the secondary must be the standby region's
            {
                "global_database": {
                    "global_cluster_identifier": "g",
                    "db_cluster_arn": STANDBY_DB.replace("west", "east"),
                }
            },
            "not in the standby region us-west-2",
        ),
        (
            {
                "global_database": {"global_cluster_identifier": "g", "db_cluster_arn": STANDBY_DB},
                "read_replica": {"db_instance_identifier": "web-api-replica"},
            },
            "not both",
        ),
        ({"global_database": {"global_cluster_identifier": "g", "db_cluster_arn": "web-api-db"}}, "a DB cluster ARN"),
    ],
)
def test_a_bad_standby_database_is_refused(standby: Raw, fragment: str):
    with pytest.raises(ConfigError, match=fragment):
        validate(with_standby(**standby))


def test_the_shipped_regional_failover_runs_each_step_only_for_what_the_workload_declares():
    # Each standby's compute and database come up before the traffic moves
    (plan,) = [p for p in shipped_config()["plans"] if p["name"] == "fail-over-to-standby-region"]
    steps = [(s["action"], s.get("params", {}).get("kind"), s.get("when_scope_has")) for s in plan["steps"]]
    assert steps == [
        ("provision_backup", "standby_group", "standby_auto_scaling_group"),
        ("provision_backup", "standby_ecs_service", "standby_ecs_service"),
        ("failover", "global_database", "global_cluster_id"),
        ("promote_read_replica", None, "standby_db_instance"),
        ("failover", "dns", None),
    ]
    assert plan["requires_approval"]


# --- where a regional failover moves the traffic: the workload's dns, or routing controls ---

_CONTROL_PANEL = "arn:aws:route53-recovery-control::123456789012:controlpanel/0123456789abcdef0123456789abcdef"


def routing_control_plan(name: str = "fail-over-with-routing-controls", **match: Any) -> Raw:
    """A region_impairment plan like the shipped one, moving the traffic with ARC routing controls."""
    return {
        "name": name,
        "match": {"impairment_types": ["region_impairment"], "min_severity": "high", **match},
        "requires_approval": True,
        "steps": [
            {"action": "provision_backup", "params": {"kind": "standby_group"}},
            {
                "action": "failover",
                "params": {
                    "kind": "routing_control",
                    "primary_routing_control_arn": f"{_CONTROL_PANEL}/routingcontrol/0123456789abcdef",
                    "standby_routing_control_arn": f"{_CONTROL_PANEL}/routingcontrol/fedcba9876543210",
                    "cluster_endpoints": [
                        {"endpoint": "https://host-aaaaaa.us-west-2.example.com/v1", "region": "us-west-2"}
                    ],
                },
            },
        ],
    }


def without_dns(*plans_first: Raw, plans_last: tuple[Raw, ...] = ()) -> Raw:
    """web-api with a standby in us-west-2 but no `dns`; `plans_first` listed before the shipped plans."""
    raw = with_standby()
    del raw["workloads"][0]["dns"]
    raw["plans"] = [*plans_first, *raw["plans"], *plans_last]
    return raw


def test_a_standby_without_dns_is_refused_when_the_failover_needs_its_records():
    # Given web-api standing by in us-west-2 with no `dns`, and the shipped region failover plan
    # (its failover step, kind dns, takes the records from the impairment's scope, which `dns` fills)
    with pytest.raises(ConfigError) as caught:
        validate(without_dns())

    # Then it is refused before anything is built, naming the field, the plan and both ways out
    message = str(caught.value)
    for fragment in (
        "  - workloads.0.standby (workload 'web-api'): the workload has a standby but no `dns`",
        "'fail-over-to-standby-region'",
        'kind "dns"',
        "Add workloads.0.dns",
        'kind "routing_control"',
    ):
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize(
    ("plans_first", "plans_last", "expected"),
    [
        # listed after the shipped plan: the shipped plan is the one that runs
        ((), (routing_control_plan(),), "'fail-over-to-standby-region', fails over with kind \"dns\""),
        # first, but for another workload only
        ((routing_control_plan(workloads=["checkout"]),), (), "'fail-over-to-standby-region', fails over"),
        # first, but it does not take a critical impairment (the probe's is critical)
        ((routing_control_plan(max_severity="high"),), (), "'fail-over-to-standby-region', fails over"),
        # first, and it moves no traffic at all
        (
            (
                {
                    **routing_control_plan(),
                    "steps": [{"action": "provision_backup", "params": {"kind": "standby_group"}}],
                },
            ),
            (),
            "'fail-over-with-routing-controls', has no failover step",
        ),
    ],
    ids=["after-the-shipped-plan", "another-workload", "not-critical", "no-failover-step"],
)
def test_a_routing_control_plan_that_would_not_run_does_not_excuse_a_missing_dns(plans_first, plans_last, expected):
    with pytest.raises(ConfigError) as caught:
        validate(without_dns(*plans_first, plans_last=plans_last))
    message = str(caught.value)
    assert "workloads.0.standby" in message and expected in message, message


def test_a_standby_without_dns_and_without_a_plan_is_refused():
    raw = without_dns()
    raw["plans"] = [p for p in raw["plans"] if p["name"] != "fail-over-to-standby-region"]
    with pytest.raises(ConfigError, match=r"workloads\.0\.standby \(workload 'web-api'\): .*no plan matches"):
        validate(raw)


@pytest.mark.parametrize("workloads", [None, ["web-api"]], ids=["every-workload", "naming-it"])
def test_a_standby_without_dns_is_valid_when_its_region_failover_uses_routing_controls(workloads):
    # Given web-api with no `dns`, and before the shipped plan one that fails over with routing controls
    plan = routing_control_plan(**({"workloads": workloads} if workloads else {}))
    config = validate(without_dns(plan))

    # Then it validates, and its probe carries no DNS records (the routing controls are the plan's)
    (probe,) = config.region_probes("us-west-2")
    assert probe.workload == "web-api" and probe.dns is None


def test_a_standby_without_dns_is_valid_when_the_dns_failover_names_its_records():
    plan = routing_control_plan()
    plan["steps"][1]["params"] = {
        "kind": "dns",
        "hosted_zone_id": "Z0EXAMPLE0WEBAPI",
        "record_name": "api.example.com",
        "primary_set_identifier": "web-api-primary",
        "secondary_set_identifier": "web-api-standby",
    }
    assert validate(without_dns(plan)).workloads[0].dns is None


def test_the_storm_window_defaults_to_five_minutes_may_be_off_and_is_bounded():
    assert validate(shipped_config()).storm_window_seconds == 300
    assert validate({**shipped_config(), "storm_window_seconds": 0}).storm_window_seconds == 0
    # a leader's execution waits the window out: an hour at most
    with pytest.raises(ConfigError, match="storm_window_seconds"):
        validate({**shipped_config(), "storm_window_seconds": 3601})
