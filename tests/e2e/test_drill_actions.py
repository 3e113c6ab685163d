"""Drill actions at a time: the operator pauses and resumes, disables and enables a plan, approves
or rejects a recovery waiting for a human, or stops a running execution, while the drill runs on
its virtual clock; each is done as recoveryctl does it, and recorded in the report."""

from __future__ import annotations

from typing import Any

import pytest

from recoveryctl import drill, scenario
from recoveryctl.scenario import Scenario

pytestmark = pytest.mark.e2e

STATUS_CHECK = "{workload}-status-check"


def _scenario(name: str, **fields: Any) -> Scenario:
    return Scenario.model_validate({"name": name, "instance_faults": [{"kind": "stop", "count": 1}], **fields})


def _at(run: drill.Drill, function: str) -> list[float]:
    """The virtual seconds (since the drill started) at which a function was invoked."""
    from datetime import datetime

    assert run.emulator is not None
    epoch = run.emulator.scheduler.epoch
    return [
        (datetime.fromisoformat(i.at) - epoch).total_seconds()
        for i in run.emulator.invocations
        if function in i.function
    ]


def test_pause_then_resume_then_the_alarm_fires_again(synthesized):
    # Given the kill switch turned on 5 s in and off again 20 s in, and the status-check alarm
    # firing at 10 s (paused), clearing, and firing again once the first impairment is long over
    spec = _scenario(
        "pause-resume-again",
        actions=[
            {"at_seconds": 5, "action": "pause", "reason": "change freeze"},
            {"at_seconds": 20, "action": "resume"},
        ],
        signals=[
            {"alarm": STATUS_CHECK, "at_seconds": 10},
            {"alarm": STATUS_CHECK, "state": "OK", "at_seconds": 30},
            {"alarm": STATUS_CHECK, "at_seconds": 400},
        ],
    )
    with drill.Drill(spec, synthesized.template_path, seed=1) as run:
        report = run.run()
        admits = _at(run, "Admit")

    # Then the first recovery stopped at the kill switch, the second (after resume) recovered
    assert [(a["at_seconds"], a["action"], a["done"]) for a in report["drill_actions"]] == [
        (5.0, "pause", ["us-east-1"]),
        (20.0, "resume", ["us-east-1"]),
    ]
    assert admits == [10.0, 400.0]
    assert report["outcomes"] == {"skipped": 1, "recovered": 1}
    assert report["guardrails_tripped"] == ["paused"]
    (failed,) = report["workload"]["impaired_instances"]
    assert failed not in report["workload"]["after"]["in_service"]


def test_a_plan_disabled_then_enabled_again(synthesized):
    spec = _scenario(
        "plan-off-and-on",
        actions=[
            {"at_seconds": 5, "action": "disable_plan", "plan": "replace-failed-instance"},
            {"at_seconds": 20, "action": "enable_plan", "plan": "replace-failed-instance"},
        ],
        signals=[
            {"alarm": STATUS_CHECK, "at_seconds": 10},
            {"alarm": STATUS_CHECK, "state": "OK", "at_seconds": 30},
            {"alarm": STATUS_CHECK, "at_seconds": 400},
        ],
    )
    with drill.Drill(spec, synthesized.template_path, seed=1) as run:
        report = run.run()

    first, second = report["executions"]
    assert first["outcome"] == "escalated" and "NoMatchingPlan" in first["reason"]
    assert second["outcome"] == "recovered"


def test_an_approval_given_at_a_time_lets_the_recovery_act_then(synthesized):
    # Given the failover plan that needs a human, and the on-call approving 90 s in
    spec = scenario.load("approval-required").model_copy(
        update={"actions": [scenario.DrillAction(at_seconds=90, action="approve", reason="looks right")]}
    )
    with drill.Drill(spec, synthesized.template_path, seed=1) as run:
        report = run.run()
        failovers = _at(run, "FailoverDns")
        record = run.emulator.store().get_impairment(report["impairment_id"])

    assert report["outcome"] == "recovered"
    assert failovers and min(failovers) == 90.0, "nothing acted before the approval"
    assert report["drill_actions"][0]["done"] == [f"{report['impairment_id']}: approved"]
    assert (record["approval"]["status"], record["approval"]["by"]) == ("approved", "drill")
    assert report["workload"]["after"]["dns_records"] != report["workload"]["before"]["dns_records"]


def test_a_rejection_at_a_time_escalates_and_changes_nothing(synthesized):
    spec = scenario.load("approval-required").model_copy(
        update={"actions": [scenario.DrillAction(at_seconds=30, action="reject", reason="not during the sale")]}
    )
    with drill.Drill(spec, synthesized.template_path, seed=1) as run:
        report = run.run()

    assert report["outcome"] == "escalated" and "rejected" in report["reason"]
    assert report["drill_actions"][0]["done"] == [f"{report['impairment_id']}: rejected"]
    assert report["workload"]["after"]["dns_records"] == report["workload"]["before"]["dns_records"]


def test_stopping_a_running_execution_aborts_it_and_announces_it(synthesized):
    # Given a recovery in its 30 s wait before verifying, stopped 10 s in (StopExecution)
    spec = _scenario(
        "stopped-mid-recovery",
        actions=[{"at_seconds": 10, "action": "stop_execution", "reason": "operator aborts"}],
        signals=[{"alarm": STATUS_CHECK}],
    )
    with drill.Drill(spec, synthesized.template_path, seed=1) as run:
        report = run.run()
        (execution,) = run.emulator.executions()
        announced = [(e["bus"], e["detail"]["status"]) for e in run.emulator.events if e["source"] == "aws.states"]
        verified = _at(run, "Verify")

    # Then the execution is dead, ABORTED at 10 s, and said so on the default bus
    assert execution["status"] == "ABORTED"
    assert report["drill_actions"][0]["done"] == [execution["name"]]
    # and its death handled: the cleanup state machine (same name) ran and ended through its Escalate
    assert announced == [("default", "RUNNING"), ("default", "ABORTED"), ("default", "RUNNING"), ("default", "FAILED")]
    assert report["outcome"] == "escalated" and "aborted" in report["reason"]
    assert report["invariants"]["broken"] == []
    assert verified == [], "nothing ran after the stop"
    # The stop at 10 s, then the cleanup's escalation, the first of its storm, waits out the storm
    # window (300 s by default) for a summary of any that join it, and ends
    assert report["virtual_wait_seconds"] == 10 + 300
