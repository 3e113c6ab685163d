"""Custom steps (invoke_function, ssm_automation) at synthesis: their params validated with their
paths, and IAM only on what the plans name (infra/permissions.py plan_grants)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from actions.registry import ACTIONS
from infra.config import validate
from infra.permissions import allow_action, plan_grants
from infra.validation import check
from tests.conftest import cdk_context

MANAGED = ("recovery:managed", "true")
FN_ARN = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"


def with_plan(*steps: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["plans"] = [
        {"name": "custom", "match": {"impairment_types": ["application_error"]}, "steps": list(steps)},
        *raw["plans"],
    ]
    return raw


def problems(raw: dict[str, Any]) -> dict[str, str]:
    found = check(raw).problems
    for problem in found:
        assert "should match pattern" not in problem.message, problem
    return {p.path: p.message for p in found}


@pytest.mark.parametrize(
    ("params", "path", "says"),
    [
        ({}, "plans.0.steps.0.params.function_name", "is required"),
        ({"function_name": "bad name!"}, "plans.0.steps.0.params.function_name", "a Lambda function name"),
        (
            {"function_name": "f", "rollback_function": "arn:aws:s3:::bucket"},
            "plans.0.steps.0.params.rollback_function",
            "a Lambda function name",
        ),
        ({"function_name": "f", "timeout_seconds": 50}, "plans.0.steps.0.params.timeout_seconds", "at most 45"),
        (
            {"function_name": "f", "payload": {"phase": "apply", "cache": "x"}},
            "plans.0.steps.0.params.payload",
            "sets phase, which the input contract sets itself",
        ),
        ({"function_name": "f", "retries": 3}, "plans.0.steps.0.params.retries", "is not a field here"),
    ],
)
def test_invoke_function_params_are_checked_at_synthesis_with_their_paths(params, path, says):
    found = problems(with_plan({"action": "invoke_function", "params": params}))

    assert path in found, found
    assert says in found[path]


def test_a_valid_invoke_function_step_passes():
    step = {"action": "invoke_function", "params": {"function_name": "drain-cache", "payload": {"cache": "s"}}}
    assert problems(with_plan(step)) == {}


def _statements(action: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements a role gets for `action` under the configuration's plans."""
    config = validate(raw)
    stack = Stack(App(), "T")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    allow_action(role, ACTIONS[action], MANAGED, named=plan_grants(config.parsed_plans()).get(action, ()))
    policies = Template.from_stack(stack).find_resources("AWS::IAM::Policy")
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _by_action(statements: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in statements if name in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]


def test_invoke_function_may_invoke_only_the_named_functions_while_they_carry_the_managed_tag():
    # Given two plans naming three functions (one by ARN, in another account's region)
    other = "arn:aws:lambda:us-west-2:210987654321:function:cleanup:live"
    raw = with_plan(
        {"action": "invoke_function", "params": {"function_name": "drain", "rollback_function": "refill"}},
        {"action": "invoke_function", "params": {"function_name": other}},
    )

    statements = _statements("invoke_function", raw)

    # Then InvokeFunction is on those three only, tag-conditioned, in one statement
    (invoke,) = _by_action(statements, "lambda:InvokeFunction")
    resources = [r["Fn::Sub"] if isinstance(r, dict) else r for r in invoke["Resource"]]
    assert resources == [FN_ARN + "drain", FN_ARN + "refill", other]
    assert invoke["Condition"] == {"StringEquals": {"aws:ResourceTag/recovery:managed": "true"}}
    (read,) = _by_action(statements, "lambda:GetFunction")
    assert read["Resource"] == invoke["Resource"] and "Condition" not in read
    assert all("*" not in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]) for s in statements)


def test_without_a_plan_naming_a_function_nothing_may_be_invoked():
    statements = _statements("invoke_function", copy.deepcopy(cdk_context()["recovery"]))

    assert _by_action(statements, "lambda:InvokeFunction") == []
    assert _by_action(statements, "lambda:GetFunction") == []


