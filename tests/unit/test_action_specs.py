"""What actions declare (actions/registry.py) and what follows from it: the declarations agree
with the actions' code, the workflow's tasks read them without importing that code, and a plan's
guardrails, hand-backs and time budget come from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actions import plans as action_plans
from actions.registry import ACTIONS
from core.errors import CAPACITY_WAIT_SECONDS, TASK_WITH_RETRIES_SECONDS
from core.plans import Plan

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

# Params as a plan gives them (defaults left out), per action with something to say about them.
_CONTROLS = "arn:aws:route53-recovery-control::123456789012:controlpanel/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SAMPLE_PARAMS = {
    "replace_instance": [{}, {"mode": "mark_unhealthy"}],
    "scale_out": [{}, {"keep": True}, {"return_after_seconds": 900}, {"increment": 2, "keep": False}],
    "provision_standby_group": [{}, {"desired_capacity": 2}],
    "redirect_zonal_shift": [{}, {"expires_in": "2h"}],
    "redirect_shift_weights": [{}, {"expires_in": "30m"}, {"expires_in": "72h"}],
    "failover_routing_control": [
        {
            "primary_routing_control_arn": f"{_CONTROLS}/routingcontrol/a1",
            "standby_routing_control_arn": f"{_CONTROLS}/routingcontrol/b2",
            "cluster_endpoints": [{"Endpoint": "https://host-a.example.com/v1", "Region": "us-east-1"}],
        }
    ],
    "restart_systemd_unit": [{"unit": "nginx.service"}],
    "scale_ecs_service": [{}, {"keep": True}, {"return_after_seconds": 120, "increment": 3}],
    "replace_eks_node": [{}, {"drain_timeout_seconds": 60, "nodes": ["ip-10-0-1-5"]}],
    "scale_eks_nodegroup": [{}, {"keep": True}, {"return_after_seconds": 120, "increment": 2}],
    "invoke_function": [{"function_name": "drain-cache"}, {"function_name": "a", "rollback_function": "b"}],
    "ssm_automation": [{"document_name": "AWS-RestartEC2Instance", "target_parameter": "InstanceId"}],
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_declared_action_has_its_code_and_handlers(name):
    import importlib

    spec = ACTIONS[name]
    module = importlib.import_module(spec.module)
    assert spec.implementation().name == name
    assert callable(module.apply_handler) and callable(module.rollback_handler)
    assert spec.time_box_seconds > 0


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_what_a_declaration_reads_from_params_agrees_with_the_parameters_defaults(name):
    # Given params as a plan gives them, and the same params with every default filled in
    spec = ACTIONS[name]
    model = spec.implementation().params
    for raw in SAMPLE_PARAMS.get(name, [{}]):
        full = model.model_validate(raw).model_dump(mode="json")
        # Then the declaration says the same of both: its defaults are the parameters' own
        assert spec.takes_out_of_service(raw) == spec.takes_out_of_service(full), raw
        assert spec.hand_back_after(raw) == spec.hand_back_after(full), raw


def test_hand_backs_are_the_emergency_capacity_and_the_shifted_weights():
    scale_out, shift = ACTIONS["scale_out"], ACTIONS["redirect_shift_weights"]
    assert scale_out.hand_back_after({}) == 3600
    assert scale_out.hand_back_after({"return_after_seconds": 900}) == 900
    assert scale_out.hand_back_after({"keep": True}) is None
    assert scale_out.hand_back is not None and scale_out.hand_back.only_if_healthy
    assert shift.hand_back_after({}) == 3600
    assert shift.hand_back_after({"expires_in": "30m"}) == 1800
    assert ACTIONS["redirect_zonal_shift"].hand_back_after({"expires_in": "2h"}) is None  # ARC expires it
    assert shift.hand_back is not None and not shift.hand_back.only_if_healthy
    assert [n for n, s in ACTIONS.items() if s.hand_back] == [
        "scale_out",
        "redirect_shift_weights",
        "scale_ecs_service",
        "scale_eks_nodegroup",
    ]


def test_instance_actions_are_the_ones_that_take_capacity_away():
    assert action_plans.takes_out_of_service([{"action": "replace_instance"}])
    assert action_plans.takes_out_of_service([{"action": "redirect_deregister_targets", "params": {}}])
    assert not action_plans.takes_out_of_service([{"action": "redirect_zonal_shift", "params": {}}])
    assert not action_plans.takes_out_of_service([{"action": "scale_out"}, {"action": "failover_dns"}])
    assert not action_plans.takes_out_of_service([{"action": "no_such_action"}])


def test_verify_checks_the_group_after_capacity_actions_and_the_standby_after_a_failover():
    group = sorted(n for n, s in ACTIONS.items() if s.verification.group_capacity)
    assert group == [
        "provision_standby_group",
        "provision_standby_instances",
        "provision_warm_pool",
        "replace_instance",
        "scale_out",
    ]
    assert [n for n, s in ACTIONS.items() if s.verification.impaired_out_of_service] == ["replace_instance"]
    assert ACTIONS["failover_dns"].verification.step_check == "actions.failover_dns:verify_step"
    rc = ACTIONS["failover_routing_control"].verification.step_check
    assert rc == "actions.failover_routing_control:verify_step"
    # a database is verified after any plan: nothing of the action's own
    assert ACTIONS["failover_database"].verification.step_check is None


def _plan(**fields) -> Plan:
    return Plan.model_validate({"name": "p", "match": {"impairment_types": ["instance_failure"]}, **fields})


def test_the_time_budget_adds_up_what_the_steps_declare():
    step = CAPACITY_WAIT_SECONDS + TASK_WITH_RETRIES_SECONDS
    plan = _plan(
        steps=[{"action": "scale_out", "params": {"return_after_seconds": 7200}}, {"action": "replace_instance"}],
        timeout_seconds=1800,
    )
    assert action_plans.rollback_seconds(plan) == 2 * TASK_WITH_RETRIES_SECONDS + 2 * step
    assert action_plans.holding_seconds(plan) == 1800 + 2 * step + action_plans.rollback_seconds(plan)
    assert action_plans.time_box_seconds(plan) == action_plans.holding_seconds(plan) + 7200 + TASK_WITH_RETRIES_SECONDS
    approval = _plan(steps=[{"action": "failover_database"}], requires_approval=True)
    assert action_plans.holding_seconds(approval) == 3600 + 3600 + step + action_plans.rollback_seconds(approval)
    kept = _plan(steps=[{"action": "scale_out", "params": {"keep": True}}])
    assert action_plans.time_box_seconds(kept) == action_plans.holding_seconds(kept) + TASK_WITH_RETRIES_SECONDS
    # a weights shift is put back after its expires_in: the execution lasts that long
    shifted = _plan(steps=[{"action": "redirect_shift_weights", "params": {"expires_in": "2h"}}])
    assert action_plans.time_box_seconds(shifted) == (
        action_plans.holding_seconds(shifted) + 7200 + TASK_WITH_RETRIES_SECONDS
    )


def _imported(module: str) -> dict[str, list[str]]:
    """The action modules and heavy packages importing `module` loads, in a fresh interpreter."""
    code = (
        f"import json, sys; import {module}; "
        "print(json.dumps({'actions': sorted(m for m in sys.modules if m.startswith('actions.')), "
        "'heavy': sorted(m for m in ('pydantic', 'boto3', 'botocore') if m in sys.modules)}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=FUNCTIONS, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output)


def test_the_declarations_import_no_sdk_and_no_action_code():
    loaded = _imported("actions.registry")
    assert loaded["heavy"] == []
    assert loaded["actions"] == ["actions.registry", "actions.specs"]


@pytest.mark.parametrize(
    "handler",
    [
        "orchestration.verify",
        "orchestration.finalize",
        "orchestration.return_capacity",
        "orchestration.check_guardrails",
        "orchestration.admit",
    ],
)
def test_the_workflows_tasks_read_the_declarations_without_importing_any_actions_code(handler):
    loaded = _imported(handler)["actions"]
    assert not [name for name in ACTIONS if f"actions.{name}" in loaded]
