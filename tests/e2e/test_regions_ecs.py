"""Regional failover of an ECS workload through the emulator: the standby region's stack probes
the workload's ECS service, brings the standby ECS service up to its count before the DNS moves
(the audit trail's order), and, when the standby's tasks keep stopping, gives up waiting, scales
it back and never moves the traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoveryctl import drill, scenario

pytestmark = pytest.mark.e2e

PRIMARY, STANDBY = "us-east-1", "us-west-2"


def test_the_standby_service_runs_its_count_before_the_dns_moves_to_it(drill_synth_cache: Path):
    with drill.Drill(scenario.load("region-failover-ecs"), None, drill_synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()
        assert run.emulator is not None
        actions = run.emulator.peer(STANDBY).store().list_actions(report["impairment_id"])
        record = run.emulator.peer(STANDBY).store().get_impairment(report["impairment_id"])
        primary_executions = run.emulator.peer(PRIMARY).executions()

    # Then the standby region recovered it, and nothing ran in the impaired region
    assert report["expectation_met"], report
    assert (report["outcome"], report["region"]) == ("recovered", STANDBY)
    assert primary_executions == []
    # And the group step was skipped (checkout has no standby group), and recorded as such
    assert record is not None
    assert "standby_ecs_service" in record["impairment"]["scope"]
    assert "standby_auto_scaling_group" not in record["impairment"]["scope"]
    # And the audit trail shows the standby service done before the DNS change started
    by_action = {a["action"]: a for a in actions if a["phase"] == "apply"}
    assert sorted(by_action) == ["failover_dns", "provision_standby_ecs_service"]
    assert by_action["provision_standby_ecs_service"]["status"] == "done"
    assert by_action["provision_standby_ecs_service"]["finished_at"] <= by_action["failover_dns"]["started_at"]
    # And the standby runs its count in us-west-2, with the traffic there; the primary's service untouched
    assert before["standby"]["ecs_service"]["desired"] == 0
    assert (after["standby"]["ecs_service"]["running"], after["standby"]["ecs_service"]["desired"]) == (3, 3)
    roles = {r["SetIdentifier"]: r["Failover"] for r in after["dns_records"]}
    assert roles == {"checkout-standby": "PRIMARY", "checkout-primary": "SECONDARY"}
    assert after["ecs_service"] == before["ecs_service"]


def test_a_standby_service_whose_tasks_stop_is_waited_for_scaled_back_and_the_dns_never_moves(
    drill_synth_cache: Path,
):
    with drill.Drill(scenario.load("region-failover-ecs-tasks-stop"), None, drill_synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()
        assert run.emulator is not None
        history = run.emulator.peer(STANDBY).history(report["execution"]["arn"])

    # Then the step waited (asked again every 30 s for 10 minutes) and the recovery gave up
    assert report["expectation_met"], report
    assert report["outcome"] == "escalated"
    assert "0 of 3 tasks running" in report["reason"]
    waits = [
        e
        for e in history
        if e["type"].endswith("Failed")
        and "CapacityNotReady" in str(e.get("lambdaFunctionFailedEventDetails") or e.get("taskFailedEventDetails"))
    ]
    assert len(waits) == 21  # the first try and its 20 slow retries
    # And the rollback scaled the standby service back, and the DNS never moved
    assert after["standby"]["ecs_service"]["desired"] == 0
    assert after["dns_records"] == before["dns_records"]
    assert [a["type"] for a in report["actions"] if a["phase"] == "apply"] == ["provision_standby_ecs_service"]
    rolled_back = [(a["type"], a["result"]) for a in report["actions"] if a["phase"] == "rollback"]
    assert rolled_back == [("provision_standby_ecs_service", "changed")]
    assert report["escalations"]
