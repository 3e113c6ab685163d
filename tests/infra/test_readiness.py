"""The readiness check in the template: its function on a 30-minute schedule with the reads its
checks make, an alarm per plan on PlanNotReady to the escalation topic, its workloads in the
runtime configuration; readiness_interval_minutes 0 builds none of it."""

from __future__ import annotations

import copy

import pytest

from tests.infra import cfn


def _readiness(resources):
    (name,) = [
        k
        for k, r in cfn.of_type(resources, "AWS::Lambda::Function").items()
        if r["Properties"].get("Handler") == "readiness.handler.handler"
    ]
    return name


def test_the_check_runs_every_30_minutes_by_default(resources):
    function = _readiness(resources)
    schedules = [
        r["Properties"]["ScheduleExpression"]
        for r in cfn.of_type(resources, "AWS::Events::Rule").values()
        if any(function in str(t) for t in r["Properties"].get("Targets", []))
    ]
    assert schedules == ["rate(30 minutes)"]


def test_an_alarm_per_plan_on_plan_not_ready_notifies_the_escalation_topic(resources, config):
    alarms = {
        next(d["Value"] for d in a["Properties"]["Dimensions"] if d["Name"] == "plan"): a["Properties"]
        for a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "PlanNotReady"
    }
    assert sorted(alarms) == sorted(p.name for p in config.parsed_plans())
    some = next(iter(alarms.values()))
    assert some["Period"] == 1800
    assert some["TreatMissingData"] == "ignore"
    assert some["AlarmActions"] and some["OKActions"]


def test_the_runtime_configuration_names_each_workloads_group_for_the_check(config):
    targets = {t.workload: t for t in config.runtime_config().readiness}
    assert {w.name for w in config.workloads} == set(targets)
    for w in config.workloads:
        assert targets[w.name].auto_scaling_group == w.auto_scaling_group


def test_interval_zero_builds_no_check_and_no_alarm(tmp_path_factory):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import validate
    from infra.stack import RecoveryStack
    from tests.conftest import cdk_context

    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["readiness_interval_minutes"] = 0
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.no-readiness")), context=cdk_context())
    resources = Template.from_stack(RecoveryStack(app, "ImpairmentRecovery", config=validate(raw))).to_json()[
        "Resources"
    ]
    handlers = {r["Properties"].get("Handler") for r in cfn.of_type(resources, "AWS::Lambda::Function").values()}
    assert "readiness.handler.handler" not in handlers
    metrics = {a["Properties"].get("MetricName") for a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()}
    assert "PlanNotReady" not in metrics


@pytest.mark.parametrize("interval", [-1, 1441])
def test_an_interval_out_of_range_is_refused(interval):
    from infra.config import ConfigError, validate
    from tests.conftest import cdk_context

    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["readiness_interval_minutes"] = interval
    with pytest.raises(ConfigError, match="readiness_interval_minutes"):
        validate(raw)


def test_the_check_knows_the_role_of_each_action_the_plans_use_and_may_simulate_those_only(resources, config):
    import json

    from infra.readiness import plan_actions

    function = _readiness(resources)
    variables = resources[function]["Properties"]["Environment"]["Variables"]
    roles = json.loads(cfn.resolve(variables["ACTION_ROLES"]).replace("${", "").replace(".Arn}", ""))
    # every action of the plans (aliases resolved), each the role of its apply function
    used = plan_actions(config.parsed_plans())
    assert sorted(roles) == used and "failover_dns" in used  # the example's "failover" kind dns
    applies = cfn.functions_by_handler(resources)
    for action, role in roles.items():
        apply = resources[applies[f"actions.{action}.apply_handler"]]
        assert apply["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    role_id = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    simulate = [s for s in cfn.role_statements(resources, role_id) if "iam:" in str(s["Action"])]
    (statement,) = simulate
    assert statement["Action"] == "iam:SimulatePrincipalPolicy"
    assert sorted(cfn.get_att(r) for r in statement["Resource"]) == sorted(roles.values())


def test_the_check_may_read_this_accounts_routing_controls_only(resources):
    function = _readiness(resources)
    role_id = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    (statement,) = [
        s for s in cfn.role_statements(resources, role_id) if "route53-recovery-cluster" in str(s["Action"])
    ]
    assert statement["Action"] == "route53-recovery-cluster:GetRoutingControlState"
    (resource,) = cfn.as_list(statement["Resource"])
    assert cfn.resolve(resource) == (
        "arn:${AWS::Partition}:route53-recovery-control::${AWS::AccountId}:controlpanel/*/routingcontrol/*"
    )
