"""Storm membership under moto (core/storms.py): each escalation that joins a storm writes its own
member item, the storm's own item is written only when it opens, closes and is summarized, and
the summary counts the members by a paginated Query. Every joiner is in exactly one page: racing
joiners, a redelivered escalation, a roster longer than a Query page, and a member whose join
races the summary (listed if the summary claimed it first, else it leads the next storm)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from core import storms
from orchestration import escalate, storm
from tests.builders import capture_topic, impairment, received
from tests.integration.test_storms import _escalate, _messages

KEY = "web-api#ActionFailed"


@pytest.fixture
def pages(store, monkeypatch) -> str:
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    return queue


def test_members_write_their_own_items_and_the_storm_is_written_three_times(store, pages, lambda_context, item_writes):
    # Given a storm whose leader paged, and the writes of each item counted from now
    writes = item_writes
    _, led = _escalate(store, lambda_context, 1)
    head = f"STORM#{KEY} / STORM#{led['storm']['storm_id']}"

    # When five more escalations of the cause join it and the summary goes out
    members = [_escalate(store, lambda_context, n)[0] for n in range(2, 7)]
    storm.handler({"storm": led["storm"]}, lambda_context)

    # Then the storm's own item was written when it opened, closed and was summarized, no more
    assert writes[head] == 3
    # and each member wrote its own item once, which the summary claimed once
    for member in members:
        assert writes[f"STORM#{KEY}#{led['storm']['storm_id']} / MEMBER#{member}"] == 2
    _, summary = _messages(pages)
    assert summary["count"] == 5 and sorted(m["impairment_id"] for m in summary["impairments"]) == sorted(members)
    assert store.storms.get(KEY, led["storm"]["storm_id"])["count"] == 5


def test_members_racing_to_join_are_each_counted_once(store, pages, lambda_context, monkeypatch):
    # Given a storm open (its leader paged), and eight escalations of its cause that all read the
    # open storm before any of them writes
    _, led = _escalate(store, lambda_context, 1)
    racers = 8
    barrier = threading.Barrier(racers, timeout=20)
    original = storms.Storms._head
    met: set[int] = set()

    def head_then_meet(self, key):
        found = original(self, key)
        if threading.get_ident() not in met:
            met.add(threading.get_ident())
            barrier.wait()
        return found

    models = {}
    for n in range(2, 2 + racers):
        model = impairment(workload="web-api", instances=[f"i-{n:017x}"], signal_id=f"alarm:web-api-{n}")
        store.put_impairment(model.model_dump(mode="json"), status="recovering")
        models[model.impairment_id] = model
    monkeypatch.setattr(storms.Storms, "_head", head_then_meet)
    results: dict[str, dict[str, Any]] = {}

    def join(model) -> None:
        event = {"impairment": model.model_dump(mode="json"), "error": {"Error": "ActionFailed", "Cause": "x"}}
        results[model.impairment_id] = escalate.handler(event, lambda_context)

    # When they escalate at once
    threads = [threading.Thread(target=join, args=(m,)) for m in models.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(storms.Storms, "_head", original)

    # Then every one joined the storm, paging nobody
    assert len(results) == racers
    assert all(r["storm"]["leader"] is False and r["paged"] is False for r in results.values())
    assert _messages(pages)[1:] == []  # the leader's page only
    # and the one summary counts and lists each exactly once
    storm.handler({"storm": led["storm"]}, lambda_context)
    (summary,) = _messages(pages)
    assert summary["count"] == racers
    assert sorted(m["impairment_id"] for m in summary["impairments"]) == sorted(models)


def test_a_redelivered_escalation_is_not_counted_twice(store, pages, lambda_context):
    # Given a storm one escalation joined
    _, led = _escalate(store, lambda_context, 1)
    member, _ = _escalate(store, lambda_context, 2)

    # When the same escalation is delivered again (a retried task)
    again, result = _escalate(store, lambda_context, 2)

    # Then it is the same member of the same storm, and the summary counts it once
    assert again == member and result["storm"]["storm_id"] == led["storm"]["storm_id"]
    received(pages)
    storm.handler({"storm": led["storm"]}, lambda_context)
    (summary,) = _messages(pages)
    assert summary["count"] == 1 and [m["impairment_id"] for m in summary["impairments"]] == [member]


def test_a_roster_longer_than_a_query_page_is_read_page_by_page(store, monkeypatch, frozen_clock):
    # Given a storm of seven members, read two to a Query page, three of them listed
    monkeypatch.setattr(storms, "PAGE", 2)
    monkeypatch.setattr(storms, "LISTED", 3)
    led = store.storms.enter(KEY, "imp-leader", {"workload": "web-api"}, 300)
    joined = []
    for n in (5, 3, 7, 1, 6, 2, 4):  # ids in another order than they join in
        frozen_clock.advance(1)
        joined.append(f"imp-{n}")
        assert store.storms.enter(KEY, f"imp-{n}", {"workload": "web-api"}, 300).role == "member"
    queries = []
    store.storms.table.client.meta.events.register(
        "provide-client-params.dynamodb.Query", lambda params, **kwargs: queries.append(params)
    )

    # When the summary reads its roster
    store.storms.close(KEY, led.storm_id)
    roster = store.storms.roster(KEY, led.storm_id)

    # Then it read every page (Limit, then each page from the last one's LastEvaluatedKey)
    assert [q["Limit"] for q in queries] == [2, 2, 2, 2]
    assert "ExclusiveStartKey" not in queries[0] and all("ExclusiveStartKey" in q for q in queries[1:])
    # and counts all seven, listing the first three to join, in the order they joined
    assert roster.count == 7
    assert [m["impairment_id"] for m in roster.listed] == joined[:3]


def test_a_member_that_joins_as_the_summary_claims_it_is_listed(store, pages, lambda_context, monkeypatch):
    # Given a storm, and an escalation whose member item is written just before the summary runs
    # (it then reads the storm: closed, and the summary has claimed its item)
    _, led = _escalate(store, lambda_context, 1)
    received(pages)
    original = storms.Storms.get

    def summary_first(self, key, storm_id):
        monkeypatch.setattr(storms.Storms, "get", original)
        storm.handler({"storm": led["storm"]}, lambda_context)
        return original(self, key, storm_id)

    monkeypatch.setattr(storms.Storms, "get", summary_first)

    # When it joins
    late, result = _escalate(store, lambda_context, 2)

    # Then the summary listed it, and it pages nobody else: it stays the storm's member
    (summary,) = _messages(pages)
    assert [m["impairment_id"] for m in summary["impairments"]] == [late]
    assert result["storm"]["storm_id"] == led["storm"]["storm_id"] and result["paged"] is False
    assert store.get_impairment(late)["page_status"] == "aggregated"


def test_a_member_that_joins_after_the_summary_read_the_roster_leads_the_next_storm(
    store, pages, lambda_context, monkeypatch
):
    # Given a storm, and an escalation that read it open just before its summary ran
    _, led = _escalate(store, lambda_context, 1)
    received(pages)
    original = storms.Storms._head

    def then_summarized(self, key):
        found = original(self, key)
        monkeypatch.setattr(storms.Storms, "_head", original)
        storm.handler({"storm": led["storm"]}, lambda_context)
        return found

    monkeypatch.setattr(storms.Storms, "_head", then_summarized)

    # When it joins (its member item comes after the summary's Query)
    late, result = _escalate(store, lambda_context, 2)

    # Then the summary had nobody to list (nothing was sent), and the late one is not lost: it
    # took its member item back and pages at once, leading the next storm
    assert [m["impairment_id"] for m in _messages(pages)] == [late]
    assert result["storm"]["leader"] is True and result["storm"]["storm_id"] != led["storm"]["storm_id"]
    held = store.storms.get(KEY, led["storm"]["storm_id"])
    assert held["summary_status"] == "not_needed"
    assert store.storms.roster(KEY, led["storm"]["storm_id"]).count == 0


def test_a_member_taken_back_between_the_query_and_its_claim_is_not_counted(store, monkeypatch):
    # Given a closed storm with two members, one of which takes its item back (it found the
    # storm closed) after the summary's Query read it, before the summary's claim
    led = store.storms.enter(KEY, "imp-leader", {}, 300)
    for member in ("imp-a", "imp-b"):
        store.storms.enter(KEY, member, {}, 300)
    store.storms.close(KEY, led.storm_id)
    original = storms.Storms._claim

    def taken_back_first(self, member):
        if member["impairment_id"] == "imp-a":
            self.table.delete({"pk": member["pk"], "sk": member["sk"]})
        return original(self, member)

    monkeypatch.setattr(storms.Storms, "_claim", taken_back_first)

    # When the summary reads the roster
    roster = store.storms.roster(KEY, led.storm_id)

    # Then only the member still there is counted (the other goes to the next storm)
    assert roster.count == 1 and [m["impairment_id"] for m in roster.listed] == ["imp-b"]


@pytest.mark.parametrize("claimed_first", [True, False])
def test_a_claim_and_a_take_back_of_one_member_never_both_win(store, claimed_first):
    # Given a member item of a closed storm
    led = store.storms.enter(KEY, "imp-leader", {}, 300)
    store.storms.enter(KEY, "imp-a", {}, 300)
    store.storms.close(KEY, led.storm_id)
    (member,) = store.storms.table.query_all(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"STORM#{KEY}#{led.storm_id}"}
    )

    # When the summary claims it and the member tries to take it back, in either order
    if claimed_first:
        assert store.storms._claim(member) is True
    # Then exactly one wins: the member rejoining raises (next storm) only if it was not claimed
    joined_again = True
    try:
        store.storms._join(KEY, led.storm_id, "imp-a", {})
    except storms.ConditionFailed:
        joined_again = False
    assert joined_again is claimed_first
    assert store.storms._claim(member) is claimed_first
