"""A page is resolved when its impairment ends well: recovered (Finalize) or its signal cleared
(StartRecovery), once, and only if a page went out under the impairment's id."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from core import paging
from core.contract import CLEARED, ImpairmentCleared
from orchestration import start
from tests.builders import bus_event, capture_topic, impairment, received


@pytest.fixture
def topic(store, monkeypatch) -> str:
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:recovery")
    return queue


def _resolves(queue: str) -> list[dict]:
    bodies = [json.loads(n["Message"]) for n in received(queue)]
    return [paging.envelope(b) for b in bodies if (paging.envelope(b) or {}).get("event_action") == paging.RESOLVE]


def _clear(model, lambda_context) -> dict:
    cleared = ImpairmentCleared(
        impairment_id=model.impairment_id,
        workload=model.workload,
        signal=model.signal,
        cleared_at=datetime(2026, 11, 22, 20, 30, tzinfo=UTC),
    )
    return start.handler(bus_event(cleared.model_dump(mode="json"), CLEARED), lambda_context)


def test_a_cleared_signal_resolves_the_page_of_an_escalated_impairment_once(store, topic, lambda_context):
    # Given an impairment that escalated and paged
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="escalated", outcome="escalated", paged=True)

    # When its alarm returns to OK (and the event is delivered twice)
    first = _clear(model, lambda_context)
    second = _clear(model, lambda_context)

    # Then one resolve is published, with the impairment id as its dedup key
    assert first["page_resolved"] is True and second["page_resolved"] is False
    (resolve,) = _resolves(topic)
    assert resolve["dedup_key"] == model.impairment_id
    assert store.get_impairment(model.impairment_id)["page_resolved_at"]


@pytest.mark.parametrize(
    "record",
    [
        {"status": "escalated", "outcome": "escalated", "paged": False, "page_status": "aggregated"},
        {"status": "recovering", "paged": True},  # still running: its Finalize or Escalate decides
    ],
    ids=["listed-in-a-storm-only", "still-recovering"],
)
def test_nothing_is_resolved_that_was_not_paged_or_has_not_ended(store, topic, lambda_context, record):
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), **record)

    assert _clear(model, lambda_context)["page_resolved"] is False
    assert _resolves(topic) == []


def test_a_recovery_approved_by_a_human_resolves_the_approval_page(store, topic):
    # Given an impairment whose plan asked for approval (paged), then recovered
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="recovered", approval={"status": "approved"})

    assert paging.resolve_if_paged(store, model.impairment_id, "recovered", paging_topic())

    (resolve,) = _resolves(topic)
    assert resolve["dedup_key"] == model.impairment_id


def test_a_resolve_that_cannot_be_sent_does_not_fail_the_recovery(store, topic, caplog):
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="recovered", paged=True)

    sent = paging.resolve_if_paged(store, model.impairment_id, "recovered", paging_topic() + "-gone")

    assert sent is False
    assert "the resolve of a page could not be sent" in caplog.text
    assert "page_resolved_at" not in store.get_impairment(model.impairment_id)


def paging_topic() -> str:
    import os

    return os.environ["ESCALATION_TOPIC_ARN"]


def _finalized(store, lambda_context, model, **state) -> None:
    from orchestration import admit, finalize

    event = {"impairment": model.model_dump(mode="json"), "execution": "x"}
    event["admission"] = admit.handler(event, lambda_context)["admission"]
    finalize.handler({**event, **state}, lambda_context)


def test_finalize_resolves_an_approval_page_but_not_one_about_deferred_instances(
    store, topic, lambda_context, any_plan
):
    # Given one recovery that asked for approval (paged) and one whose blast radius deferred
    # instances (paged about them), both recorded as paged
    approved, deferring = impairment(), impairment(signal_id="arn:aws:cloudwatch:us-east-1:123456789012:alarm:b")
    store.put_impairment(approved.model_dump(mode="json"), status="recovering", approval={"status": "approved"})
    store.put_impairment(deferring.model_dump(mode="json"), status="recovering", deferred_resources=["i-2"])

    # When each verifies and is finalized
    _finalized(store, lambda_context, approved, approval={"requested_at": "2026-11-22T20:00:00+00:00"})
    _finalized(store, lambda_context, deferring, guardrails={"deferred": ["i-2"], "groups": []})

    # Then only the approval page is resolved: the deferred instances may still be impaired
    assert [r["dedup_key"] for r in _resolves(topic)] == [approved.impairment_id]


def test_finalize_of_a_recovery_that_paged_nobody_reads_nothing_more(
    store, topic, lambda_context, dynamodb_calls, any_plan
):
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="recovering")
    from orchestration import admit, finalize

    event = {"impairment": model.model_dump(mode="json"), "execution": "x"}
    event["admission"] = admit.handler(event, lambda_context)["admission"]
    event["guardrails"] = {"slots": {}, "groups": []}  # CheckGuardrails' summary: no slot held here
    dynamodb_calls.clear()
    finalize.handler(event, lambda_context)
    assert "GetItem" not in dynamodb_calls and _resolves(topic) == []
