"""recoveryctl against a deployed stack, in moto: the stack found by its CloudFormation outputs,
impairments listed per workload of its template's metadata, executions and their history from
Step Functions, the switches, approvals answered through a real task token, and a drill through
SetAlarmState followed to the end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from core.store import RecoveryStore
from recoveryctl import cli, deployed_drill
from tests.builders import TABLE_NAME, create_table

REGION = "us-east-1"
STACK = "ImpairmentRecovery"
ALARM = "web-api-status-check"

# The recovery state machine's shape where it matters here: an approval waits on a task token
# (delivered through a queue, as a notification would carry it); everything else just succeeds.
DEFINITION = {
    "StartAt": "ApprovalRequired?",
    "States": {
        "ApprovalRequired?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.needs_approval", "IsPresent": True, "Next": "WaitForApproval"}],
            "Default": "Recovered",
        },
        "WaitForApproval": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl.$": "$.queue", "MessageBody": {"token.$": "$$.Task.Token"}},
            "ResultPath": "$.approval",
            "TimeoutSeconds": 300,
            "Next": "Recovered",
        },
        "Recovered": {"Type": "Succeed"},
    },
}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The deployed stack's parts in moto: table, state machine, and the CloudFormation stack whose
    outputs name them and whose metadata names the workloads and plans."""
    monkeypatch.delenv("RECOVERYCTL_TARGET", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        create_table(TABLE_NAME)
        role = boto3.client("iam", region_name=REGION).create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="RecoveryStateMachine", definition=json.dumps(DEFINITION), roleArn=role["Role"]["Arn"]
        )["stateMachineArn"]
        queue = boto3.client("sqs", region_name=REGION).create_queue(QueueName="approvals")["QueueUrl"]
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="escalations")["TopicArn"]
        template = {
            "Metadata": {
                "ImpairmentRecovery": {
                    "workloads": [{"name": "web-api"}, {"name": "orders"}],
                    "plans": [
                        {
                            "name": "replace-failed-instance",
                            "match": {"impairment_types": ["instance_failure"], "max_severity": "high"},
                            "steps": [{"action": "replace_instance", "params": {}}],
                        }
                    ],
                }
            },
            "Resources": {"EscalationTopic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {
                "RecoveryTableName": {"Value": TABLE_NAME},
                "RecoveryStateMachineArn": {"Value": machine},
                "RecoveryBusName": {"Value": "recovery-bus"},
                "EscalationTopicArn": {"Value": topic},
            },
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=STACK, TemplateBody=json.dumps(template)
        )
        yield {"machine": machine, "queue": queue, "store": RecoveryStore(TABLE_NAME), "sfn": sfn, "topic": topic}


def _impairment(workload: str, suffix: str, detected_at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "impairment_id": f"{workload}-{suffix}",
        "workload": workload,
        "impairment_type": fields.pop("impairment_type", "instance_failure"),
        "severity": "high",
        "detected_at": detected_at.isoformat(),
        "signal": {"source": "aws.cloudwatch", "name": ALARM, "signal_time": detected_at.isoformat()},
        "affected_resources": [{"resource_type": "ec2:instance", "resource_id": "i-0abc"}],
        "description": "EC2 status checks failing",
    }


def _record(stack: dict[str, Any], workload: str, suffix: str, age: timedelta, **fields: Any) -> str:
    impairment = _impairment(workload, suffix, datetime.now(UTC) - age)
    stack["store"].put_impairment(impairment, status=fields.pop("status", "recovered"), **fields)
    return impairment["impairment_id"]


def _start(stack: dict[str, Any], name: str, **extra: Any) -> str:
    payload = {"impairment": {"impairment_id": name, "signal": {"name": ALARM}}, **extra}
    return stack["sfn"].start_execution(stateMachineArn=stack["machine"], name=name, input=json.dumps(payload))[
        "executionArn"
    ]


