"""Regional failover through the emulator, with a stack in each of two regions: the primary
region's APIs fail, the standby region's stack detects it (its probe), fails the workload over
to its standby there, verifies there, and fails back when the standby is broken too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recoveryctl import drill, scenario

pytestmark = pytest.mark.e2e

PRIMARY, STANDBY = "us-east-1", "us-west-2"


@pytest.fixture
def synth_cache(drill_synth_cache: Path) -> Path:
    """Where the scenarios' two-region deployment is synthesized (once for the session: the
    scenarios have the same deployment)."""
    return drill_synth_cache


def _records(run: drill.Drill, region: str, impairment_id: str) -> tuple[dict[str, Any] | None, list[dict]]:
    assert run.emulator is not None
    store = run.emulator.peer(region).store()
    return store.get_impairment(impairment_id), store.list_actions(impairment_id)


def test_the_standby_region_detects_the_primary_down_and_fails_over_there(synth_cache):
    with drill.Drill(scenario.load("region-failover-primary-down"), None, synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()
        assert run.emulator is not None
        primary_executions = run.emulator.peer(PRIMARY).executions()

        # Then the standby region's stack recovered it, and nothing ran in the primary region
        assert report["expectation_met"], report
        assert report["outcome"] == "recovered"
        assert report["region"] == STANDBY
        assert report["impairment_type"] == "region_impairment"
        assert primary_executions == []
        applied = [a["type"] for a in report["actions"] if a["phase"] == "apply"]
        assert applied == ["provision_standby_group", "failover_dns"]

        # And the standby capacity came up in the standby region before the DNS moved to it
        assert before["standby"]["desired_capacity"] == 0
        assert after["standby"]["region"] == STANDBY
        assert after["standby"]["desired_capacity"] == 2
        assert len(after["standby"]["in_service"]) == 2
        roles = {r["SetIdentifier"]: r["Failover"] for r in after["dns_records"]}
        assert roles == {"web-api-standby": "PRIMARY", "web-api-primary": "SECONDARY"}

        # And the workload's own group in the impaired region was left alone
        assert after["in_service"] == before["in_service"]

        # And the standby region's records show the recovery, with each action's state before and after
        record, actions = _records(run, STANDBY, report["impairment_id"])
        assert record is not None and record["outcome"] == "recovered"
        assert record["workload"] == "web-api"
        assert record["impairment"]["scope"]["impaired_region"] == PRIMARY
        done = sorted((a["action"], a["phase"], a["status"]) for a in actions)
        assert done == [("failover_dns", "apply", "done"), ("provision_standby_group", "apply", "done")]
        # the standby was serving before the traffic moved to it
        by_action = {a["action"]: a for a in actions}
        assert by_action["provision_standby_group"]["finished_at"] <= by_action["failover_dns"]["started_at"]
        # (the primary region's replica is not written: it was unreachable, and the emulator does
        # not replicate between replicas)
        assert _records(run, PRIMARY, report["impairment_id"])[0] is None

        # And the verification checked the new region: the standby group's capacity and the DNS
        history = run.emulator.peer(STANDBY).history(report["execution"]["arn"])
        verified = [
            e for e in history if e["type"] == "TaskStateExited" and e["stateExitedEventDetails"]["name"] == "Verify"
        ]
        assert verified
        assert '"group_capacity"' in str(verified[-1]) and '"dns_failover"' in str(verified[-1])

        # And the MTTD counts from the first failed probe (3 probes a minute apart)
        assert report["mttd_seconds"] >= 120


def test_a_standby_that_never_serves_is_waited_for_then_scaled_back_and_traffic_never_moves(synth_cache):
    with drill.Drill(scenario.load("region-failover-standby-broken"), None, synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()
        assert run.emulator is not None
        history = run.emulator.peer(STANDBY).history(report["execution"]["arn"])

    # Then the failover waited for the standby's targets (asked again and again), and gave up
    assert report["expectation_met"], report  # its expectations and every invariant
    assert report["outcome"] == "escalated"
    assert "0 of 2 targets healthy" in report["reason"]
    waits = [
        e
        for e in history
        if e["type"].endswith("Failed")
        and "CapacityNotReady" in str(e.get("lambdaFunctionFailedEventDetails") or e.get("taskFailedEventDetails"))
    ]
    assert len(waits) == 21  # the first try and its 20 slow retries
    # And the traffic never moved, and the standby is scaled back
    assert after["dns_records"] == before["dns_records"]
    assert after["standby"]["desired_capacity"] == 0
    assert [a["type"] for a in report["actions"] if a["phase"] == "apply"] == ["provision_standby_group"]
    assert report["escalations"]


def test_a_standby_that_buckles_under_the_traffic_fails_verification_and_the_recovery_fails_back(synth_cache):
    with drill.Drill(scenario.load("region-failover-fail-back"), None, synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

        # Then the recovery ran in the standby region and was escalated
        assert report["expectation_met"], report
        assert report["outcome"] == "escalated"
        assert report["region"] == STANDBY

        # And it failed back: the DNS records as they were, the standby group scaled back
        assert after["dns_records"] == before["dns_records"]
        assert after["standby"]["desired_capacity"] == 0
        rolled_back = sorted(a["type"] for a in report["actions"] if a["phase"] == "rollback")
        assert rolled_back == ["failover_dns", "provision_standby_group"]
        assert "RollbackFailoverDns" in report["execution"]["states"]

        # And a human was paged, from the standby region
        assert report["escalations"]


def test_with_route53s_control_plane_down_too_arc_routing_controls_fail_over(synth_cache):
    with drill.Drill(scenario.load("region-failover-routing-control"), None, synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

        # Then it recovered from the standby region through the cluster's other endpoints
        assert report["expectation_met"], report
        assert report["outcome"] == "recovered" and report["region"] == STANDBY
        assert before["routing_controls"] == {"web-api-us-east-1": "On", "web-api-us-west-2": "Off"}
        assert after["routing_controls"] == {"web-api-us-east-1": "Off", "web-api-us-west-2": "On"}
        # And no DNS change was needed (nor possible)
        assert after["dns_records"] == before["dns_records"]

        # And verification read the routing controls back from the cluster, not the DNS
        assert run.emulator is not None
        history = run.emulator.peer(STANDBY).history(report["execution"]["arn"])
        verified = [
            e for e in history if e["type"] == "TaskStateExited" and e["stateExitedEventDetails"]["name"] == "Verify"
        ]
        assert '"routing_control"' in str(verified[-1]) and '"dns_failover"' not in str(verified[-1])


def test_with_route53s_control_plane_down_a_dns_failover_fails_and_nothing_is_left_half_done(synth_cache):
    # Given the DNS plan, while us-east-1 and Route 53's control plane (which runs there) are down
    dns_plan = scenario.load("region-failover-primary-down").model_copy(
        update={"region_outage_global": ["route53"], "expect": scenario.Expectation(outcome="escalated")}
    )
    with drill.Drill(dns_plan, None, synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

    # Then the failover step cannot change the records: the standby capacity is scaled back, a human paged
    assert report["expectation_met"], report
    assert report["region"] == STANDBY
    assert after["dns_records"] == before["dns_records"]
    assert after["standby"]["desired_capacity"] == 0
    assert any("route53" in e for e in report["lambda_errors"])
    assert report["escalations"]


def test_a_safety_rule_that_blocks_the_switch_is_a_refusal_and_changes_nothing(synth_cache):
    # Given a control panel whose safety rule wants both routing controls On
    arc = scenario.load("region-failover-routing-control")
    rule = arc.safety_rules[0].model_copy(update={"at_least": 2})
    blocked = arc.model_copy(update={"safety_rules": [rule], "expect": scenario.Expectation(outcome="escalated")})
    with drill.Drill(blocked, None, synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

    # Then ARC refuses, nothing is switched, the standby is scaled back, and the page says why
    assert report["expectation_met"], report
    assert after["routing_controls"] == before["routing_controls"]
    assert after["standby"]["desired_capacity"] == 0
    assert "safety rule" in report["reason"] or any("safety rule" in str(e) for e in report["escalations"])