def test_the_synthesized_stack_grants_no_invocation_when_no_plan_has_a_custom_step(resources):
    from tests.infra import cfn

    # (the state machine invokes its own functions: by their ARNs, never by a tag)
    granted = [
        (action, statement.get("Condition"))
        for _, _, statement in cfn.policy_statements(resources)
        for action in cfn.as_list(statement.get("Action", []))
        if action.startswith("lambda:")
    ]
    assert ("lambda:InvokeFunction", None) in granted
    assert all(condition is None and action != "lambda:GetFunction" for action, condition in granted)


RUNBOOK = "AWS-RestartEC2Instance"
ROLE = "arn:aws:iam::123456789012:role/recovery-automation"


@pytest.mark.parametrize(
    ("params", "path", "says"),
    [
        ({}, "plans.0.steps.0.params.document_name", "is required"),
        ({"document_name": "no spaces allowed"}, "plans.0.steps.0.params.document_name", "an SSM document name"),
        ({"document_name": RUNBOOK, "document_version": "v2"}, "plans.0.steps.0.params.document_version", "a number"),
        ({"document_name": RUNBOOK, "max_wait_seconds": 900}, "plans.0.steps.0.params.max_wait_seconds", "at most 540"),
        (
            {"document_name": RUNBOOK, "parameters": {"AutomationAssumeRole": "recovery-automation"}},
            "plans.0.steps.0.params.parameters",
            "AutomationAssumeRole must be one IAM role ARN",
        ),
        (
            {"document_name": RUNBOOK, "parameters": {"InstanceId": {"nested": 1}}},
            "plans.0.steps.0.params.parameters",
            "each value must be text or a list of texts",
        ),
        (
            {"document_name": RUNBOOK, "target_parameter": "InstanceId", "parameters": {"InstanceId": "i-1"}},
            "plans.0.steps.0.params",
            "also given in the parameters",
        ),
        (
            {"document_name": RUNBOOK, "rollback_parameters": {"X": "1"}},
            "plans.0.steps.0.params",
            "need a rollback_document",
        ),
    ],
)
def test_ssm_automation_params_are_checked_at_synthesis_with_their_paths(params, path, says):
    found = problems(with_plan({"action": "ssm_automation", "params": params}))

    assert path in found, found
    assert says in found[path]


def test_ssm_automation_may_start_only_the_named_runbooks_and_pass_only_the_given_role():
    shared = "arn:aws:ssm:us-east-1:210987654321:document/Acme-Shared"
    raw = with_plan(
        {
            "action": "ssm_automation",
            "params": {
                "document_name": RUNBOOK,
                "target_parameter": "InstanceId",
                "parameters": {"AutomationAssumeRole": ROLE},
                "rollback_document": shared,
            },
        }
    )

    statements = _statements("ssm_automation", raw)

    (start,) = _by_action(statements, "ssm:StartAutomationExecution")
    resources = [r["Fn::Sub"] if isinstance(r, dict) else r for r in start["Resource"]]
    assert resources == [
        f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:*:automation-definition/{RUNBOOK}:*",
        "arn:aws:ssm:us-east-1:210987654321:automation-definition/Acme-Shared:*",
    ]
    (passing,) = _by_action(statements, "iam:PassRole")
    assert passing["Resource"] == ROLE
    (reads,) = _by_action(statements, "ssm:GetAutomationExecution")
    assert "ec2:DescribeInstances" in reads["Action"]


def test_without_an_assume_role_no_role_may_be_passed():
    raw = with_plan({"action": "ssm_automation", "params": {"document_name": RUNBOOK}})

    statements = _statements("ssm_automation", raw)

    assert _by_action(statements, "iam:PassRole") == []
    assert len(_by_action(statements, "ssm:StartAutomationExecution")) == 1
