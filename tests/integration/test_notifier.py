"""The notifier against a real HTTP server on 127.0.0.1 that answers as PagerDuty's Events API v2
(recoveryctl/pagerduty_server.py), fed as in the stack: pages published on the escalation topic
(moto), delivered raw to an SQS queue, received in a batch. The routing key is a Secrets Manager
secret (moto)."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import boto3
import pytest

from core import paging
from core.errors import PermanentError
from notify import notifier, pagerduty
from recoveryctl.pagerduty_server import FakePagerDuty
from tests.builders import REGION, impairment
from tests.emf import datapoints

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:recovery:web-api-1"


@pytest.fixture(autouse=True)
def _fresh_secret_cache() -> None:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()


@pytest.fixture
def topic(mocked_aws, monkeypatch) -> tuple[str, str]:
    """The escalation topic with the notifier's queue subscribed (raw delivery), and the secret."""
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name="escalations")["TopicArn"]
    url = sqs.create_queue(QueueName="notify", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="recovery/pagerduty", SecretString=ROUTING_KEY
    )
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY_SECRET", "recovery/pagerduty")
    monkeypatch.setenv("NOTIFY_QUEUE_URL", url)
    return topic_arn, url


@pytest.fixture
def server(monkeypatch) -> Any:
    with FakePagerDuty() as fake:
        monkeypatch.setenv("PAGERDUTY_EVENTS_URL", fake.url)
        yield fake


def batch(queue_url: str) -> dict[str, Any]:
    """What Lambda's SQS event source mapping hands the function: the messages waiting."""
    sqs = boto3.client("sqs", region_name=REGION)
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def run(queue_url: str, context: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Receive a batch, invoke the notifier, and delete what it did not report failed, as Lambda's
    event source mapping does: (the event, the function's answer)."""
    event = batch(queue_url)
    result = notifier.handler(event, context)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    sqs = boto3.client("sqs", region_name=REGION)
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])
    return event, result


def escalation_page(topic_arn: str) -> dict[str, Any]:
    model = impairment().model_dump(mode="json")
    message = {
        "summary": "Automatic recovery of web-api needs a human: not healthy after 10 verification attempts",
        "impairment_id": model["impairment_id"],
        "reason": "not healthy after 10 verification attempts",
        "execution": EXECUTION,
        "impairment": model,
        "plan": "replace-failed-instance",
        "actions": [{"action": "replace_instance", "result": "changed", "before": {"desired": 2}, "after": {}}],
        "next_steps": f"recoveryctl show {model['impairment_id']}",
    }
    paging.page(topic_arn, "web-api", "not healthy", message)
    return model


def test_a_page_triggers_and_its_resolve_closes_the_same_alert(topic, server, lambda_context):
    topic_arn, queue = topic
    # Given an escalation paged on the topic
    model = escalation_page(topic_arn)

    # When the notifier receives it
    result = run(queue, lambda_context)[1]

    # Then PagerDuty got one trigger with the context, keyed by the impairment id
    assert result == {"batchItemFailures": []}
    (trigger,) = server.events
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == model["impairment_id"]
    payload = trigger["payload"]
    assert payload["summary"].startswith("Automatic recovery of web-api needs a human")
    assert payload["source"] == "web-api"
    assert payload["severity"] == "error"  # a high impairment
    assert payload["class"] == "instance_failure"
    assert payload["custom_details"]["actions"][0]["before"] == {"desired": 2}
    assert payload["custom_details"]["next_steps"] == f"recoveryctl show {model['impairment_id']}"
    assert trigger["links"][0]["href"].endswith(f"#/v2/executions/details/{EXECUTION}")

    # When the impairment recovers and its resolve is published and received
    paging.resolve(topic_arn, "web-api", model["impairment_id"], "recovered")
    assert run(queue, lambda_context)[1] == {"batchItemFailures": []}

    # Then the resolve carries the same dedup key
    assert server.events[1] == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": model["impairment_id"],
    }


def test_an_approval_request_carries_the_commands_to_answer_it(topic, server, lambda_context):
    topic_arn, queue = topic
    message = {
        "summary": "Plan p needs a human's approval",
        "impairment_id": "web-api-2",
        "approve": "recoveryctl approve web-api-2",
        "reject": "recoveryctl reject web-api-2 --reason TEXT",
    }
    paging.page(topic_arn, "web-api", "approve plan p?", message)

    run(queue, lambda_context)[1]

    (trigger,) = server.events
    assert trigger["payload"]["custom_details"]["approve"] == "recoveryctl approve web-api-2"
    assert trigger["payload"]["class"] == "approval"
    assert "links" not in trigger  # no execution named: no link made up


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttled_or_failing_pagerduty_leaves_the_message_for_a_retry(topic, server, lambda_context, status, capsys):
    topic_arn, queue = topic
    server.answers = deque([status])
    escalation_page(topic_arn)
    event, result = run(queue, lambda_context)

    # Then the message is reported failed (back to the queue), and nothing was accepted yet
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert server.events == [] and [r["status"] for r in server.received] == [status]
    assert "PagerDutyDeliveriesRetried" in {d.name for d in datapoints(capsys.readouterr().out)}
    # And the next receive delivers it
    assert run(queue, lambda_context)[1] == {"batchItemFailures": []}
    assert len(server.events) == 1


