"""recoveryctl/timeline.py: the drill's timeline as a person reads it, from crafted reports (the
e2e tier runs real drills)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from recoveryctl import timeline

T0 = "2026-11-20T09:00:00+00:00"


def at(seconds: float) -> str:
    """A virtual time `seconds` after the drill's start."""
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(T0) + timedelta(seconds=seconds)).isoformat()


def state(name: str, start: float, seconds: float) -> dict[str, Any]:
    return {"state": name, "at": at(start), "seconds": seconds, "kind": "Task"}


def execution(name: str, start: float, outcome: str = "recovered", **fields: Any) -> dict[str, Any]:
    run = {
        "name": name,
        "region": "us-east-1",
        "status": "SUCCEEDED" if outcome == "recovered" else "FAILED",
        "outcome": outcome,
        "guardrails_tripped": [],
        "reason": None,
        "plan": "replace-failed-instance",
        "started_at": at(start),
        "stopped_at": at(start + 31),
        "mttd_seconds": 0.1,
        "mttr_seconds": 30.9,
        "approval": None,
        "states": [
            state("Admit", start, 0.2),
            state("ReplaceInstance", start + 0.4, 0.3),
            {**state("WaitBeforeVerify", start + 0.8, 30.0), "kind": "Wait"},
            state("Verify", start + 30.8, 0.1),
            state("Recovered", start + 31, 0.0),
        ],
    }
    return {**run, **fields}


def report(**fields: Any) -> dict[str, Any]:
    """A one-execution drill: a status check alarm, an instance replaced, verified."""
    base = {
        "scenario": "crafted",
        "description": "an instance fails",
        "outcome": "recovered",
        "reason": None,
        "impairment_id": "web-api-aaaa",
        "mttd_seconds": 0.1,
        "mttr_seconds": 30.9,
        "started_at": T0,
        "ended_at": at(32),
        "execution": {"name": "web-api-aaaa", "status": "SUCCEEDED", "states": ["Admit"]},
        "executions": [execution("web-api-aaaa", 0.5)],
        "outcomes": {"recovered": 1},
        "guardrails_tripped": [],
        "signals": [
            {
                "alarm": "web-api-status-check",
                "state": "ALARM",
                "deliveries": 1,
                "time": "2026-11-20T09:00:00.000+0000",
                "at": T0,
            }
        ],
        "detected": [
            {
                "impairment_id": "web-api-aaaa",
                "at": at(0.1),
                "impairment_type": "instance_failure",
                "severity": "high",
                "deliveries": 1,
                "linked_to": None,
                "started": True,
            }
        ],
        "correlated": [],
        "actions": [
            {
                "execution": "web-api-aaaa",
                "type": "replace_instance",
                "phase": "apply",
                "targets": ["i-1"],
                "target": "i-1",
                "result": "changed",
                "message": "terminate: i-1",
                "started_at": at(0.95),  # inside ReplaceInstance (entered at 0.9)
            }
        ],
        "pages": [],
        "transitions": 6,
        "virtual_wait_seconds": 30.0,
        "lambda_errors": [],
        "workload": {
            "name": "web-api",
            "group": "web-api-asg",
            "impaired_instances": ["i-1"],
            "before": {"in_service": ["i-1", "i-2"], "min_size": 1, "max_size": 4, "desired_capacity": 2},
            "after": {"in_service": ["i-2", "i-3"], "min_size": 1, "max_size": 4, "desired_capacity": 2},
        },
        "expectation_met": True,
        "expectations": {"checked": ["outcome"], "failed": []},
        "invariants": {"checked": ["no_lock_held"], "off": {}, "broken": []},
    }
    return {**base, **fields}


