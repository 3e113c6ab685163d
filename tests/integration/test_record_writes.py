"""How many times a path writes an impairment's own record (issue 16, "no hot item": the storm
bench counts the writes of each item in an emulated second), and that what it writes is the same
audit trail: StartRecovery's redelivery, Escalate alone, leading a storm, joining one, and their
failures."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core import paging, storms
from core.dynamo import Table
from core.errors import GuardrailTripped, PublishError, TransientError
from core.store import CONCURRENCY_BUDGET, Claim
from orchestration import check_guardrails, escalate, start
from tests.builders import bus_event, capture_topic, create_state_machine, impairment, received, use_runtime_config

ERROR = {"Error": "ActionFailed", "Cause": "ec2:TerminateInstances failed: boom"}


def _record_key(impairment_id: str) -> str:
    return f"IMPAIRMENT#{impairment_id} / RECORD"


@pytest.fixture
def pages(store, monkeypatch) -> str:
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    return queue


def _recovering(store, n: int) -> tuple[Any, dict[str, Any]]:
    """The n-th impairment (its own instance), recorded and holding its resource's lock, and the
    execution state Escalate gets after its action failed."""
    model = impairment(instances=[f"i-{n:017x}"], signal_id=f"arn:aws:cloudwatch:us-east-1:1:alarm:web-{n}")
    keys = [r.key for r in model.affected_resources]
    store.put_impairment(model.model_dump(mode="json"), status="recovering")
    store.acquire_locks(model.impairment_id, keys, 600)
    return model, {"impairment": model.model_dump(mode="json"), "admission": {"lock_keys": keys}, "error": ERROR}


def _assert_escalated(record: dict[str, Any]) -> None:
    """The outcome fields every escalation writes (escalate.decide's update)."""
    assert record["status"] == "escalated" and record["outcome"] == "escalated"
    assert "ActionFailed" in record["reason"]
    assert record["escalated_at"] and record["rolled_back"] is False and record["guardrails_tripped"] == []


def _messages(queue: str) -> list[dict[str, Any]]:
    return [paging.details(json.loads(n["Message"])) for n in received(queue)]


# --- Escalate --------------------------------------------------------------------------------------


def test_an_escalation_paged_on_its_own_writes_its_record_twice(store, pages, lambda_context, item_writes, monkeypatch):
    # Given storms are off: every escalation pages at once
    monkeypatch.setenv("STORM_WINDOW_SECONDS", "0")
    model, state = _recovering(store, 1)
    item_writes.clear()

    escalate.handler(state, lambda_context)

    # Then the outcome, then the page's fate: two writes of the record, the page between them
    assert item_writes[_record_key(model.impairment_id)] == 2
    record = store.get_impairment(model.impairment_id)
    _assert_escalated(record)
    assert record["paged"] is True and record["page_status"] == "sent" and record["paged_at"]
    assert "storm" not in record
    assert len(_messages(pages)) == 1
    assert store._lock_holders([r.key for r in model.affected_resources]) == {}


def test_a_storm_leader_writes_its_record_twice_and_it_names_the_storm(store, pages, lambda_context, item_writes):
    model, state = _recovering(store, 1)
    item_writes.clear()

    result = escalate.handler(state, lambda_context)

    assert item_writes[_record_key(model.impairment_id)] == 2
    record = store.get_impairment(model.impairment_id)
    _assert_escalated(record)
    assert record["page_status"] == "sent" and record["paged"] is True and record["paged_at"]
    assert record["storm"] == result["storm"] and record["storm"]["leader"] is True
    (page,) = _messages(pages)
    assert page["storm"]["storm_id"] == record["storm"]["storm_id"]


def test_a_storm_member_writes_its_record_once_with_its_storm(store, pages, lambda_context, item_writes):
    # Given a storm its leader opened
    _, leader_state = _recovering(store, 1)
    led = escalate.handler(leader_state, lambda_context)
    received(pages)
    model, state = _recovering(store, 2)
    item_writes.clear()

    # When a second escalation of the cause comes
    result = escalate.handler(state, lambda_context)

    # Then one write says it all: the outcome, the storm whose summary carries it, aggregated
    assert item_writes[_record_key(model.impairment_id)] == 1
    record = store.get_impairment(model.impairment_id)
    _assert_escalated(record)
    assert record["page_status"] == "aggregated" and record["paged"] is False
    assert "ActionFailed" in record["page_reason"]
    assert record["storm"]["storm_id"] == led["storm"]["storm_id"] and record["storm"]["leader"] is False
    assert result["paged"] is False and result["storm"] == record["storm"]
    # its lock given back, nobody paged
    assert store._lock_holders([r.key for r in model.affected_resources]) == {}
    assert _messages(pages) == []


def test_a_leader_whose_page_fails_records_it_with_its_storm_then_pages_on_the_retry(
    store, lambda_context, item_writes, monkeypatch
):
    # Given the escalation topic is gone while a storm opens
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:gone")
    model, state = _recovering(store, 1)
    item_writes.clear()

    # When the leader escalates: the page cannot be sent
    with pytest.raises(TransientError, match="the page could not be sent"):
        escalate.handler(state, lambda_context)

    # Then the outcome with its storm, then the failed page: two writes, the lock given back first
    assert item_writes[_record_key(model.impairment_id)] == 2
    record = store.get_impairment(model.impairment_id)
    _assert_escalated(record)
    assert record["page_status"] == "failed" and "NotFound" in record["page_error"] and record["page_reason"]
    assert record["paged"] is False and record["storm"]["leader"] is True
    assert store._lock_holders([r.key for r in model.affected_resources]) == {}

    # And once the topic is back, the retried task leads the same storm and pages
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    retried = escalate.handler(state, lambda_context)
    assert retried["storm"]["storm_id"] == record["storm"]["storm_id"]
    assert len(received(queue)) == 1
    assert store.get_impairment(model.impairment_id)["page_status"] == "sent"


def test_a_storm_that_cannot_be_entered_still_records_and_releases_first(
    store, pages, lambda_context, item_writes, monkeypatch
):
    # Given the storm's items are contended past every retry
    def contended(*args: Any, **kwargs: Any) -> None:
        raise TransientError("the storm is contended: retry", operation="dynamodb:TransactWriteItems")

    monkeypatch.setattr(storms.Storms, "enter", contended)
    model, state = _recovering(store, 1)
    item_writes.clear()

    # When it escalates, the error is raised (the task is retried) ...
    with pytest.raises(TransientError, match="contended"):
        escalate.handler(state, lambda_context)

    # ... after the outcome was recorded and the lock given back, paging nobody yet
    assert item_writes[_record_key(model.impairment_id)] == 1
    record = store.get_impairment(model.impairment_id)
    _assert_escalated(record)
    assert record["page_status"] == "pending"
    assert store._lock_holders([r.key for r in model.affected_resources]) == {}
    assert _messages(pages) == []


def test_a_member_whose_storm_closed_meanwhile_pages_and_its_record_names_the_new_storm(
    store, pages, lambda_context, item_writes
):
    # Given a storm its leader summarized early (its execution died waiting)
    from orchestration import storm

    _, leader_state = _recovering(store, 1)
    led = escalate.handler(leader_state, lambda_context)
    storm.handler({"storm": led["storm"]}, lambda_context)
    received(pages)
    model, state = _recovering(store, 2)
    item_writes.clear()

    result = escalate.handler(state, lambda_context)

    # Then it leads a new storm and pages: its record names that one, in two writes
    assert item_writes[_record_key(model.impairment_id)] == 2
    record = store.get_impairment(model.impairment_id)
    assert record["storm"]["storm_id"] == result["storm"]["storm_id"] != led["storm"]["storm_id"]
    assert record["page_status"] == "sent" and record["storm"]["leader"] is True
    assert [m["impairment_id"] for m in _messages(pages)] == [model.impairment_id]


def test_a_storm_member_publishes_nothing_so_a_failing_topic_does_not_fail_it(
    store, pages, lambda_context, item_writes
):
    # Given a storm its leader opened, and a topic that fails every publish from now on
    _, leader_state = _recovering(store, 1)
    escalate.handler(leader_state, lambda_context)
    model, state = _recovering(store, 2)
    item_writes.clear()

    class Down:
        def publish(self, **kwargs: Any) -> None:
            raise PublishError("sns:Publish failed: throttled")

    # When a member escalates: the leader's summary carries it, so nothing is published
    result = escalate.handler(state, lambda_context, sns=Down())

    assert result["paged"] is False
    assert item_writes[_record_key(model.impairment_id)] == 1
    assert store.get_impairment(model.impairment_id)["page_status"] == "aggregated"


# --- StartRecovery's redelivery ---------------------------------------------------------------------


@pytest.fixture
def state_machine(store, monkeypatch) -> str:
    arn = create_state_machine()
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return arn


def test_a_redelivery_once_started_is_refused_in_one_call_with_no_second_put_or_read(
    state_machine, store, lambda_context, item_writes, dynamodb_calls
):
    # Given the impairment's execution started and Admit recorded it
    model = impairment()
    event = bus_event(model.model_dump(mode="json"))
    start.handler(event, lambda_context)
    store.update_impairment(model.impairment_id, status="admitted", execution_arn="arn:aws:states:x")
    before = store.get_impairment(model.impairment_id)
    item_writes.clear()
    dynamodb_calls.clear()

    # When the signal is delivered again
    response = start.handler(event, lambda_context)

    # Then its one transaction is refused, handing the record back: no second put, no read
    assert response == {"status": "duplicate", "impairment_id": model.impairment_id}
    assert dynamodb_calls == ["TransactWriteItems"]
    assert item_writes[_record_key(model.impairment_id)] == 1  # the refused put, as the bench counts it
    assert store.get_impairment(model.impairment_id) == before


def test_a_redelivery_while_its_execution_escalates_leaves_the_record_as_escalate_writes_it(
    state_machine, store, pages, lambda_context, item_writes, monkeypatch
):
    # Given the first delivery's execution is in Escalate: its outcome written, its page not yet
    monkeypatch.setenv("STORM_WINDOW_SECONDS", "0")
    model = impairment()
    event = bus_event(model.model_dump(mode="json"))
    start.handler(event, lambda_context)
    store.update_impairment(model.impairment_id, status="admitted", execution_arn="arn:aws:states:x")
    state = {"impairment": model.model_dump(mode="json"), "error": ERROR}
    redelivered: list[dict[str, Any]] = []
    original = paging.page

    def page_after_a_redelivery(*args: Any, **kwargs: Any) -> Any:
        redelivered.append(start.handler(event, lambda_context))
        return original(*args, **kwargs)

    monkeypatch.setattr(paging, "page", page_after_a_redelivery)
    item_writes.clear()

    # When the signal is delivered again between the record's write and the page
    escalate.handler(state, lambda_context)

    # Then the redelivery started nothing and changed nothing: the record is Escalate's
    assert redelivered == [{"status": "duplicate", "impairment_id": model.impairment_id}]
    record = store.get_impairment(model.impairment_id)
    _assert_escalated(record)
    assert record["page_status"] == "sent" and record["execution_arn"] == "arn:aws:states:x"
    # Escalate's two writes and the redelivery's refused one
    assert item_writes[_record_key(model.impairment_id)] == 3


def test_a_redelivery_before_the_execution_started_starts_it_with_what_it_superseded(
    state_machine, store, lambda_context, dynamodb_calls
):
    # Given a first delivery that recorded the impairment and died before starting its execution,
    # having superseded a narrower one
    model = impairment()
    event = bus_event(model.model_dump(mode="json"))

    class Down:
        def start_execution(self, **_: object) -> None:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "StartExecution")

    with pytest.raises(TransientError):
        start.handler(event, lambda_context, sfn=Down())
    store.update_impairment(model.impairment_id, supersedes=["narrower-1"])
    dynamodb_calls.clear()

    # When the signal is delivered again
    response = start.handler(event, lambda_context)

    # Then the refusal's record (no read) says it never started: it starts now, keeping what it superseded
    assert response["status"] == "started"
    assert "GetItem" not in dynamodb_calls and "PutItem" not in dynamodb_calls
    assert store.get_impairment(model.impairment_id)["supersedes"] == ["narrower-1"]


