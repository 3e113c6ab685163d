"""End to end: the guardrails stop or narrow a recovery, and AWS state proves what they stopped.
Each scenario's report names what stopped it (guardrails_tripped); the group, the DNS records
and the audit table show that nothing beyond it was changed, and no lock is left behind."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr

from recoveryctl import drill, scenario
from recoveryctl.emulator import workload

pytestmark = pytest.mark.e2e


def _leftover_locks(run: drill.Drill) -> list[dict[str, Any]]:
    """LOCK items (resource locks) still held after every execution ended."""
    table = boto3.resource("dynamodb").Table(run.emulator.outputs["RecoveryTableName"])
    items = table.scan(FilterExpression=Attr("sk").eq("LOCK"))["Items"]
    return items


def _terminated(run: drill.Drill, instance_ids: list[str]) -> set[str]:
    found = run.emulator.client("ec2").describe_instances(InstanceIds=instance_ids)
    return {
        i["InstanceId"] for r in found["Reservations"] for i in r["Instances"] if i["State"]["Name"] == "terminated"
    }


def test_blast_radius_replaces_at_most_a_third_of_the_group_and_pages_for_the_rest(synthesized):
    # Given a group of six, half of which fails its health check at once
    with drill.Drill(scenario.load("guardrail-blast-radius"), synthesized.template_path) as run:
        # When the sweep reports the three together
        report = run.run()
        impaired = report["workload"]["impaired_instances"]
        replaced = _terminated(run, impaired)
        group = workload.group_state(run.emulator, report["workload"]["group"])
        locks = _leftover_locks(run)
        from core.store import RecoveryStore

        record = RecoveryStore(run.emulator.outputs["RecoveryTableName"]).get_impairment(report["impairment_id"])

    # Then two (a third of six) are replaced, the third stays in service for a human
    assert report["expectation_met"], report
    assert report["guardrails_tripped"] == ["blast_radius"]
    assert len(impaired) == 3 and len(replaced) == 2
    (deferred,) = set(impaired) - replaced
    assert deferred in group["in_service"]
    assert record["deferred_resources"] == [f"ec2:instance/{deferred}"]
    assert record["outcome"] == "recovered"
    # and the human is told which instance was deferred and why
    assert any("defers 1" in message for message in report["escalations"])
    assert locks == []


def test_fail_open_replaces_nothing_when_the_whole_fleet_looks_impaired(synthesized):
    with drill.Drill(scenario.load("fail-open"), synthesized.template_path) as run:
        report = run.run()
        impaired = report["workload"]["impaired_instances"]
        replaced = _terminated(run, impaired)
        group = workload.group_state(run.emulator, report["workload"]["group"])
        locks = _leftover_locks(run)

    assert report["expectation_met"], report
    assert report["outcome"] == "escalated" and report["guardrails_tripped"] == ["fail_open"]
    assert replaced == set() and report["actions"] == []
    assert sorted(group["in_service"]) == sorted(report["workload"]["before"]["in_service"])
    assert group["desired_capacity"] == report["workload"]["before"]["desired_capacity"]
    assert len(report["escalations"]) == 1 and "6 of 8 instances" in report["escalations"][0]
    assert locks == []


def test_paused_records_the_guardrail_and_changes_nothing(synthesized):
    with drill.Drill(scenario.load("paused"), synthesized.template_path) as run:
        report = run.run()
        locks = _leftover_locks(run)

    assert report["expectation_met"], report  # its expectations and every invariant
    assert report["guardrails_tripped"] == ["paused"]
    assert report["workload"]["after"]["in_service"] == report["workload"]["before"]["in_service"]
    assert locks == []


def test_flapping_stops_fixing_the_same_group_after_the_limit(synthesized):
    # Given an instance whose replacement fails the same way, four times in 40 minutes
    with drill.Drill(scenario.load("flapping"), synthesized.template_path) as run:
        report = run.run()
        impaired = report["workload"]["impaired_instances"]
        replaced = _terminated(run, impaired)
        locks = _leftover_locks(run)

    # Then three recoveries replace it, the fourth escalates to the owner instead
    assert report["expectation_met"], report
    assert report["outcomes"] == {"recovered": 3, "escalated": 1}
    assert report["guardrails_tripped"] == ["flapping"]
    assert len(impaired) == 4 and len(replaced) == 3
    (last,) = set(impaired) - replaced
    assert last in report["workload"]["after"]["in_service"], "the fourth failure is left for the owner"
    assert any("recovered 3 times" in message for message in report["escalations"])
    assert locks == []


def test_a_plan_needing_approval_changes_nothing_without_an_answer(synthesized):
    with drill.Drill(scenario.load("approval-required"), synthesized.template_path) as run:
        report = run.run()
        from core.store import RecoveryStore

        record = RecoveryStore(run.emulator.outputs["RecoveryTableName"]).get_impairment(report["impairment_id"])
        locks = _leftover_locks(run)

    assert report["expectation_met"], report
    assert report["guardrails_tripped"] == ["approval"]
    assert "RequestApproval" in report["execution"]["states"]
    assert "RunActions" not in report["execution"]["states"]
    assert report["workload"]["after"]["dns_records"] == report["workload"]["before"]["dns_records"]
    assert record["approval"]["status"] == "pending" and record["approval"]["task_token"]
    # one page asking for approval, one saying nobody answered
    assert len(report["escalations"]) == 2
    assert "needs a human's approval" in report["escalations"][1]
    assert locks == []


def test_a_rejected_plan_is_escalated_and_an_approved_one_runs(synthesized):
    rejected = scenario.load("approval-required").model_copy(update={"approval": "reject"})
    with drill.Drill(rejected, synthesized.template_path) as run:
        report = run.run()
    assert report["outcome"] == "escalated" and report["guardrails_tripped"] == ["approval"]
    assert "rejected" in report["reason"]
    assert report["workload"]["after"]["dns_records"] == report["workload"]["before"]["dns_records"]

    with drill.Drill(scenario.load("region-failover"), synthesized.template_path) as run:
        report = run.run()
    assert report["outcome"] == "recovered"
    assert report["execution"]["states"].index("RequestApproval") < report["execution"]["states"].index("FailoverDns")
    assert report["workload"]["after"]["dns_records"] != report["workload"]["before"]["dns_records"]
