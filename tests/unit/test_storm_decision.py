"""Storms, without I/O: which storm an escalation belongs to, what it does given the key's open
storm, and what the summary page lists."""

from __future__ import annotations

import pytest

from core.storms import JOIN, LEAD, OPEN, Roster, step, timestamp
from orchestration.escalate import decide
from orchestration.storm import storm_key, summary_message

IMPAIRMENT = {"impairment_id": "imp-1", "workload": "web", "affected_resources": []}
FAIL_OPEN = {"guardrails_tripped": ["fail_open"], "guardrail_trips": [{"guardrail": "fail_open", "evidence": {}}]}


def _rate_limit(budget: str) -> dict:
    return {
        "guardrails_tripped": ["rate_limit"],
        "guardrail_trips": [{"guardrail": "rate_limit", "evidence": {"budget": budget, "limit": 20}}],
    }


def test_a_guardrail_that_tripped_is_the_cause_within_its_workload():
    error = {"Error": "GuardrailTripped", "Cause": "fail open"}
    assert storm_key({"error": error}, FAIL_OPEN, "web") == "web#fail_open"
    assert storm_key({"error": error}, FAIL_OPEN, "shop") == "shop#fail_open"


def test_a_budget_shared_by_workloads_is_one_storm_whatever_the_workload():
    # Given the per-plan rate limit stopping two workloads' recoveries
    record = _rate_limit("BUDGET#rate#plan#replace-failed-instance")

    # Then both are the plan's storm (one page for the fleet), not one per workload
    assert storm_key({}, record, "web") == storm_key({}, record, "shop") == "rate#plan#replace-failed-instance"
    # while a workload's own budget stays the workload's
    assert storm_key({}, _rate_limit("BUDGET#rate#workload#web"), "web") == "rate#workload#web"


@pytest.mark.parametrize(
    ("event", "cause"),
    [
        ({"error": {"Error": "ActionFailed", "Cause": "x"}}, "ActionFailed"),
        ({"error": {"Error": "RecoveryPaused", "Cause": "x"}}, "RecoveryPaused"),
        ({"verification": {"healthy": False, "attempt": 6}, "rollback_error": {"Error": "X"}}, "rollback_failed"),
        ({"verification": {"healthy": False, "attempt": 6}}, "not_healthy"),
        ({}, "not_completed"),
    ],
)
def test_other_causes_are_named_by_what_went_wrong(event, cause):
    assert storm_key(event, {}, "web") == f"web#{cause}"


def test_different_causes_are_different_storms():
    assert storm_key({"error": {"Error": "ActionFailed"}}, {}, "web") != storm_key({}, FAIL_OPEN, "web")


def test_approvals_and_capacity_not_returned_are_never_aggregated():
    assert storm_key({"approval_error": {"Error": "States.Timeout"}}, {}, "web") is None
    assert storm_key({"return_error": {"Error": "TransientError"}}, {}, "web") is None


def test_escalate_names_the_storm_of_what_it_pages_only():
    error = {"Error": "GuardrailTripped", "Cause": "fail open"}
    paged = decide({"impairment": IMPAIRMENT, "error": error}, FAIL_OPEN, "2026-01-01T00:00:00+00:00")
    assert paged.storm_key == "web#fail_open"
    # already escalated within the guardrail's window: not paged, so in no storm either
    quiet = decide(
        {"impairment": IMPAIRMENT, "error": error}, {**FAIL_OPEN, "page": False}, "2026-01-01T00:00:00+00:00"
    )
    assert quiet.paged is False and quiet.storm_key is None
    # an approval that never came: paged on its own
    approval = decide(
        {"impairment": IMPAIRMENT, "approval_error": {"Error": "States.Timeout"}, "plan": {"name": "p"}},
        {},
        "2026-01-01T00:00:00+00:00",
    )
    assert approval.paged is True and approval.storm_key is None


def test_the_first_opens_others_join_the_leader_leads_again_and_an_ended_window_opens_anew():
    head = {"storm_id": "s1", "leader": "imp-1", "window_end": 1300}
    assert step(None, "imp-1", 1000) == OPEN
    assert step(head, "imp-2", 1000) == JOIN
    assert step(head, "imp-1", 1000) == LEAD  # a retried escalation of the leader
    assert step(head, "imp-2", 1300) == OPEN  # the window ends at 1300: not joined at 1300
    assert step(head, "imp-1", 1400) == OPEN


def test_the_summary_timestamp_is_what_step_functions_waits_for():
    assert timestamp(0) == "1970-01-01T00:00:00Z"


def test_the_summary_lists_its_roster_and_counts_those_not_listed():
    storm = {
        "key": "web#fail_open",
        "storm_id": "20260101T000000Z-imp-1",
        "leader": "imp-1",
        "leader_entry": {"workload": "web", "reason": "fail open"},
    }
    listed = [
        {"impairment_id": "imp-2", "workload": "shop", "reason": "fail open", "at": "2026-01-01T00:00:10+00:00"},
        {"impairment_id": "imp-3", "workload": "web", "reason": "fail open", "at": "2026-01-01T00:00:20+00:00"},
    ]

    message = summary_message(storm, Roster(listed, 6))

    assert [m["impairment_id"] for m in message["impairments"]] == ["imp-2", "imp-3"]
    assert message["count"] == 6
    assert message["not_listed"] == 4
    assert message["workloads"] == ["shop", "web"]
    assert message["leader_impairment_id"] == "imp-1"
    assert "6 more escalation(s)" in message["summary"] and "4 more, not listed" in message["summary"]
