"""End to end through the local emulator: the synthesized stack detects and recovers the
built-in scenarios. Assertions are on AWS state (the group's instances and capacity, the audit
table, the escalation topic) as well as on the drill's report."""

from __future__ import annotations

import pytest

from recoveryctl import drill, scenario
from recoveryctl.emulator import workload

pytestmark = pytest.mark.e2e


def _states(report: dict) -> list[str]:
    return report["execution"]["states"]


def test_instance_failure_is_replaced_and_verified(synthesized):
    # Given the protected web-api group with three instances, one of which fails
    with drill.Drill(scenario.load("instance-failure"), synthesized.template_path) as run:
        # When its status-check alarm goes to ALARM
        report = run.run()
        group = workload.group_state(run.emulator, report["workload"]["group"])

        # Then one execution replaced the failed instance and verified the group healthy
        assert report["outcome"] == "recovered"
        assert report["execution"]["status"] == "SUCCEEDED"
        assert _states(report)[0] == "Admit"
        assert [
            s
            for s in _states(report)
            if s in ("ReplaceInstance", "WaitBeforeVerify", "Verify", "Verified?", "Finalize", "Recovered")
        ] == ["ReplaceInstance", "WaitBeforeVerify", "Verify", "Verified?", "Finalize", "Recovered"]
        failed = report["workload"]["impaired_instances"]
        assert len(failed) == 1
        assert failed[0] not in group["in_service"]
        assert group["desired_capacity"] == 3
        assert len(group["in_service"]) == 3
        assert [(a["type"], a["phase"], a["target"], a["result"]) for a in report["actions"]] == [
            ("replace_instance", "apply", failed[0], "changed")
        ]
        # MTTD counts from the alarm's state change; MTTR includes the verification wait.
        assert 0 <= report["mttd_seconds"] < 30
        assert report["mttr_seconds"] >= 30
        assert report["transitions"] <= 15
        assert report["escalations"] == []

        # And the audit trail holds the resolution
        from core.store import RecoveryStore

        record = RecoveryStore(run.emulator.outputs["RecoveryTableName"]).get_impairment(report["impairment_id"])
        assert record["status"] == "recovered"
        assert record["execution_arn"].endswith(f":{report['execution']['name']}")


def test_a_permanent_action_failure_rolls_back_and_escalates(synthesized):
    # Given a plan that scales out and then replaces, and an AccessDenied on the replacement
    with drill.Drill(scenario.load("action-failure-rollback"), synthesized.template_path) as run:
        # When a target turns unhealthy
        report = run.run()
        group = workload.group_state(run.emulator, report["workload"]["group"])

        # Then the scale-out is undone, in reverse order, and a human is paged
        assert report["outcome"] == "escalated"
        assert report["execution"]["status"] == "FAILED"
        states = _states(report)
        assert "Rollback" in states
        assert states.index("RollbackReplaceInstance") < states.index("RollbackScaleOut") < states.index("Escalate")
        assert group["desired_capacity"] == 3, "the emergency capacity was returned"
        assert len(group["in_service"]) == 3
        phases = [(a["type"], a["phase"], a["result"]) for a in report["actions"]]
        assert ("scale_out", "apply", "changed") in phases
        assert ("replace_instance", "apply", "failed") in phases
        assert ("scale_out", "rollback", "changed") in phases
        assert len(report["escalations"]) == 1
        assert "AccessDenied" in report["escalations"][0]
        assert report["mttr_seconds"] is None
        assert report["dead_letters"] == 0


def test_duplicate_alarm_deliveries_start_one_recovery(synthesized):
    # Given the same alarm state change delivered five times
    with drill.Drill(scenario.load("duplicate-alarms"), synthesized.template_path) as run:
        report = run.run()
        group = workload.group_state(run.emulator, report["workload"]["group"])

    # Then five detections, one execution, one action, one instance replaced
    assert report["detections"] == 5
    assert report["executions_started"] == 1
    assert [a for a in report["actions"] if a["phase"] == "apply"] == [report["actions"][0]]
    assert report["outcome"] == "recovered"
    assert len(group["in_service"]) == 3
    assert report["expectation_met"] is True


def test_a_dry_run_reports_what_it_would_change_and_changes_nothing(synthesized):
    spec = scenario.load("instance-failure").model_copy(update={"dry_run": True})
    with drill.Drill(spec, synthesized.template_path) as run:
        report = run.run()
        group = workload.group_state(run.emulator, report["workload"]["group"])

    assert report["outcome"] == "dry_run"
    assert [(a["type"], a["result"]) for a in report["actions"]] == [("replace_instance", "would_change")]
    assert report["workload"]["impaired_instances"][0] in group["in_service"], "nothing was replaced"
    assert group.items() <= report["workload"]["before"].items()


def test_service_degradation_adds_capacity_and_replaces_the_unhealthy_target(synthesized):
    with drill.Drill(scenario.load("service-degradation"), synthesized.template_path) as run:
        report = run.run()
        health = run.emulator.client("elbv2").describe_target_health(TargetGroupArn=run.workload["target_group_arn"])[
            "TargetHealthDescriptions"
        ]

    assert report["outcome"] == "recovered"
    assert report["executions_started"] == 1
    # Surge, replace, and once the workload stayed healthy the emergency capacity goes back
    assert [(a["type"], a["phase"]) for a in report["actions"]] == [
        ("scale_out", "apply"),
        ("replace_instance", "apply"),
        ("scale_out", "return"),  # given back after the recovery held: not a rollback
    ]
    assert report["execution"]["states"][-3:] == ["WaitBeforeReturningCapacity", "ReturnCapacity", "Recovered"]
    after = report["workload"]["after"]
    assert after["desired_capacity"] == 3 and len(after["in_service"]) == 3
    assert report["workload"]["impaired_instances"][0] not in after["in_service"]
    registered = {h["Target"]["Id"]: h["TargetHealth"]["State"] for h in health}
    assert all(registered[i] == "healthy" for i in after["in_service"])


def test_three_signals_about_one_instance_are_one_recovery_timed_from_the_earliest(synthesized):
    with drill.Drill(scenario.load("correlated-signals"), synthesized.template_path) as run:
        report = run.run()

    # Three detectors saw it (target health, status check, AWS Health): one execution
    assert report["detections"] == 3
    assert report["executions_started"] == 1
    assert len(report["correlated"]) == 2
    assert report["outcome"] == "recovered"
    # The status check fired 30 s before the drill began: MTTD counts from it
    assert report["mttd_seconds"] >= 30
    assert report["workload"]["impaired_instances"][0] not in report["workload"]["after"]["in_service"]


def test_while_paused_detection_goes_on_and_nothing_is_acted_on(synthesized):
    with drill.Drill(scenario.load("paused"), synthesized.template_path) as run:
        report = run.run()
        group = workload.group_state(run.emulator, report["workload"]["group"])

    assert report["outcome"] == "skipped"
    assert report["detections"] == 1
    assert "Escalate" in report["execution"]["states"] and "RunActions" not in report["execution"]["states"]
    assert report["actions"] == []
    assert len(report["escalations"]) == 1 and "paused" in report["escalations"][0]
    assert report["workload"]["impaired_instances"][0] in group["in_service"], "nothing was replaced"
