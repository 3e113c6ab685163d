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
            ["plan 'replace-failed-instance'", "step 0", "unknown action 'reboot_everything'", "replace_instance"],
        ),
        (out_of_range_parameter, ["plan 'surge-and-replace-unhealthy'", "step 0 (scale_out)", "increment"]),
        (unknown_parameter, ["plan 'surge-and-replace-unhealthy'", "step 1 (replace_instance)", "force"]),
        (duplicate_plan_names, ["plan names must be unique", "replace-failed-instance"]),
        (malformed_target_group_arn, ["workloads.0.target_group_arn", "not a target group ARN"]),
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
    assert "plan 'replace-failed-instance': step 0: unknown action 'reboot_everything'" in result.stderr
    assert not list(outdir.glob("*.template.json"))