def _wait(stack: dict[str, Any], arn: str) -> dict[str, Any]:
    for _ in range(200):
        described = stack["sfn"].describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.02)
    raise AssertionError("execution still running")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "--deployed", "--region", REGION])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_lists_every_workload_with_its_execution(stack, capsys):
    # Given records of two workloads, one older than the window, and a recovery's execution
    recovered = _record(stack, "web-api", "1111", timedelta(hours=2), outcome="recovered", mttr_seconds=42.0)
    running = _record(stack, "orders", "2222", timedelta(minutes=5), status="recovering")
    _record(stack, "web-api", "0000", timedelta(days=40), outcome="recovered")
    _wait(stack, _start(stack, recovered))

    # When
    code, out, _ = _run(capsys, "status", "--since", "7d", "--json")

    # Then
    data = json.loads(out)
    assert code == 0
    assert data["target"] == f"stack {STACK} in {REGION}"
    assert [r["impairment_id"] for r in data["open"]] == [running]
    assert [r["impairment_id"] for r in data["recent"]] == [recovered]
    assert data["recent"][0]["execution"]["status"] == "SUCCEEDED"


def test_show_reads_the_execution_history(stack, capsys):
    impairment_id = _record(stack, "web-api", "3333", timedelta(minutes=10), outcome="recovered")
    stack["store"].put_action(
        impairment_id, 0, "apply", {"status": "done", "action": "replace_instance", "before": {"a": 1}, "after": {}}
    )
    _wait(stack, _start(stack, impairment_id))

    code, out, _ = _run(capsys, "show", impairment_id)

    assert code == 0
    assert f"Step Functions execution {impairment_id}: SUCCEEDED" in out
    assert "ApprovalRequired?" in out and "Recovered" in out
    assert "apply      step 0 replace_instance" in out


def test_report_counts_drills_and_real_recoveries_apart(stack, capsys):
    _record(stack, "web-api", "4444", timedelta(hours=1), outcome="recovered", mttr_seconds=30.0, mttd_seconds=5.0)
    _record(stack, "orders", "5555", timedelta(hours=1), outcome="escalated", mttd_seconds=9.0)
    _record(stack, "web-api", "6666", timedelta(hours=1), outcome="recovered", mttr_seconds=60.0, drill=True)

    code, out, _ = _run(capsys, "report", "--json")

    data = json.loads(out)
    assert code == 0
    assert data["overall"]["real"]["attempted"] == 2 and data["overall"]["real"]["success_rate"] == 0.5
    assert data["overall"]["drill"]["recovered"] == 1
    assert data["overall"]["real"]["mttr_seconds"]["p50"] == 30.0


def test_a_missing_stack_says_how_to_deploy_it(stack, capsys):
    code, _, err = _run(capsys, "status", "--stack", "NoSuchStack")
    assert code == 2
    assert f"stack NoSuchStack not found in {REGION}: deploy it with `make deploy`" in err


def test_pause_resume_and_plan_switches_write_the_table(stack, capsys):
    store = stack["store"]

    assert _run(capsys, "pause", "--reason", "game day")[0] == 0
    switches = store.get_switches()
    assert switches["paused"] is True and switches["pause_reason"] == "game day"
    assert "moto" in switches["changed_by"] or switches["changed_by"].startswith("arn:aws")

    assert _run(capsys, "plans", "disable", "replace-failed-instance")[0] == 0
    assert store.get_switches()["disabled_plans"] == ["replace-failed-instance"]
    code, out, _ = _run(capsys, "plans", "list")
    assert "DISABLED  replace-failed-instance" in out
    code, _, err = _run(capsys, "plans", "enable", "unknown-plan")
    assert code == 2 and "replace-failed-instance" in err

    assert _run(capsys, "resume")[0] == 0
    assert store.get_switches()["paused"] is False


# --- approvals --------------------------------------------------------------------------------
def _awaiting_approval(stack: dict[str, Any], suffix: str) -> tuple[str, str]:
    """An execution that waits on a task token, and its impairment record saying so."""
    impairment_id = _record(stack, "web-api", suffix, timedelta(minutes=1), status="awaiting_approval")
    arn = _start(stack, impairment_id, needs_approval=True, queue=stack["queue"])
    sqs = boto3.client("sqs", region_name=REGION)
    for _ in range(200):
        messages = sqs.receive_message(QueueUrl=stack["queue"]).get("Messages")
        if messages:
            break
        time.sleep(0.02)
    token = json.loads(messages[0]["Body"])["token"]
    sqs.delete_message(QueueUrl=stack["queue"], ReceiptHandle=messages[0]["ReceiptHandle"])
    now = datetime.now(UTC)
    stack["store"].update_impairment(
        impairment_id,
        approval={
            "status": "pending",
            "task_token": token,
            "requested_at": now.isoformat(),
            "expires_at": (now + timedelta(minutes=5)).isoformat(),
            "plan": "replace-failed-instance",
        },
    )
    return impairment_id, arn


