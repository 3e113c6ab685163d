"""CheckGuardrails' decisions given the facts (the groups as read, what other recoveries hold),
without I/O: each group's blast radius, fail open, and the outcome for the whole impairment."""

from __future__ import annotations

from datetime import UTC, datetime

from actions.fleet import Fleet
from core import guardrails
from orchestration.check_guardrails import _GroupDecision, decide, fail_open_trips, narrow, summarize

SETTINGS = guardrails.Guardrails()  # blast radius: a third of a group; fail open: more than half of 4 or more


def _group(name: str, size: int, failing: tuple[str, ...] = (), min_size: int = 0) -> Fleet:
    instances = [
        {"InstanceId": f"{name}-{n}", "LifecycleState": "InService", "HealthStatus": "Healthy"} for n in range(size)
    ]
    group = {"AutoScalingGroupName": name, "Instances": instances, "MinSize": min_size, "DesiredCapacity": size}
    return Fleet(group, {i: "failing" for i in failing})


def _decided(fleet: Fleet, wanted: list[str], others: dict | None = None) -> _GroupDecision:
    decision = _GroupDecision(fleet, wanted, SETTINGS.blast_radius)
    decision.decide(others or {})
    return decision


def test_each_group_is_held_to_its_own_blast_radius():
    a = _decided(_group("a", 6, failing=("a-0", "a-1", "a-2")), ["a-0", "a-1", "a-2"])
    b = _decided(_group("b", 3, failing=("b-0",)), ["b-0"])
    assert (a.allowed, a.deferred) == (["a-0", "a-1"], ["a-2"])
    assert (b.allowed, b.deferred) == (["b-0"], [])
    decision = decide(["a-0", "a-1", "a-2", "b-0"], [a, b])
    assert decision.allowed == ["a-0", "a-1", "b-0"]
    assert decision.deferred == ["a-2"]
    assert [t.evidence["group"] for t in decision.trips] == ["a"]
    assert decision.stop is False


def test_what_other_recoveries_of_the_group_hold_counts_against_it():
    fleet = _group("a", 6, failing=("a-0",))
    held = _decided(fleet, ["a-0"], {"other": {"units": 2, "instances": ["a-4", "a-5"]}})
    assert (held.allowed, held.deferred) == ([], ["a-0"])
    decision = decide(["a-0"], [held])
    assert decision.stop is True
    assert decision.allowed == []


def test_the_units_held_are_the_instances_allowed():
    group = _GroupDecision(_group("a", 6, failing=("a-0",)), ["a-0"], SETTINGS.blast_radius)
    assert group.decide({}) == (1, {"instances": ["a-0"]})


def test_nothing_in_a_group_is_neither_a_stop_nor_a_trip():
    assert decide([], []).stop is False
    decision = decide(["i-1"], [])  # an instance in no group: the plan's outside_group decides
    assert (decision.allowed, decision.deferred, decision.trips, decision.stop) == (["i-1"], [], [], False)


def test_most_of_a_group_impaired_at_once_fails_open():
    small = _GroupDecision(_group("small", 2, failing=("small-0", "small-1")), ["small-0"], SETTINGS.blast_radius)
    large = _GroupDecision(_group("large", 4, failing=("large-0", "large-1")), ["large-2"], SETTINGS.blast_radius)
    fine = _GroupDecision(_group("fine", 4, failing=("fine-0",)), ["fine-0"], SETTINGS.blast_radius)
    trips = fail_open_trips([small, large, fine], SETTINGS.fail_open)
    assert [t.guardrail for t in trips] == [guardrails.FAIL_OPEN]
    assert "large" in trips[0].reason


def test_the_summary_adds_to_what_a_previous_check_deferred_and_the_state_is_narrowed():
    a = _decided(_group("a", 3, failing=("a-0", "a-1")), ["a-0", "a-1"])
    decision = decide(["a-0", "a-1"], [a])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    summary = summarize(now, {"checks": 1, "deferred": ["a-9"]}, decision, {"x-1"}, [a])
    assert summary == {
        "checked_at": now.isoformat(),
        "checks": 2,
        "tripped": [guardrails.BLAST_RADIUS],
        "deferred": ["a-1", "a-9"],
        "impaired_elsewhere": ["x-1"],
        "groups": ["a"],
        # what the actions read instead of describing the group again
        "fleets": {"a": {"failing": {"a-0": "failing", "a-1": "failing"}, "instances": ["a-0", "a-1"]}},
    }
    event = {
        "plan": {},
        "impairment": {
            "affected_resources": [
                {"resource_type": "ec2:instance", "resource_id": "a-0"},
                {"resource_type": "ec2:instance", "resource_id": "a-1"},
                {"resource_type": "autoscaling:group", "resource_id": "a"},
            ]
        },
    }
    assert [r["resource_id"] for r in narrow(event, decision.allowed)["impairment"]["affected_resources"]] == [
        "a-0",
        "a",
    ]
