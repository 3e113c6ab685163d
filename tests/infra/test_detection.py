"""A detector added to the registry is built, watched and forwarded with no edit in infra/:
synthesized here with extra declarations (beyond what one rule alarm can watch)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from detectors import registry
from detectors.declaration import Events, MetricAlarm, Reads
from tests.infra import cfn
from tests.infra.test_accounts import with_members
from tests.infra.test_bus_policy import admitted_roles, bus_policy

EXTRA = [
    dataclasses.replace(
        registry.EC2_STATE,
        name=f"Extra{n}Detector",
        handler=f"detectors.extra{n}.handler",
        trigger=Events(f"Extra{n}Events", f"extra signals {n}", source=f"aws.extra{n}", detail_types=(f"Extra {n}",)),
        error_alarm=f"extra{n}-detector-errors",
        reads=(Reads((f"extra{n}:DescribeThings",)),),
        forward=f"Extra{n}",
        alarms=(MetricAlarm(f"Extra{n}Blind", f"extra{n}-blind", f"Extra{n}Blind", "What to do: look."),),
    )
    for n in range(4)
]


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, dict[str, Any]]:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import validate
    from infra.member_stack import build_member_stacks
    from infra.stack import RecoveryStack
    from tests.conftest import cdk_context

    config = validate(with_members())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "DETECTORS", (*registry.DETECTORS, *EXTRA))
        app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.extra")), context=cdk_context())
        central = RecoveryStack(app, config.stack_name, config=config)
        (member,) = build_member_stacks(app, config)
        app.synth()
    return {
        "central": Template.from_stack(central).to_json()["Resources"],
        "member": Template.from_stack(member).to_json()["Resources"],
    }


@pytest.mark.parametrize("n", range(len(EXTRA)))
def test_a_declared_detector_is_built_with_its_rule_role_and_alarms(n, templates):
    central = templates["central"]
    declaration = EXTRA[n]
    function_id = cfn.functions_by_handler(central)[declaration.handler]
    role_id = cfn.get_att(central[function_id]["Properties"]["Role"])
    (rule,) = [
        r
        for r in cfn.of_type(central, "AWS::Events::Rule").values()
        if r["Properties"]["Description"] == (f"extra signals {n}")
    ]
    assert rule["Properties"]["EventPattern"] == {"source": [f"aws.extra{n}"], "detail-type": [f"Extra {n}"]}
    assert cfn.get_att(rule["Properties"]["Targets"][0]["Arn"]) == function_id
    granted = {a for s in cfn.role_statements(central, role_id) for a in cfn.as_list(s["Action"])}
    assert {f"extra{n}:DescribeThings", "events:PutEvents", "sts:AssumeRole"} <= granted
    (statement,) = bus_policy(central)
    assert role_id in admitted_roles(statement)
    alarms = cfn.of_type(central, "AWS::CloudWatch::Alarm").values()
    names = {cfn.resolve(a["Properties"].get("AlarmName", "")) for a in alarms}
    assert f"ImpairmentRecovery-recovery-system-extra{n}-detector-errors" in names
    assert f"ImpairmentRecovery-recovery-system-extra{n}-blind" in names


def test_the_member_forwards_the_new_signals_and_allows_their_reads(templates):
    member = templates["member"]
    patterns = [r["Properties"]["EventPattern"] for r in cfn.of_type(member, "AWS::Events::Rule").values()]
    for n in range(len(EXTRA)):
        assert {"source": [f"aws.extra{n}"], "detail-type": [f"Extra {n}"]} in patterns
    granted = {a for _, _, s in cfn.policy_statements(member) for a in cfn.as_list(s.get("Action", []))}
    assert {f"extra{n}:DescribeThings" for n in range(len(EXTRA))} <= granted


def test_every_rule_is_watched_even_beyond_one_alarm_s_ten_metrics(templates):
    central = templates["central"]
    rules = set(cfn.of_type(central, "AWS::Events::Rule"))
    assert len(rules) > 10
    watched = set()
    deliveries = [
        a
        for a in cfn.of_type(central, "AWS::CloudWatch::Alarm").values()
        if "rule-deliveries" in cfn.resolve(a["Properties"].get("AlarmName", ""))
    ]
    assert len(deliveries) == 2
    for alarm in deliveries:
        metrics = [m["MetricStat"]["Metric"] for m in alarm["Properties"]["Metrics"] if "MetricStat" in m]
        assert len(metrics) <= 10
        watched |= {next(d["Value"]["Ref"] for d in m["Dimensions"] if d["Name"] == "RuleName") for m in metrics}
    assert watched == rules


def test_events_only_a_configuration_without_sweep_has_no_schedule_and_no_sweep_function(tmp_path_factory):
    # Given sweep_interval_minutes 0 (docs/operations.md, "Running events only")
    import copy

    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import validate
    from infra.stack import RecoveryStack
    from tests.conftest import cdk_context

    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["sweep_interval_minutes"] = 0
    raw["readiness_interval_minutes"] = 0  # the readiness check is a schedule too
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.events-only")), context=cdk_context())
    resources = Template.from_stack(RecoveryStack(app, "ImpairmentRecovery", config=validate(raw))).to_json()[
        "Resources"
    ]

    # Then nothing runs on a schedule and there is no sweep function to invoke: idle costs no call
    rules = cfn.of_type(resources, "AWS::Events::Rule")
    assert rules, "the event-driven detectors' rules are still there"
    assert [k for k, r in rules.items() if "ScheduleExpression" in r["Properties"]] == []
    handlers = {r["Properties"].get("Handler") for r in cfn.of_type(resources, "AWS::Lambda::Function").values()}
    assert "detectors.sweeps.handler" not in handlers
    assert {"detectors.ec2_state.handler", "detectors.health.handler"} <= handlers
