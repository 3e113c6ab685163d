"""Signals through the emulator that must not start a recovery, and the clearing of one."""

from __future__ import annotations

import pytest

from recoveryctl import drill, scenario

pytestmark = pytest.mark.e2e


def _quiet_scenario() -> scenario.Scenario:
    # A workload with nothing wrong: the signals below are injected by hand.
    return scenario.Scenario.model_validate({"name": "quiet", "signals": [{"alarm": "{workload}-status-check"}]})


def test_malformed_and_unmanaged_signals_change_nothing(synthesized):
    with drill.Drill(_quiet_scenario(), synthesized.template_path) as run:
        emulator = run.emulator
        before = emulator.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"][0]
        # Given an alarm event without its state, one with a garbage timestamp, and a
        # well-formed state change of an alarm this system does not manage (no tags)
        broken = {
            "version": "0",
            "id": "1",
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": emulator.account,
            "time": "2026-11-20T09:14:31Z",
            "region": emulator.region,
            "resources": [],
            "detail": {"alarmName": "web-api-broken"},
        }
        garbage = {
            **broken,
            "id": "2",
            "detail": {"alarmName": "web-api-x", "state": {"value": "ALARM", "timestamp": "yesterday"}},
        }
        emulator.client("cloudwatch").put_metric_alarm(
            AlarmName="web-api-unmanaged",
            MetricName="CPUUtilization",
            Namespace="AWS/EC2",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=90,
            ComparisonOperator="GreaterThanThreshold",
        )

        # When they arrive on the default bus
        emulator.put_event(broken)
        emulator.put_event(garbage)
        emulator.set_alarm_state("web-api-unmanaged", "ALARM")
        emulator.pump()

        # Then no impairment, no execution, no action, nothing dead-lettered; each was answered
        detector = [i for i in emulator.invocations if "AlarmDetector" in i.function]
        assert [i.result["status"] for i in detector] == ["rejected", "rejected", "ignored"]
        assert emulator.executions() == []
        assert not any(e["bus"] != "default" for e in emulator.events), "nothing reached the recovery bus"
        after = emulator.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"][0]
        assert after["DesiredCapacity"] == before["DesiredCapacity"]
        assert {i["InstanceId"] for i in after["Instances"]} == {i["InstanceId"] for i in before["Instances"]}


def test_insufficient_data_is_not_an_impairment(synthesized):
    with drill.Drill(_quiet_scenario(), synthesized.template_path) as run:
        run.emulator.set_alarm_state("web-api-status-check", "INSUFFICIENT_DATA")
        run.emulator.pump()
        assert run.emulator.executions() == []


def test_alarm_back_to_ok_records_the_clearing(synthesized):
    spec = scenario.load("instance-failure")
    with drill.Drill(spec, synthesized.template_path) as run:
        report = run.run()
        assert report["outcome"] == "recovered"

        # When the alarm returns to OK
        run.emulator.set_alarm_state("web-api-status-check", "OK")
        run.emulator.pump()

        # Then "Impairment Cleared" carries the same impairment id and the record has cleared_at
        cleared = [e for e in run.emulator.events if e["detail-type"] == "Impairment Cleared"]
        assert [e["detail"]["impairment_id"] for e in cleared] == [report["impairment_id"]]
        from core.store import RecoveryStore

        record = RecoveryStore(run.emulator.outputs["RecoveryTableName"]).get_impairment(report["impairment_id"])
        assert record["cleared_at"]
        assert len(run.emulator.executions()) == 1, "clearing starts nothing"