# --- CheckGuardrails: what it notes is on the impairment's guardrails item, not its record --------

SCALE = {"name": "scale", "steps": [{"index": 0, "action": "scale_out", "params": {}}]}
PLANS = [{"name": "scale", "match": {"impairment_types": ["instance_failure"]}, "steps": [{"action": "scale_out"}]}]


def _checked_key(impairment_id: str) -> str:
    return f"IMPAIRMENT#{impairment_id} / GUARDRAILS"


def _admitted(store, n: int) -> Any:
    """The n-th impairment (its own instance), admitted: recorded, its resource locked."""
    model = impairment(
        instances=[f"i-{n:017x}"],
        signal_id=f"arn:aws:cloudwatch:us-east-1:1:alarm:web-{n}",
        signal_time=impairment().signal.signal_time + timedelta(seconds=n),
    )
    store.put_impairment(model.model_dump(mode="json"), status="admitted")
    store.acquire_locks(model.impairment_id, [r.key for r in model.affected_resources], 600)
    return model


def _guard_state(model: Any, plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "impairment": model.model_dump(mode="json"),
        "plan": plan,
        "admission": {"lock_keys": [r.key for r in model.affected_resources]},
    }


def _check_then_escalate(store, model: Any, plan: dict[str, Any], context: Any) -> dict[str, Any]:
    """CheckGuardrails trips, and the workflow's catch hands its error to Escalate (as Step Functions
    does: the Lambda error's name, its JSON as the cause)."""
    state = _guard_state(model, plan)
    with pytest.raises(GuardrailTripped) as tripped:
        check_guardrails.handler(state, context, store=store)
    cause = json.dumps({"errorMessage": str(tripped.value), "errorType": "GuardrailTripped"})
    return escalate.handler({**state, "error": {"Error": "GuardrailTripped", "Cause": cause}}, context)


