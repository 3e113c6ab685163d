"""Fault injection through the emulator: AWS errors (throttling, access denied), an action task
that times out or crashes, a multi-step plan failing midway, a rollback that fails, and duplicate
and concurrent signals. In every case nothing recorded is lost (the impairment has an outcome,
every action record its state before), no lock is left behind, and an escalation pages a human."""

from __future__ import annotations

from typing import Any

import pytest

from recoveryctl import drill
from recoveryctl.emulator import workload as workloads
from recoveryctl.scenario import Scenario

pytestmark = pytest.mark.e2e

STATUS_CHECK = {"alarm": "{workload}-status-check", "state": "ALARM"}
SURGE_THEN_REPLACE = [
    {
        "name": "surge-then-replace",
        "description": "add one instance, then replace the failed one",
        "match": {"impairment_types": ["instance_failure"], "min_severity": "medium"},
        "steps": [
            {"action": "scale_out", "params": {"increment": 1, "keep": True}},
            {"action": "replace_instance", "params": {}},
        ],
        "verify": {"wait_seconds": 30, "max_attempts": 3},
        "timeout_seconds": 900,
    }
]
DENIED = "User is not authorized to perform this operation"


def scenario(name: str, **fields: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "name": name,
            "group": {"min_size": 2, "max_size": 6, "desired": 3},
            "instance_faults": [{"kind": "stop", "count": 1}],
            "signals": [STATUS_CHECK],
            **fields,
        }
    )


def fault(operation: str, code: str, service: str = "auto-scaling", **extra: Any) -> dict[str, Any]:
    return {"service": service, "operation": operation, "error_code": code, "message": DENIED, **extra}


def run(
    spec: Scenario, template_path, prepare: Any = None
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[dict]]:
    """The drill's report, the impairment record, its action records and the lock items left."""
    from core.store import RecoveryStore

    with drill.Drill(spec, template_path) as running:
        if prepare is not None:
            prepare(running.emulator)
        report = running.run()
        emulator = running.emulator
        store = RecoveryStore(emulator.outputs["RecoveryTableName"])
        record = store.get_impairment(report["impairment_id"]) if report["impairment_id"] else None
        actions = store.list_actions(report["impairment_id"]) if record else []
        items = emulator.client("dynamodb").scan(TableName=emulator.outputs["RecoveryTableName"])["Items"]
        locks = [i for i in items if i["pk"]["S"].startswith("LOCK#")]
        report["group_now"] = workloads.group_state(emulator, report["workload"]["group"])
    return report, record or {}, actions, locks


def assert_nothing_lost(report: dict, record: dict, actions: list[dict], locks: list[dict]) -> None:
    assert record, "the impairment was not recorded"
    assert record.get("outcome") == report["outcome"], record
    for action in actions:
        assert action.get("before"), f"action record without its state before: {action}"
        assert action["status"] in ("done", "failed"), f"a step left {action['status']}: {action}"
    held = [i for i in locks if i.get("owner", {}).get("S") == record["impairment_id"]]
    assert held == [], f"locks left behind: {held}"
    if report["outcome"] == "escalated":
        assert len(report["escalations"]) == 1, report["escalations"]
        assert record.get("escalated_at"), "the escalation is recorded on the impairment"


