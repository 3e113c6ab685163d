"""A regional failover of a workload whose data is in an Aurora global database, through the
emulator with a stack in each of two regions: the standby region's cluster becomes the writer
before the DNS moves; a switchover (no data loss) while the primary region still answers; a
refusal, with nothing moved, when it does not and nothing allows losing data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from recoveryctl import drill, scenario
from tests.e2e.audit import actions_by_step

pytestmark = pytest.mark.e2e

PRIMARY, STANDBY = "us-east-1", "us-west-2"
SCENARIO = "region-failover-global-database"
TARGET = f"arn:aws:rds:{STANDBY}:123456789012:cluster:web-api-standby-db"


def test_the_standby_cluster_becomes_the_writer_before_the_dns_moves(drill_synth_cache: Path):
    with drill.Drill(scenario.load(SCENARIO), None, drill_synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

        # Then the recovery held: standby scaled, the standby's cluster the writer, traffic on the standby
        assert report["expectation_met"], report
        assert before["global_database"]["writer_region"] == PRIMARY
        assert after["global_database"] == {"writer": TARGET, "writer_region": STANDBY, "status": "available"}
        assert len(after["standby"]["in_service"]) == 2
        roles = {r["SetIdentifier"]: r["Failover"] for r in after["dns_records"]}
        assert roles == {"web-api-standby": "PRIMARY", "web-api-primary": "SECONDARY"}

        # And the audit trail shows the order: capacity, then the writer, and only then the DNS
        actions = actions_by_step(run, STANDBY, report["impairment_id"])
        capacity = actions["provision_standby_group#apply"]
        database = actions["failover_global_database#apply"]
        dns = actions["failover_dns#apply"]
        assert capacity["finished_at"] <= database["started_at"]
        assert database["finished_at"] <= dns["started_at"]
        # a failover (the primary region does not answer), allowed by the workload, and why
        assert database["before"]["operation"] == "failover"
        assert "does not answer" in database["before"]["why"]


def test_while_the_primary_region_still_answers_rds_it_switches_over_without_data_loss(drill_synth_cache: Path):
    # Given us-east-1's Auto Scaling fails the probes (a region_impairment) while its RDS answers
    answering = scenario.load(SCENARIO).model_copy(
        update={
            "region_outage": None,
            "api_faults": [
                scenario.ApiFault(
                    service="auto-scaling",
                    operation="DescribeAutoScalingGroups",
                    error_code="ServiceUnavailable",
                    status=503,
                    region="primary",
                )
            ],
        }
    )
    with drill.Drill(answering, None, drill_synth_cache) as run:
        report = run.run()
        after = run.state()

        # Then a planned switchover made the standby's cluster the writer, and the traffic followed
        assert report["expectation_met"], report
        assert after["global_database"]["writer_region"] == STANDBY
        database = actions_by_step(run, STANDBY, report["impairment_id"])["failover_global_database#apply"]
        assert database["before"]["operation"] == "switchover"
        assert "answers" in database["before"]["why"]


def test_without_data_loss_allowed_and_the_primary_down_it_escalates_and_the_traffic_stays(drill_synth_cache: Path):
    # Given the workload does not allow losing data, and us-east-1 is down
    loaded = scenario.load(SCENARIO)
    deployment = copy.deepcopy(loaded.deployment.model_dump(exclude_none=True))
    deployment["workloads"]["web-api"]["standby"]["global_database"]["allow_data_loss"] = False
    refused = loaded.model_copy(
        update={
            "deployment": scenario.Deployment.model_validate(deployment),
            "expect": scenario.Expectation(outcome="escalated", executions_started=1),
        }
    )
    with drill.Drill(refused, None, drill_synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

    # Then the step is refused naming the setting, a human is paged, and nothing moved: the writer
    # is still the primary's, the DNS still sends traffic there, the standby is scaled back
    assert report["expectation_met"], report
    assert after["global_database"]["writer_region"] == PRIMARY
    assert after["dns_records"] == before["dns_records"]
    assert after["standby"]["desired_capacity"] == 0
    assert "allow_data_loss" in str(report["reason"]) + str(report["escalations"])
    applied = [a["type"] for a in report["actions"] if a["phase"] == "apply"]
    assert "failover_dns" not in applied