def test_two_storms_of_different_causes_in_one_workload_write_each_record_as_escalate_alone_would(
    store, pages, lambda_context, item_writes, monkeypatch, tmp_path
):
    # Given one workload whose recoveries meet two budgets: one plan's own rate (1 an hour), spent
    # by a recovery that ended, and the concurrency cap (1 at once), held by one under way
    guardrails = {"rate_limits": {"per_workload_per_hour": 100, "max_concurrent": 1}}
    use_runtime_config(monkeypatch, tmp_path, plans=PLANS, guardrails=guardrails)
    rated, other = {**SCALE, "max_recoveries_per_hour": 1}, {**SCALE, "name": "other"}
    ended = _admitted(store, 1)
    check_guardrails.handler(_guard_state(ended, rated), lambda_context, store=store)
    store.release_locks(ended.impairment_id, [r.key for r in ended.affected_resources])
    models = {n: _admitted(store, n) for n in (3, 4, 5, 6)}
    item_writes.clear()

    # When two of the rated plan trip its rate and escalate, then, once another recovery holds
    # the one slot, two of the other plan trip the cap and escalate
    results = {n: _check_then_escalate(store, models[n], rated, lambda_context) for n in (3, 5)}
    check_guardrails.handler(_guard_state(_admitted(store, 2), other), lambda_context, store=store)
    results.update({n: _check_then_escalate(store, models[n], other, lambda_context) for n in (4, 6)})

    # Then each cause is its own storm: its first leads it (paged), the second joins it
    rate_storm, cap_storm = results[3]["storm"], results[4]["storm"]
    assert rate_storm["storm_id"] != cap_storm["storm_id"]
    assert rate_storm["key"] == "rate#plan#scale" and cap_storm["key"] == "concurrency"
    assert results[5]["storm"]["storm_id"] == rate_storm["storm_id"]
    assert results[6]["storm"]["storm_id"] == cap_storm["storm_id"]
    assert sorted(m["impairment_id"] for m in _messages(pages)) == sorted(
        [models[3].impairment_id, models[4].impairment_id]
    )
    # and CheckGuardrails wrote no record: a leader's is written twice (the outcome with the trip
    # and its storm, then the page's fate), a member's once (was 3 and 2)
    writes = {n: item_writes[_record_key(m.impairment_id)] for n, m in models.items()}
    assert writes == {3: 2, 4: 2, 5: 1, 6: 1}
    # the trip noted once on each one's guardrails item
    assert {n: item_writes[_checked_key(m.impairment_id)] for n, m in models.items()} == {3: 1, 4: 1, 5: 1, 6: 1}
    # And each record says what stopped it, with the evidence, as before
    for n, model in models.items():
        record = store.get_impairment(model.impairment_id)
        _tripped = "rate_limit" if n % 2 else "concurrency"
        assert record["guardrails_tripped"] == [_tripped] and record["outcome"] == "escalated"
        (trip,) = record["guardrail_trips"]
        assert trip["guardrail"] == _tripped
        assert trip["evidence"]["budget"] == ("BUDGET#rate#plan#scale" if n % 2 else CONCURRENCY_BUDGET)
        assert record["storm"]["storm_id"] == (rate_storm if n % 2 else cap_storm)["storm_id"]