def test_approve_sends_task_success_and_records_who(stack, capsys):
    impairment_id, arn = _awaiting_approval(stack, "7777")

    code, out, _ = _run(capsys, "approve", impairment_id, "--reason", "looks right")

    assert code == 0 and "approved" in out
    execution = _wait(stack, arn)
    assert execution["status"] == "SUCCEEDED"
    sent = json.loads(execution["output"])["approval"]
    assert sent["approved"] is True and sent["reason"] == "looks right" and sent["by"]
    approval = stack["store"].get_impairment(impairment_id)["approval"]
    assert approval["status"] == "approved" and approval["by"] == sent["by"] and approval["reason"] == "looks right"


def test_reject_fails_the_task_as_rejected(stack, capsys):
    impairment_id, arn = _awaiting_approval(stack, "8888")

    code, out, _ = _run(capsys, "reject", impairment_id, "--reason", "not during the sale")

    assert code == 0 and "rejected" in out
    execution = _wait(stack, arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "ApprovalRejected"  # (moto drops SendTaskFailure's cause)
    approval = stack["store"].get_impairment(impairment_id)["approval"]
    assert approval["status"] == "rejected" and approval["reason"] == "not during the sale"


def test_an_expired_approval_says_it_timed_out_and_changes_nothing(stack, capsys):
    impairment_id, _ = _awaiting_approval(stack, "9999")
    store = stack["store"]
    stale = {**store.get_impairment(impairment_id)["approval"], "task_token": "a-token-step-functions-forgot"}
    store.update_impairment(impairment_id, approval=stale)

    code, _, err = _run(capsys, "approve", impairment_id)

    assert code == 1
    assert "timed out" in err and "escalated" in err and "InvalidToken" in err
    assert store.get_impairment(impairment_id)["approval"]["status"] == "pending"


def test_approving_what_needs_no_approval_is_explained(stack, capsys):
    plain = _record(stack, "web-api", "aaaa", timedelta(minutes=1), status="recovering")

    code, _, err = _run(capsys, "approve", plain)
    assert code == 2 and "has no approval request" in err

    code, _, err = _run(capsys, "reject", "web-api-ffff")
    assert code == 2 and "no impairment web-api-ffff" in err


# --- a drill of the deployed stack --------------------------------------------------------------
def test_drill_sets_the_alarm_and_follows_the_execution_it_starts(stack, monkeypatch, capsys):
    # Given the workload's alarm, and a stand-in for the deployed detector: when the drill first
    # waits, the alarm's impairment is recorded and its execution starts
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="StatusCheckFailed",
        Namespace="AWS/EC2",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    started: list[str] = []

    def detector_then_wait(seconds: float) -> None:
        if not started:
            assert cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["StateValue"] == "ALARM"
            impairment_id = _record(
                stack, "web-api", "d1d1", timedelta(0), outcome="recovered", mttd_seconds=3.0, mttr_seconds=41.0
            )
            started.append(_start(stack, impairment_id))
        time.sleep(0.02)

    monkeypatch.setattr(deployed_drill, "_sleep", detector_then_wait)

    # When
    code, out, err = _run(capsys, "drill", "--alarm", ALARM, "--timeout", "20", "--poll-seconds", "0.01")

    # Then it set the alarm the standard way, showed progress, and reports the recovery
    assert code == 0, err
    alarm = cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]
    assert alarm["StateReason"].startswith("recoveryctl drill")
    assert "waiting for detection" in err and "execution web-api-d1d1 started" in err and "Recovered" in err
    assert "outcome    recovered (MTTD 3.0 s, MTTR 41.0 s)" in out
    assert "recoveryctl show web-api-d1d1 --deployed" in out