def timed_lines(text: str) -> list[tuple[float, str]]:
    """The timeline's timed lines: (seconds from the drill's start, the rest of the line)."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^\s+([+-]\d+\.\d) s (.*)$", line)
        if match:
            found.append((float(match.group(1)), match.group(2).strip()))
    return found


def test_everything_is_in_virtual_time_order_with_each_states_start_and_duration():
    text = timeline.format_timeline(report())

    lines = timed_lines(text)
    times = [t for t, _ in lines]
    assert times == sorted(times)
    assert lines[0] == (0.0, "signal     alarm web-api-status-check -> ALARM")
    assert (0.1, "detected   web-api-aaaa: instance_failure, severity high (MTTD 0.1 s)") in lines
    wait = next(line for t, line in lines if "WaitBeforeVerify" in line)
    assert re.search(r"WaitBeforeVerify\s+30\.0 s", wait)
    assert next(t for t, line in lines if "WaitBeforeVerify" in line) == 1.3
    assert next(t for t, line in lines if line.startswith("outcome")) == 31.5
    # the state that ran the action comes before the action, at the same time
    names = [line.split()[1] if line.startswith("state") else line.split()[0] for _, line in lines]
    assert names.index("ReplaceInstance") < names.index("apply")
    # Admit selects the plan: its line names it
    admit = next(line for _, line in lines if line.startswith("state") and line.split()[1] == "Admit")
    assert admit.endswith("plan replace-failed-instance")


def test_a_detection_is_printed_when_it_happened_not_at_its_mttd():
    # Given the fourth of four rounds, detected at about 1,960 s (MTTD 0.1 s)
    crafted = report(
        detected=[
            {
                "impairment_id": "web-api-dddd",
                "at": at(1960.2),
                "impairment_type": "instance_failure",
                "severity": "high",
                "deliveries": 1,
                "started": True,
            }
        ],
        executions=[execution("web-api-dddd", 1960.5, mttd_seconds=0.1)],
    )

    lines = timed_lines(timeline.format_timeline(crafted))

    assert next(t for t, line in lines if line.startswith("detected")) == 1960.2


def test_independent_executions_are_not_called_correlated():
    # Given two rounds, each its own impairment and execution; and one signal linked to the first
    runs = [execution("web-api-aaaa", 0.5), execution("web-api-bbbb", 600.5)]
    detected = [
        {"impairment_id": "web-api-aaaa", "at": at(0.1), "deliveries": 1, "started": True},
        {"impairment_id": "web-api-bbbb", "at": at(600.1), "deliveries": 1, "started": True},
        {"impairment_id": "web-api-cccc", "at": at(0.3), "deliveries": 1, "linked_to": "web-api-aaaa"},
    ]
    text = timeline.format_timeline(
        report(executions=runs, detected=detected, correlated=["web-api-cccc"], outcomes={"recovered": 2})
    )

    correlated = [line for _, line in timed_lines(text) if line.startswith("correlated")]
    assert len(correlated) == 1 and "web-api-cccc" in correlated[0] and "linked to web-api-aaaa" in correlated[0]
    # each execution's lines are tagged, so interleaved executions stay readable
    assert any(line.startswith("execution  [2] web-api-bbbb started") for _, line in timed_lines(text))
    assert "the worst of 2 executions: 2 recovered" in text


def test_a_late_signal_and_a_page_are_placed_when_they_happened():
    # Given a fourth probe at +306.9 s, after the detection at +121.2 s, and the approval page
    # sent at +121.5 s, before the recovery ended at +242 s
    crafted = report(
        signals=[
            {"event": "schedule in us-west-2 (2 rule(s) fired)", "deliveries": 1, "time": at(t), "at": at(t)}
            for t in (306.9, 0.0, 60.0, 121.2)
        ],
        detected=[{"impairment_id": "web-api-aaaa", "at": at(121.2), "deliveries": 1, "started": True}],
        executions=[execution("web-api-aaaa", 121.3, stopped_at=at(242.0))],
        pages=[{"at": at(121.5), "kind": "approval", "impairment_id": "web-api-aaaa", "summary": "approve?"}],
    )

    lines = timed_lines(timeline.format_timeline(crafted))

    assert [t for t, _ in lines] == sorted(t for t, _ in lines)
    page = next(t for t, line in lines if line.startswith("paged"))
    outcome = next(t for t, line in lines if line.startswith("outcome"))
    assert page == 121.5 < outcome == 242.0
    assert [t for t, line in lines if line.startswith("signal")] == [0.0, 60.0, 121.2, 306.9]


def test_emergency_capacity_given_back_after_a_success_reads_as_a_return():
    crafted = report()
    crafted["actions"].append(
        {
            "execution": "web-api-aaaa",
            "type": "scale_out",
            "phase": "return",
            "targets": ["web-api-asg"],
            "result": "changed",
            "message": "desired capacity restored to 2",
            "started_at": at(3631),
        }
    )

    lines = timed_lines(timeline.format_timeline(crafted))

    assert (3631.0, "return     scale_out on web-api-asg: changed  desired capacity restored to 2") in lines
    assert not any(line.startswith("rollback") for _, line in lines)


def test_long_lines_wrap_at_words_and_nothing_is_cut():
    reason = "GuardrailTripped: " + " ".join(f"word{n}" for n in range(80)) + " end-of-the-reason"
    crafted = report(
        outcome="escalated",
        reason=reason,
        lambda_errors=[f"ImpairmentRecovery-CheckGuardrails: {reason}"],
        pages=[{"at": at(1), "kind": "escalation", "summary": f"needs a human: {reason}"}],
    )

    text = timeline.format_timeline(crafted)

    assert all(len(line) <= timeline.WIDTH for line in text.splitlines())
    words = text.split()
    for n in range(80):  # every word of the reason, whole, in the footer, the page and the errors
        assert words.count(f"word{n}") == 3
    assert words.count("end-of-the-reason") == 3


@pytest.mark.parametrize("bad", ["yesterday", "", "{now}", "2026-13-45T99:00:00Z", None, 12])
def test_a_signal_whose_time_is_not_a_timestamp_does_not_break_the_timeline(bad):
    # Given a scenario's event whose time is any string (and a report without the drill's own time)
    crafted = report(signals=[{"event": "aws.ecs ECS Task State Change", "deliveries": 1, "time": bad}])

    text = timeline.format_timeline(crafted)

    line = next(line for line in text.splitlines() if "aws.ecs ECS Task State Change" in line)
    assert line.split()[0] == "?", "an unknown time, said so"
    if bad not in (None, ""):
        assert f"(its time {bad!r} is not a timestamp)" in " ".join(text.split())


def test_a_report_without_times_still_prints():
    crafted = copy.deepcopy(report())
    for key in ("started_at", "ended_at"):
        crafted.pop(key)
    crafted["executions"][0]["states"][0]["at"] = "not a time"

    text = timeline.format_timeline(crafted)

    assert "Admit" in text and "recovered" in text


def test_an_unmet_expectation_says_what_was_expected_and_what_was_seen():
    crafted = report(
        expectation_met=False,
        expectations={
            "checked": ["final_state.in_service"],
            "failed": [
                {"expectation": "final_state.in_service", "message": "final_state.in_service: expected 3, saw 2"}
            ],
        },
        invariants={
            "checked": ["no_correlation_window_held"],
            "off": {"no_dead_letters": "the scenario poisons the detector on purpose"},
            "broken": [
                {
                    "invariant": "no_correlation_window_held",
                    "description": "no correlation window is left open",
                    "details": ["LOCK#ec2:instance/i-1 / CORRELATION in us-east-1, held by web-api-aaaa"],
                }
            ],
        },
    )

    text = timeline.format_timeline(crafted)

    assert "NOT MET" in text
    assert "final_state.in_service: expected 3, saw 2" in text
    assert "invariant no_correlation_window_held broken" in text and "LOCK#ec2:instance/i-1" in text
    assert "invariant no_dead_letters not checked: the scenario poisons the detector on purpose" in text
    assert timeline.failures(crafted) == [
        "final_state.in_service: expected 3, saw 2",
        "invariant no_correlation_window_held broken: LOCK#ec2:instance/i-1 / CORRELATION in us-east-1, held by "
        "web-api-aaaa",
    ]


def test_a_drill_that_started_nothing_says_so():
    crafted = report(
        outcome="nothing_started",
        reason="no impairment was detected",
        executions=[],
        detected=[],
        actions=[],
        execution={},
        outcomes={},
    )

    text = timeline.format_timeline(crafted)

    assert "outcome    nothing started" in text
    assert "skipped" not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T09:14:31.104+0000", "2026-11-20T09:14:31.104000+00:00"),
        ("2026-11-20T09:14:31Z", "2026-11-20T09:14:31+00:00"),
        ("2026-11-20T09:14:31.5-05:00", "2026-11-20T09:14:31.500000-05:00"),
        ("2026-11-20T09:14:31", "2026-11-20T09:14:31+00:00"),
        ("soon", None),
        ("", None),
        (None, None),
        (1700000000, None),
    ],
)
def test_parse_time_reads_every_time_format_of_a_report_and_refuses_the_rest(value, expected):
    parsed = timeline.parse_time(value)
    assert (parsed.isoformat() if parsed else None) == expected
