"""The detector registry (functions/detectors/registry.py): what the stack, the member stacks and
the operations construct build every detector from."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.declaration import ENVIRONMENT_BUDGET, Deployment, Events, Schedule, decided
from detectors.registry import DETECTORS

ROOT = Path(__file__).resolve().parents[2]
IDS = [d.name for d in DETECTORS]


def test_the_registry_imports_nothing_heavy_at_synthesis():
    # The stack imports it at synth: no boto3, no Powertools, no pydantic
    code = (
        "import sys; import detectors.registry; "
        "heavy = [m for m in ('boto3', 'botocore', 'aws_lambda_powertools', 'pydantic') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "functions", capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


@pytest.mark.parametrize("declaration", DETECTORS, ids=IDS)
def test_each_declared_handler_is_a_function_of_its_module(declaration):
    module_name, function_name = declaration.handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module_name), function_name))


@pytest.mark.parametrize(
    "field",
    ["name", "handler", "error_alarm"],
)
def test_what_names_a_detector_is_unique(field):
    values = [getattr(d, field) for d in DETECTORS]
    assert len(values) == len(set(values)), values


def test_rules_and_alarms_are_unique_across_detectors():
    rules = [d.trigger.rule for d in DETECTORS]
    assert len(rules) == len(set(rules))
    alarms = [a.construct_id for d in DETECTORS for a in d.alarms] + [f"{d.name}Errors" for d in DETECTORS]
    assert len(alarms) == len(set(alarms))
    forwards = [d.forward for d in DETECTORS if d.forward]
    assert len(forwards) == len(set(forwards))


@pytest.mark.parametrize("declaration", [d for d in DETECTORS if isinstance(d.trigger, Events)], ids=lambda d: d.name)
def test_the_rule_sends_what_the_detector_parses(declaration):
    # The module's own source and detail types (what parse() accepts) are the rule's
    module = importlib.import_module(declaration.handler.rsplit(".", 1)[0])
    detail_types = getattr(module, "DETAIL_TYPES", None) or (module.DETAIL_TYPE,)
    assert (module.SOURCE, tuple(detail_types)) == (declaration.trigger.source, declaration.trigger.detail_types)
    assert declaration.forward, "member accounts forward the AWS events a detector consumes"


@pytest.mark.parametrize("declaration", [d for d in DETECTORS if isinstance(d.trigger, Schedule)], ids=lambda d: d.name)
def test_a_scheduled_detector_forwards_nothing(declaration):
    assert declaration.forward is None
    assert declaration.forwarding_pattern() is None


def test_the_health_rule_asks_for_the_categories_the_detector_handles():
    from detectors import health
    from detectors.registry import HEALTH

    pattern = HEALTH.trigger.pattern(Deployment())
    assert set(pattern["detail"]["eventTypeCategory"]) == set(health.SEVERITY_BY_CATEGORY)


def test_without_workloads_the_alarm_detector_has_no_rule_yet():
    from detectors.registry import ALARM

    assert ALARM.trigger.pattern(Deployment()) is None
    assert ALARM.trigger.pattern(Deployment(workload_names=("b", "a"))) == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": "a-"}, {"prefix": "b-"}]},
    }


@pytest.mark.parametrize(
    ("minutes", "deployed", "window", "target_age"),
    [(0, False, None, None), (1, True, "300", 60), (10, True, "600", 600)],
)
def test_the_sweep_follows_its_interval(minutes, deployed, window, target_age):
    from detectors.registry import SWEEPS

    deployment = Deployment(sweep_interval_minutes=minutes)
    assert decided(SWEEPS.deployed, deployment) is deployed
    if deployed:
        assert SWEEPS.environment_in(deployment)["SWEEP_WINDOW_SECONDS"] == window
        assert decided(SWEEPS.invoke_retry, deployment).max_age_seconds == int(window)
        assert decided(SWEEPS.target_retry, deployment).max_age_seconds == target_age
        assert decided(SWEEPS.trigger.minutes, deployment) == minutes


def test_every_detector_knows_the_configured_groups_and_fits_its_environment():
    deployment = Deployment(
        workload_names=("web",), workload_groups={"web-asg": "web"}, workload_resources={"web": ["rds:db:x"]}
    )
    for declaration in DETECTORS:
        environment = declaration.environment_in(deployment)
        assert environment["WORKLOAD_GROUPS"] == '{"web-asg": "web"}', declaration.name
        assert sum(len(k) + len(v) for k, v in environment.items()) <= ENVIRONMENT_BUDGET


def test_reads_name_their_resources_by_placeholders_only():
    for declaration in DETECTORS:
        for reads in declaration.reads:
            assert reads.actions, declaration.name
            for resource in reads.resources:
                assert resource == "*" or resource.startswith("arn:{partition}:"), resource
                resource.format(partition="aws", region="r", account="1")  # nothing else to fill in