def test_retry_after_holds_the_message_back_that_long(topic, server, lambda_context):
    topic_arn, queue = topic
    server.answers, server.retry_after = deque([429]), "120"
    escalation_page(topic_arn)

    run(queue, lambda_context)[1]

    # Then the message is invisible (its visibility timeout is PagerDuty's 120 s, not the queue's 0)
    assert batch(queue)["Records"] == []


def test_an_invalid_event_is_dropped_with_a_metric_not_retried(topic, server, lambda_context, capfd, caplog):
    topic_arn, queue = topic
    # Given a routing key PagerDuty refuses (400 invalid event)
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId="recovery/pagerduty", SecretString="too-short"
    )
    escalation_page(topic_arn)

    result = run(queue, lambda_context)[1]

    assert result == {"batchItemFailures": []}  # not retried: it would never succeed
    assert server.received[0]["status"] == 400 and server.events == []
    output = capfd.readouterr().out
    assert "NotificationsDropped" in {d.name for d in datapoints(output)}
    (dropped,) = [r for r in caplog.records if r.getMessage().startswith("notification dropped")]
    assert dropped.levelname == "ERROR"
    assert "routing_key" in str(dropped.errors)  # the structured log carries PagerDuty's errors


def test_pagerduty_unreachable_is_retried(topic, lambda_context, monkeypatch):
    topic_arn, queue = topic
    with FakePagerDuty() as gone:
        url = gone.url
    monkeypatch.setenv("PAGERDUTY_EVENTS_URL", url)  # nothing listens there any more
    escalation_page(topic_arn)
    event, result = run(queue, lambda_context)

    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]


def test_one_failure_in_a_batch_fails_only_that_message(topic, server, lambda_context):
    topic_arn, queue = topic
    server.answers = deque([202, 503])
    paging.page(topic_arn, "web-api", "one", {"impairment_id": "web-api-a", "summary": "a"})
    paging.page(topic_arn, "web-api", "two", {"impairment_id": "web-api-b", "summary": "b"})
    _, result = run(queue, lambda_context)

    assert len(result["batchItemFailures"]) == 1
    assert len(server.events) == 1


def test_the_systems_own_alarms_trigger_and_resolve_by_alarm_name(topic, server, lambda_context):
    topic_arn, queue = topic
    sns = boto3.client("sns", region_name=REGION)
    for state in ("ALARM", "INSUFFICIENT_DATA", "OK"):
        alarm = {"AlarmName": "stack-recovery-system-dead-letters", "NewStateValue": state, "NewStateReason": "1 msg"}
        sns.publish(TopicArn=topic_arn, Message=json.dumps(alarm), Subject=f"ALARM: {state}")

    run(queue, lambda_context)[1]

    # INSUFFICIENT_DATA sends nothing
    assert [(e["event_action"], e["dedup_key"]) for e in server.events] == [
        ("trigger", "alarm-stack-recovery-system-dead-letters"),
        ("resolve", "alarm-stack-recovery-system-dead-letters"),
    ]


def test_a_message_that_is_not_json_is_dropped(topic, server, lambda_context):
    topic_arn, queue = topic
    boto3.client("sns", region_name=REGION).publish(TopicArn=topic_arn, Message="plain text from someone")

    assert run(queue, lambda_context)[1] == {"batchItemFailures": []}
    assert server.received == []


def test_a_routing_key_stored_as_json_is_read_from_its_field(mocked_aws):
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="pd", SecretString=json.dumps({"routing_key": ROUTING_KEY})
    )
    assert notifier.routing_key("pd") == ROUTING_KEY


def test_the_routing_key_never_travels_in_clear_text_off_this_machine():
    with pytest.raises(PermanentError):
        pagerduty.send({}, "http://events.pagerduty.com/v2/enqueue")
    assert pagerduty.checked_url("http://127.0.0.1:8080/v2/enqueue")


def test_a_storm_summary_is_its_own_alert():
    body = paging.notification("web-api", "storm", {"summary": "3 more", "storm_key": "k", "dedup_key": "storm-s1"})
    event = pagerduty.event_of(body, ROUTING_KEY)
    assert event is not None and event["dedup_key"] == "storm-s1"
    assert event["payload"]["class"] == "storm_summary"
