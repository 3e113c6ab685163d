"""Storms under moto: escalations of one cause within the storm window page once, at once, and
one summary lists the rest; every impairment's record names the page that carries it, and
nothing escalated is left out of a page (races, a window that ended, a summary that failed, a
leader whose execution died before summarizing)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from core import paging, storms
from core.errors import PublishError, TransientError
from orchestration import escalate, execution_ended, storm
from tests.builders import capture_topic, impairment, received

ERROR = {"Error": "ActionFailed", "Cause": "ec2:TerminateInstances failed: boom"}


@pytest.fixture
def pages(store, monkeypatch) -> str:
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    return queue


def _escalate(store, lambda_context, n: int, workload: str = "web-api", **state: Any) -> tuple[str, dict[str, Any]]:
    """Escalate the n-th impairment (its own instance and signal) with an action that failed."""
    model = impairment(
        workload=workload, instances=[f"i-{n:017x}"], signal_id=f"arn:aws:cloudwatch:us-east-1:1:alarm:{workload}-{n}"
    )
    store.put_impairment(model.model_dump(mode="json"), status="recovering")
    result = escalate.handler({"impairment": model.model_dump(mode="json"), "error": ERROR, **state}, lambda_context)
    return model.impairment_id, result


def _messages(queue: str) -> list[dict[str, Any]]:
    return [paging.details(json.loads(n["Message"])) for n in received(queue)]


def test_the_first_pages_at_once_the_rest_are_listed_in_one_summary(store, pages, lambda_context, frozen_clock):
    # Given three recoveries of one workload failing the same way within the window
    first, led = _escalate(store, lambda_context, 1)
    (page,) = _messages(pages)
    frozen_clock.advance(10)
    second, joined = _escalate(store, lambda_context, 2)
    frozen_clock.advance(10)
    third, _ = _escalate(store, lambda_context, 3)

    # Then the first paged at once, saying a summary follows, and leads the storm
    assert page["impairment_id"] == first
    assert led["storm"]["leader"] is True and page["storm"]["storm_id"] == led["storm"]["storm_id"]
    assert led["storm"]["summary_at"].endswith("Z")
    # and the others paged nobody: their records name the storm whose summary carries them
    assert _messages(pages) == []
    assert joined["storm"]["leader"] is False and joined["paged"] is False
    for member in (second, third):
        record = store.get_impairment(member)
        assert record["outcome"] == "escalated"
        assert record["page_status"] == "aggregated"
        assert record["storm"]["storm_id"] == led["storm"]["storm_id"]
        assert record["storm"]["leader_impairment_id"] == first
    assert store.get_impairment(first)["page_status"] == "sent"

    # When the window ends and the leader's execution summarizes
    frozen_clock.advance(300)
    summary = storm.handler({"storm": led["storm"]}, lambda_context)

    # Then one page lists the two others, with their reasons
    (message,) = _messages(pages)
    assert [m["impairment_id"] for m in message["impairments"]] == [second, third]
    assert message["count"] == 2 and message["leader_impairment_id"] == first
    assert all("ActionFailed" in m["reason"] for m in message["impairments"])
    assert summary["summary_status"] == "sent"
    # and asked again (a retried task, the execution-ended backstop), it sends nothing more
    storm.handler({"storm": led["storm"]}, lambda_context)
    assert _messages(pages) == []


def test_after_the_window_an_escalation_pages_at_once_and_leads_a_new_storm(store, pages, lambda_context, frozen_clock):
    _, led = _escalate(store, lambda_context, 1)
    frozen_clock.advance(300)  # the window is over (its leader has not summarized yet)

    late, result = _escalate(store, lambda_context, 2)

    assert [m["impairment_id"] for m in _messages(pages)] == [led["impairment_id"], late]
    assert result["storm"]["leader"] is True and result["storm"]["storm_id"] != led["storm"]["storm_id"]
    # the first storm, summarized late, has nobody to list: nothing is sent
    assert storm.handler({"storm": led["storm"]}, lambda_context)["summary_status"] == "not_needed"
    assert _messages(pages) == []


def test_a_storm_summarized_early_is_not_joined_the_next_escalation_pages(store, pages, lambda_context):
    # Given a storm its leader summarized before the window's end (its execution died waiting)
    _, led = _escalate(store, lambda_context, 1)
    storm.handler({"storm": led["storm"]}, lambda_context)
    received(pages)

    # When another escalation of the cause comes
    later, result = _escalate(store, lambda_context, 2)

    # Then it is not listed in a summary already sent: it pages at once
    assert [m["impairment_id"] for m in _messages(pages)] == [later]
    assert result["storm"]["leader"] is True


def test_different_workloads_and_causes_are_separate_storms(store, pages, lambda_context):
    _escalate(store, lambda_context, 1, workload="web-api")
    _escalate(store, lambda_context, 2, workload="checkout")
    _escalate(store, lambda_context, 3, error=None, verification={"healthy": False, "attempt": 6})

    assert len(_messages(pages)) == 3


def test_two_escalations_of_one_cause_at_once_make_exactly_one_leader(store, monkeypatch):
    # Given two escalations that both read "no storm open" before either writes
    barrier = threading.Barrier(2, timeout=10)
    original = storms.Storms._head
    first_read: set[int] = set()

    def head_then_meet(self, key):
        found = original(self, key)
        if threading.get_ident() not in first_read:
            first_read.add(threading.get_ident())
            barrier.wait()
        return found

    monkeypatch.setattr(storms.Storms, "_head", head_then_meet)
    # DynamoDB's transactions are isolated; moto writes a transaction's items one by one, so two
    # at once could both pass their conditions (seen on a loaded machine): serialize them.
    from moto.dynamodb.models import DynamoDBBackend

    lock, transact = threading.Lock(), DynamoDBBackend.transact_write_items

    def isolated(self, transact_items):
        with lock:
            return transact(self, transact_items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", isolated)
    roles: dict[str, str] = {}

    def enter(impairment_id: str) -> None:
        # As the state machine runs the task: a contended storm is transient, and retried. (moto
        # writes a transaction's items one by one, so on a loaded machine the other thread may
        # read the storm's head before its storm item exists; DynamoDB's are isolated.)
        for _ in range(20):
            try:
                roles[impairment_id] = store.storms.enter(
                    "web-api#ActionFailed", impairment_id, {"reason": "x"}, 300
                ).role
                return
            except TransientError:
                time.sleep(0.05)

    # When both enter the storm at once
    threads = [threading.Thread(target=enter, args=(i,)) for i in ("imp-a", "imp-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one leads (and pages) and the other joins its storm
    assert sorted(roles.values()) == ["leader", "member"]
    leader = next(i for i, role in roles.items() if role == "leader")
    member = next(i for i, role in roles.items() if role != "leader")
    head = original(store.storms, "web-api#ActionFailed")
    assert head["leader"] == leader
    store.storms.close("web-api#ActionFailed", head["storm_id"])
    roster = store.storms.roster("web-api#ActionFailed", head["storm_id"])
    assert [m["impairment_id"] for m in roster.listed] == [member] and roster.count == 1


def test_past_the_listed_bound_members_are_counted(store, pages, lambda_context, monkeypatch):
    monkeypatch.setattr(storms, "LISTED", 2)
    _, led = _escalate(store, lambda_context, 1)
    members = [_escalate(store, lambda_context, n)[0] for n in range(2, 6)]
    received(pages)

    storm.handler({"storm": led["storm"]}, lambda_context)

    (message,) = _messages(pages)
    assert len(message["impairments"]) == 2 and message["not_listed"] == 2 and message["count"] == 4
    # those not listed still name the storm on their records
    assert {store.get_impairment(m)["storm"]["storm_id"] for m in members} == {led["storm"]["storm_id"]}


def test_a_summary_that_fails_is_recorded_and_retried(store, pages, lambda_context):
    _, led = _escalate(store, lambda_context, 1)
    _escalate(store, lambda_context, 2)
    received(pages)

    class Down:
        def publish(self, **kwargs: Any) -> None:
            raise PublishError("sns:Publish failed: throttled")

    with pytest.raises(TransientError):
        storm.handler({"storm": led["storm"]}, lambda_context, sns=Down())
    item = store.storms.get(led["storm"]["key"], led["storm"]["storm_id"])
    assert item["summary_status"] == "failed" and "throttled" in item["page_error"]

    storm.handler({"storm": led["storm"]}, lambda_context)  # the state machine's retry

    assert len(_messages(pages)) == 1
    assert store.storms.get(led["storm"]["key"], led["storm"]["storm_id"])["summary_status"] == "sent"


def test_a_leader_that_died_waiting_has_its_storm_summarized_when_its_execution_ends(
    store, pages, lambda_context, monkeypatch
):
    from tests.integration.test_execution_ended import status_change

    # Given a storm whose leader's execution is aborted during its wait
    leader, _ = _escalate(store, lambda_context, 1)
    member, _ = _escalate(store, lambda_context, 2)
    received(pages)
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:recovery"
    monkeypatch.setenv("CLEANUP_STATE_MACHINE_ARN", machine + "-cleanup")

    # When its execution's end is handled
    result = execution_ended.handler(status_change(machine, leader, "ABORTED"), lambda_context)

    # Then the summary goes out, listing the member
    assert result["status"] == "storm_summarized"
    (message,) = _messages(pages)
    assert [m["impairment_id"] for m in message["impairments"]] == [member]
    # and the member's own execution ending sends nothing
    execution_ended.handler(status_change(machine, member, "FAILED"), lambda_context)
    assert _messages(pages) == []


def test_a_storm_window_of_zero_pages_every_escalation(store, pages, lambda_context, monkeypatch):
    monkeypatch.setenv("STORM_WINDOW_SECONDS", "0")

    results = [_escalate(store, lambda_context, n)[1] for n in (1, 2)]

    assert len(_messages(pages)) == 2
    assert all("storm" not in r for r in results)