def test_a_budget_take_that_loses_its_race_twice_never_writes_the_record(
    store, pages, lambda_context, item_writes, monkeypatch, tmp_path
):
    # Given another recovery's take lands on a rate shard between this one's read and its
    # transaction, twice
    use_runtime_config(monkeypatch, tmp_path, plans=PLANS, guardrails={})
    model = _admitted(store, 1)
    transact, raced = Table.transact, []

    def another_take_first(self: Table, items: list[dict[str, Any]]) -> None:
        shard = next(
            (i["Put"] for i in items if "version = :v" in i.get("Put", {}).get("ConditionExpression", "")), None
        )
        if shard is not None and len(raced) < 2:
            raced.append(shard["Item"]["pk"]["S"])
            self.update(
                {"pk": shard["Item"]["pk"]["S"], "sk": "BUDGET"},
                UpdateExpression="SET version = if_not_exists(version, :zero) + :one",
                ExpressionAttributeValues={":zero": 0, ":one": 1},
            )
        transact(self, items)

    monkeypatch.setattr(Table, "transact", another_take_first)
    item_writes.clear()

    # When CheckGuardrails takes its budgets
    out = check_guardrails.handler(_guard_state(model, SCALE), lambda_context, store=store)

    # Then its third transaction took them, each noting the slot on the guardrails item: the
    # record was not written (it was, once per transaction), and the slot is noted for its release
    assert len(raced) == 2 and out["guardrails"]["slots"]
    assert item_writes[_record_key(model.impairment_id)] == 0
    assert item_writes[_checked_key(model.impairment_id)] == 3
    assert store.get_impairment_checked(model.impairment_id)["budget_slots"] == out["guardrails"]["slots"]
    assert store.budget_holders(CONCURRENCY_BUDGET, slots=25).keys() == {model.impairment_id}

    # And an escalation that has only the record (the state lost) gives the slot back
    escalate.handler({"impairment": model.model_dump(mode="json"), "error": ERROR}, lambda_context)
    assert store.budget_holders(CONCURRENCY_BUDGET, slots=25) == {}


