"""The recovery table's integrity: every repository calls through the client (or session) it is
given, an update never creates a stub record, and counting a probe's failure ends."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from core import aws, paging
from core.dynamo import ATTEMPTS
from core.errors import ImpairmentNotRecorded, TransientError
from core.store import Claim, RecoveryStore
from orchestration import escalate
from tests.builders import REGION, TABLE_NAME, capture_topic, impairment, received
from tests.wire import error_of

IMPAIRMENT = {
    "impairment_id": "web-api-1",
    "workload": "web-api",
    "detected_at": "2026-01-01T00:00:00+00:00",
    "signal": {"signal_time": "2026-01-01T00:00:00+00:00"},
}
SIGNAL = {"signal": {"signal_time": "2025-12-31T23:59:00+00:00"}}


def _every_repository(store: RecoveryStore) -> None:
    """One call of each repository: records, actions, locks, windows, escalations, budgets,
    switches and probes."""
    from datetime import UTC, datetime

    store.put_impairment(IMPAIRMENT, status="detected")
    store.update_impairment("web-api-1", status="admitted")
    store.get_impairment("web-api-1")
    store.list_impairments("web-api")
    store.link_signal("web-api-1", SIGNAL)
    store.put_action("web-api-1", 0, "apply", {"status": "started"})
    store.get_action("web-api-1", 0, "apply")
    store.fail_started_actions("web-api-1", "boom")
    store.acquire_locks("web-api-1", ["autoscaling:group:web-api-asg"], 600)
    store.correlate("web-api-1", ["autoscaling:group:web-api-asg"], 300, datetime.now(UTC))
    store.claim_escalation("web-api-1", ["autoscaling:group:web-api-asg"], 600)
    store.take_budgets("web-api-1", [Claim("rate_limit", "BUDGET#workload#web-api", 5, 1, 4102444800)])
    store.budget_holders("BUDGET#workload#web-api")
    store.set_paused(True, "freeze", "ops")
    store.set_plan_enabled("replace_instance", False, "ops")
    store.get_switches()
    counted = store.probe_failed("web-api", "us-east-1", "tick-1", "timeout", 3600)
    store.probe_published("web-api", "us-east-1", counted["first_failure_at"], "web-api-1")
    store.reset_probe("web-api", "us-east-1", counted["first_failure_at"])
    store.release_locks("web-api-1", ["autoscaling:group:web-api-asg"])


def _recording(events: Any) -> list[str]:
    calls: list[str] = []
    events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


@pytest.fixture
def no_other_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any DynamoDB client or resource made outside the one given fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a client or resource was made besides the one given: {args} {kwargs}")

    monkeypatch.setattr(aws, "client", refuse)
    monkeypatch.setattr(boto3, "client", refuse)
    monkeypatch.setattr(boto3, "resource", refuse)


EVERY_OPERATION = {
    "PutItem",
    "UpdateItem",
    "GetItem",
    "Query",
    "DeleteItem",
    "BatchGetItem",
    "TransactWriteItems",
}


def test_every_repository_reads_and_writes_through_the_injected_client(store, no_other_client):
    # Given a client of its own (recoveryctl's, made from a profile's session)
    client = boto3.session.Session(region_name=REGION).client("dynamodb")
    calls = _recording(client.meta.events)
    injected = RecoveryStore(TABLE_NAME, client=client)

    # When every repository reads and writes, no other client or resource is made (the
    # fixture fails the test), and each call went through the one given
    _every_repository(injected)
    assert set(calls) == EVERY_OPERATION


def test_a_session_gives_the_repositories_and_the_table_resource_their_client(store, no_other_client):
    # A boto3 Session (recoveryctl --profile): the repositories' client and the Table resource
    # recoveryctl scans with are both the session's, not the default credentials'
    session = boto3.session.Session(region_name=REGION)
    calls = _recording(session.events)
    from_session = RecoveryStore(TABLE_NAME, session=session)

    from_session.put_impairment(IMPAIRMENT, status="detected")
    assert from_session.get_impairment("web-api-1")["workload"] == "web-api"
    assert from_session.table.scan()["Count"] == 1
    assert calls == ["PutItem", "GetItem", "Scan"]


def test_an_update_of_a_missing_impairment_writes_nothing_and_says_so(store):
    # When an update names an impairment nothing recorded
    with pytest.raises(ImpairmentNotRecorded) as caught:
        store.update_impairment("never-recorded", status="escalated", outcome="escalated")

    # Then it is a permanent error naming it, and no stub record was created
    assert caught.value.details == {"impairment_id": "never-recorded"}
    assert store.get_impairment("never-recorded") is None
    assert store.table.scan()["Items"] == []


def test_an_update_of_a_recorded_impairment_still_sets_its_fields(store):
    store.put_impairment(IMPAIRMENT, status="detected")
    store.update_impairment("web-api-1", status="admitted", lock_keys=["a"])
    record = store.get_impairment("web-api-1")
    assert (record["status"], record["lock_keys"], record["workload"]) == ("admitted", ["a"], "web-api")


def test_linking_a_signal_to_a_missing_impairment_creates_no_record(store):
    store.link_signal("gone-1", SIGNAL)
    assert store.table.scan()["Items"] == []


def test_linking_a_signal_appends_it_and_moves_mttd_to_the_earliest_signal(store):
    store.put_impairment(IMPAIRMENT, status="detected")
    store.link_signal("web-api-1", SIGNAL)
    record = store.get_impairment("web-api-1")
    assert record["linked_signals"] == [SIGNAL]
    assert record["mttd_seconds"] == 60


def test_escalating_an_impairment_with_no_record_records_it_whole_and_pages(store, lambda_context, monkeypatch):
    # Given an execution whose impairment was never recorded (its Start died before the put)
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    model = impairment()
    event = {"impairment": model.model_dump(mode="json"), "error": {"Error": "PermanentError", "Cause": "boom"}}

    # When it escalates
    escalate.handler(event, lambda_context)

    # Then the on-call is paged, and the record is the whole impairment with its outcome: listed
    # under its workload (a stub would have no workload and no index keys)
    (notification,) = received(queue)
    assert paging.details(json.loads(notification["Message"]))["impairment_id"] == model.impairment_id
    record = store.get_impairment(model.impairment_id)
    assert record["workload"] == model.workload
    assert record["impairment"]["affected_resources"] == event["impairment"]["affected_resources"]
    assert (record["outcome"], record["page_status"]) == ("escalated", "sent")
    assert [r["impairment_id"] for r in store.list_impairments(model.workload)] == [model.impairment_id]


class ResetAlways:
    """A table whose probe item is reset between every count and its read: the count's condition
    fails (this tick looks counted) and the read finds no item, every time."""

    def __init__(self) -> None:
        self._client = boto3.client("dynamodb", region_name=REGION)
        self.counts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **_: Any) -> Any:
        self.counts += 1
        raise error_of("dynamodb", "ConditionalCheckFailedException", 400)[1]

    def get_item(self, **_: Any) -> Any:
        return {}


def test_counting_a_probe_that_is_reset_every_time_ends_in_a_transient_error(store):
    client = ResetAlways()
    with pytest.raises(TransientError, match="reset while counting"):
        RecoveryStore(TABLE_NAME, client=client).probe_failed("web-api", "us-east-1", "tick-1", "timeout", 3600)
    assert client.counts == ATTEMPTS


def test_a_probe_reset_once_while_counting_is_counted_as_a_new_series(store):
    # The first count finds the tick counted, the read finds the series reset meanwhile: counted
    # again, as the first failure of a new series
    class ResetOnce(ResetAlways):
        def update_item(self, **kwargs: Any) -> Any:
            self.counts += 1
            if self.counts == 1:
                raise error_of("dynamodb", "ConditionalCheckFailedException", 400)[1]
            return self._client.update_item(**kwargs)

    client = ResetOnce()
    counted = RecoveryStore(TABLE_NAME, client=client).probe_failed("web-api", "us-east-1", "tick-1", "timeout", 3600)
    assert counted["failures"] == 1
    assert client.counts == 2