def test_drill_of_an_unknown_alarm_or_with_nothing_detected(stack, capsys):
    code, _, err = _run(capsys, "drill", "--alarm", "web-api-nope")
    assert code == 2 and "no alarm named web-api-nope" in err

    boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
        AlarmName=ALARM,
        MetricName="StatusCheckFailed",
        Namespace="AWS/EC2",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    code, _, err = _run(capsys, "drill", "--alarm", ALARM, "--timeout", "0", "--poll-seconds", "0")
    assert code == 1 and "no recovery started" in err and "onboarded" in err


# --- can a page reach anyone? ----------------------------------------------------------------


def _subscribe(stack: dict[str, Any], protocol: str, endpoint: str) -> None:
    boto3.client("sns", region_name=REGION).subscribe(TopicArn=stack["topic"], Protocol=protocol, Endpoint=endpoint)


def _leave_pending(endpoint: str) -> None:
    """moto confirms every subscription at once; SNS lists one still awaiting its confirmation
    with SubscriptionArn "PendingConfirmation"."""
    from moto.sns.models import sns_backends

    backend = sns_backends["123456789012"][REGION]
    (subscription,) = [s for s in backend.subscriptions.values() if s.endpoint == endpoint]
    subscription.arn = "PendingConfirmation"


def test_status_says_plainly_that_no_one_can_receive_a_page(stack, capsys):
    # Given the deployed escalation topic has no subscription at all
    # When
    code, out, _ = _run(capsys, "status")

    # Then the status says so, naming the topic and what to do
    assert code == 0
    line = next(line for line in out.splitlines() if "NO ONE CAN RECEIVE A PAGE" in line)
    assert stack["topic"] in line and "escalation_emails" in line

    code, out, _ = _run(capsys, "status", "--json")
    assert json.loads(out)["paging"] == {
        "topic_arn": stack["topic"],
        "confirmed": 0,
        "pending": 0,
        "by_protocol": {},
        "can_page": False,
    }


def test_a_subscription_pending_confirmation_pages_no_one(stack, capsys):
    # Given the on-call's email subscription was never confirmed
    _subscribe(stack, "email", "oncall@example.com")
    _leave_pending("oncall@example.com")

    code, out, _ = _run(capsys, "status")

    assert code == 0
    line = next(line for line in out.splitlines() if "NO ONE CAN RECEIVE A PAGE" in line)
    assert "1 pending confirmation" in line


def test_every_page_of_subscriptions_is_read_and_only_confirmed_ones_count(stack, capsys):
    # Given 100 confirmed email subscriptions (a whole page of ListSubscriptionsByTopic), then an
    # SMS one on the second page, and one email never confirmed
    for n in range(100):
        _subscribe(stack, "email", f"oncall+{n}@example.com")
    _subscribe(stack, "sms", "+15550100001")
    _subscribe(stack, "email", "new-hire@example.com")
    _leave_pending("new-hire@example.com")

    code, out, _ = _run(capsys, "status", "--json")

    paging = json.loads(out)["paging"]
    assert code == 0
    assert paging["by_protocol"] == {"email": 100, "sms": 1}
    assert (paging["confirmed"], paging["pending"], paging["can_page"]) == (101, 1, True)
    code, out, _ = _run(capsys, "status")
    assert "pages reach 101 confirmed subscription(s) (email 100, sms 1); 1 pending confirmation" in out
    assert "NO ONE CAN RECEIVE A PAGE" not in out


def test_a_table_read_denied_says_which_credentials_to_use(stack, capsys, monkeypatch):
    # The store classifies DynamoDB's failures (a RecoveryError); recoveryctl still says in words
    # what the AWS error behind it means
    from botocore.exceptions import ClientError

    from core.dynamo import call
    from core.store import RecoveryStore

    def get_item(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no dynamodb:GetItem"}}, "GetItem")

    monkeypatch.setattr(RecoveryStore, "get_switches", lambda self: call("dynamodb:GetItem", get_item))
    code, _, err = _run(capsys, "plans", "list")
    assert code == 2
    assert "access denied (no dynamodb:GetItem): use credentials allowed to operate the stack" in err