def phases(actions: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((a["action"], a["phase"], a["status"]) for a in actions)


def test_throttling_is_retried_by_the_state_machine_then_recovers(synthesized):
    spec = scenario(
        "throttled-replace",
        api_faults=[fault("TerminateInstanceInAutoScalingGroup", "Throttling", status=400, times=2)],
    )
    report, record, actions, locks = run(spec, synthesized.template_path)

    assert report["outcome"] == "recovered"
    assert sum("Throttling" in e for e in report["lambda_errors"]) == 2, report["lambda_errors"]
    assert phases(actions) == [("replace_instance", "apply", "done")]
    assert report["escalations"] == []
    assert_nothing_lost(report, record, actions, locks)


def test_access_denied_is_permanent_rolls_back_and_escalates(synthesized):
    spec = scenario("denied-replace", api_faults=[fault("TerminateInstanceInAutoScalingGroup", "AccessDenied")])
    report, record, actions, locks = run(spec, synthesized.template_path)

    assert report["outcome"] == "escalated"
    # Not retried: one attempt of the permanent error.
    assert sum("AccessDenied" in e for e in report["lambda_errors"]) == 1, report["lambda_errors"]
    assert ("replace_instance", "apply", "failed") in phases(actions)
    assert "Rollback" in report["execution"]["states"]
    assert "AccessDenied" in str(report["escalations"])
    assert_nothing_lost(report, record, actions, locks)


def test_partial_failure_midway_rolls_back_the_step_that_was_applied(synthesized):
    spec = scenario(
        "surge-then-denied",
        plans=SURGE_THEN_REPLACE,
        api_faults=[fault("TerminateInstanceInAutoScalingGroup", "AccessDenied")],
    )
    report, record, actions, locks = run(spec, synthesized.template_path)

    assert report["outcome"] == "escalated"
    assert phases(actions) == [
        ("replace_instance", "apply", "failed"),
        ("replace_instance", "rollback", "done"),
        ("scale_out", "apply", "done"),
        ("scale_out", "rollback", "done"),
    ]
    states = report["execution"]["states"]
    assert states.index("RollbackReplaceInstance") < states.index("RollbackScaleOut") < states.index("Escalate")
    assert report["group_now"]["desired_capacity"] == 3, "the surge was undone"
    assert_nothing_lost(report, record, actions, locks)


def test_a_failing_rollback_escalates_with_everything_recorded(synthesized, monkeypatch):
    # The surge succeeds; from then on SetDesiredCapacity is denied, so undoing it fails.
    from actions import scale_out

    real = scale_out.apply_handler

    def prepare(emulator: Any) -> None:
        def surge_then_deny(event: Any, context: Any) -> Any:
            result = real(event, context)
            emulator.inject_fault("auto-scaling", "SetDesiredCapacity", "AccessDenied", DENIED, 400, None)
            return result

        monkeypatch.setattr(scale_out, "apply_handler", surge_then_deny)

    spec = scenario(
        "rollback-denied",
        plans=SURGE_THEN_REPLACE,
        api_faults=[fault("TerminateInstanceInAutoScalingGroup", "AccessDenied")],
    )
    report, record, actions, locks = run(spec, synthesized.template_path, prepare)

    assert report["outcome"] == "escalated"
    assert record["reason"].startswith("rollback failed"), record["reason"]
    assert ("scale_out", "apply", "done") in phases(actions)
    assert ("scale_out", "rollback", "failed") in phases(actions)
    assert "rollback failed" in str(report["escalations"])
    assert report["group_now"]["desired_capacity"] == 4, "the surge could not be undone: a human is told"
    assert_nothing_lost(report, record, actions, locks)


class _Timedout(Exception):
    """What Lambda reports when a function runs past its timeout (errorType Sandbox.Timedout)."""


_Timedout.__name__ = "Sandbox.Timedout"


@pytest.mark.parametrize("when", ["after_acting", "before_acting"])
def test_an_action_task_that_times_out_or_crashes_is_rolled_back(synthesized, monkeypatch, when):
    # The emulator resolves a function's handler by name at each invocation, so replacing the
    # attribute makes the task time out (after its change, the worst case) or crash (before it).
    from actions import replace_instance

    real = replace_instance.apply_handler

    def interrupted(event: Any, context: Any) -> Any:
        if when == "before_acting":
            raise RuntimeError("the function crashed")
        real(event, context)
        raise _Timedout("Task timed out after 60.00 seconds")

    monkeypatch.setattr(replace_instance, "apply_handler", interrupted)
    report, record, actions, locks = run(scenario(f"task-{when.replace('_', '-')}"), synthesized.template_path)

    assert report["outcome"] == "escalated"
    expected = "Sandbox.Timedout" if when == "after_acting" else "RuntimeError"
    assert any(expected in e for e in report["lambda_errors"]), report["lambda_errors"]
    assert "Rollback" in report["execution"]["states"]
    if when == "after_acting":
        # The step was recorded before the timeout: its rollback ran from that record.
        assert ("replace_instance", "rollback", "done") in phases(actions)
    assert expected in str(report["escalations"])
    assert_nothing_lost(report, record, actions, locks)


def test_duplicate_deliveries_start_exactly_one_recovery(synthesized):
    spec = scenario("dup-status-check", signals=[{**STATUS_CHECK, "deliveries": 4}])
    report, record, actions, locks = run(spec, synthesized.template_path)

    assert report["executions_started"] == 1
    assert [a["action"] for a in actions if a["phase"] == "apply"] == ["replace_instance"]
    assert report["outcome"] == "recovered"
    assert_nothing_lost(report, record, actions, locks)


def test_two_different_signals_about_one_instance_at_once_start_one_recovery(synthesized):
    state_change = {
        "version": "0",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "{account}",
        "time": "{now}",
        "region": "{region}",
        "resources": ["arn:aws:ec2:{region}:{account}:instance/{instance}"],
        "detail": {"instance-id": "{instance}", "state": "stopped"},
    }
    spec = scenario(
        "alarm-and-state-change",
        signals=[{**STATUS_CHECK, "deliveries": 2}, {"event": state_change, "deliveries": 2}],
    )
    report, record, actions, locks = run(spec, synthesized.template_path)

    assert report["detections"] >= 2, "both detectors saw the fault"
    assert report["executions_started"] == 1
    assert [a["action"] for a in actions if a["phase"] == "apply"] == ["replace_instance"]
    assert report["outcome"] == "recovered"
    assert len(report["group_now"]["in_service"]) == 3
    assert_nothing_lost(report, record, actions, locks)