def test_a_trip_noted_and_never_escalated_is_recorded_by_execution_ended(
    store, pages, lambda_context, monkeypatch, tmp_path
):
    from orchestration import execution_ended
    from tests.integration.test_execution_ended import status_change

    # Given a recovery whose check took its slot, then tripped (nothing may be acted on), and
    # whose execution died before Escalate recorded it
    use_runtime_config(monkeypatch, tmp_path, plans=PLANS, guardrails={})
    model = _admitted(store, 1)
    store.take_budgets(model.impairment_id, [Claim("concurrency", CONCURRENCY_BUDGET, 25, 1, 2**31, slotted=True)])
    store.note_trip(
        model.impairment_id,
        guardrails_tripped=["blast_radius"],
        guardrail_trips=[{"guardrail": "blast_radius", "reason": "nothing may be acted on", "evidence": {}}],
        page=True,
    )
    monkeypatch.setenv("CLEANUP_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:cleanup")
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:recovery"

    # When Step Functions says it failed
    execution_ended.handler(status_change(machine, model.impairment_id, "FAILED"), lambda_context, store=store)

    # Then its record says what stopped it, and the slot noted for it is given back
    record = store.get_impairment(model.impairment_id)
    assert record["outcome"] == "escalated" and record["guardrails_tripped"] == ["blast_radius"]
    assert record["guardrail_trips"][0]["reason"] == "nothing may be acted on"
    assert store.budget_holders(CONCURRENCY_BUDGET, slots=25) == {}
