"""Paging beyond email, as configured: the notifier (PagerDuty, OpsItems) fed by a queue on the
escalation topic, with its dead-letter queue alarmed, and Chatbot channels on the topic; nothing of
it when the configuration asks for none."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from infra.validation import check
from tests.conftest import cdk_context
from tests.infra import cfn

SECRET = "recovery/pagerduty"
SLACK = {"workspace_id": "T0123ABCD", "channel_id": "C0123ABCD"}
TEAMS = {
    "team_id": "01234567-89ab-cdef-0123-456789abcdef",
    "tenant_id": "fedcba98-7654-3210-fedc-ba9876543210",
    "channel_id": "19%3ab6ef35dc342d4ebbb9cbe9b2e4e4d0b9%40thread.tacv2",
}


def configured(**paging: Any) -> dict[str, Any]:
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["paging"] = paging
    return raw


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    """The stack with PagerDuty, OpsItems and both chat channels configured (no email subscriber)."""
    import aws_cdk as cdk

    from infra.config import validate
    from infra.stack import RecoveryStack

    config = validate(
        configured(pagerduty={"routing_key_secret": SECRET}, ops_items=True, chatbot={"slack": SLACK, "teams": TEAMS})
    )
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.paging")), context=cdk_context())
    stack = RecoveryStack(app, config.stack_name, config=config)
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    return template["Resources"], stack


def notifier(resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return next((k, r) for k, r in cfn.of_type(resources, "AWS::Lambda::Function").items() if k.startswith("Notifier"))


def test_the_notifier_reads_a_raw_queue_on_the_topic_reporting_each_failure(paged):
    resources, _ = paged
    (subscription,) = [
        r["Properties"]
        for r in cfn.of_type(resources, "AWS::SNS::Subscription").values()
        if r["Properties"]["Protocol"] == "sqs"
    ]
    assert subscription["RawMessageDelivery"] is True
    queue_id = cfn.get_att(subscription["Endpoint"])
    queue = resources[queue_id]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 20
    assert queue["VisibilityTimeout"] == 180  # six times the notifier's 30 s
    (mapping,) = cfn.of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert cfn.get_att(mapping["Properties"]["EventSourceArn"]) == queue_id


def test_the_routing_key_is_named_never_held_and_readable_only_by_the_notifier(paged):
    resources, _ = paged
    name, function = notifier(resources)
    environment = function["Properties"]["Environment"]["Variables"]
    assert environment["PAGERDUTY_ROUTING_KEY_SECRET"] == SECRET
    assert environment["OPS_ITEMS"] == "true"
    readers = {
        role: statement["Resource"]
        for role, _, statement in cfn.policy_statements(resources)
        if "secretsmanager:GetSecretValue" in json.dumps(statement["Action"])
    }
    (policy,) = readers  # one policy grants it: the notifier role's
    assert resources[policy]["Properties"]["Roles"] == [{"Ref": function["Properties"]["Role"]["Fn::GetAtt"][0]}], name
    assert f":secret:{SECRET}-??????" in json.dumps(readers)


def test_the_paging_dead_letters_and_dropped_pages_are_alarmed_to_the_topic(paged):
    resources, _ = paged
    alarms = {
        r["Properties"]["AlarmName"]: r["Properties"] for r in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()
    }
    dead = next(a for n, a in alarms.items() if n.endswith("-paging-dead-letters"))
    assert dead["AlarmActions"] and dead["Dimensions"][0]["Name"] == "QueueName"
    dropped = next(a for n, a in alarms.items() if n.endswith("-notifications-dropped"))
    assert "NotificationsDropped" in json.dumps(dropped) and dropped["AlarmActions"]


def test_chat_channels_are_subscribed_with_a_role_holding_nothing_and_a_read_only_guardrail(paged):
    resources, stack = paged
    (slack,) = cfn.of_type(resources, "AWS::Chatbot::SlackChannelConfiguration").values()
    (teams,) = cfn.of_type(resources, "AWS::Chatbot::MicrosoftTeamsChannelConfiguration").values()
    for channel in (slack["Properties"], teams["Properties"]):
        assert len(channel["SnsTopicArns"]) == 1 and len(channel["GuardrailPolicies"]) == 1
    assert slack["Properties"]["SlackWorkspaceId"] == SLACK["workspace_id"]
    (guardrail,) = [
        p
        for p in cfn.of_type(resources, "AWS::IAM::ManagedPolicy").values()
        if "Chatbot" in str(p["Properties"].get("Description"))
    ]
    actions = {a for s in guardrail["Properties"]["PolicyDocument"]["Statement"] for a in s["Action"]}
    assert actions == {"states:DescribeExecution", "states:GetExecutionHistory", "cloudwatch:DescribeAlarms"}
    role_id = cfn.get_att(teams["Properties"]["IamRoleArn"])
    attached = [
        p for p in cfn.of_type(resources, "AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    assert attached == [] and not resources[role_id]["Properties"].get("ManagedPolicyArns")
    # PagerDuty and chat reach the on-call: no warning that pages go nowhere
    from aws_cdk.assertions import Annotations, Match

    assert Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("PAGES GO NOWHERE")) == []


def test_nothing_of_it_when_not_configured(synthesized):
    resources = synthesized.resources
    assert not [k for k in cfn.of_type(resources, "AWS::Lambda::Function") if k.startswith("Notifier")]
    assert not cfn.of_type(resources, "AWS::Lambda::EventSourceMapping")
    assert not cfn.of_type(resources, "AWS::Chatbot::SlackChannelConfiguration")


@pytest.mark.parametrize(
    ("paging", "path", "says"),
    [
        (
            {"pagerduty": {"routing_key_secret": "0123456789abcdef0123456789ABCDEF"}},
            "paging.pagerduty.routing_key_secret",
            "looks like a routing key itself",
        ),
        ({"pagerduty": {"routing_key": "x"}}, "paging.pagerduty.routing_key", "is not a field here"),
        ({"chatbot": {}}, "paging.chatbot", "name a slack or a teams channel"),
        (
            {"chatbot": {"slack": {"workspace_id": "t-1", "channel_id": "C1"}}},
            "paging.chatbot.slack.workspace_id",
            "Slack",
        ),
    ],
)
def test_paging_configuration_problems_are_named_by_their_path(paging, path, says):
    found = {p.path: p.message for p in check(configured(**paging)).problems}
    assert says in found[path], found


def test_a_secret_arn_cannot_serve_several_regions():
    raw = configured(
        pagerduty={"routing_key_secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:recovery/pd-AbCdEf"}
    )
    raw["regions"] = {"primary": "us-east-1", "standby": ["us-west-2"]}
    found = {p.path: p.message for p in check(raw).problems}
    assert "give the secret's name" in found["paging.pagerduty.routing_key_secret"]


def test_pagerduty_or_chat_satisfies_require_escalation_subscriber():
    raw = configured(pagerduty={"routing_key_secret": SECRET})
    raw["require_escalation_subscriber"] = True
    assert check(raw).problems == []
