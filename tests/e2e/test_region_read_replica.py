"""A regional failover of a workload whose data is in an RDS DB instance with a cross-region read
replica in the standby region, through the emulator with a stack in each of two regions: the
replica is promoted (RDS reboots it; the step waits) before the DNS moves; a rejected approval
leaves everything as it was; a replica a human already promoted is left as it is and the traffic
still moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoveryctl import drill, scenario
from tests.e2e.audit import actions_by_step

pytestmark = pytest.mark.e2e

PRIMARY, STANDBY = "us-east-1", "us-west-2"
SCENARIO = "region-failover-read-replica"
REPLICA = "web-api-replica"
SOURCE = f"arn:aws:rds:{PRIMARY}:123456789012:db:web-api-db"


def test_the_replica_is_promoted_and_stands_alone_before_the_dns_moves(drill_synth_cache: Path):
    with drill.Drill(scenario.load(SCENARIO), None, drill_synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

        # Then the recovery held: the standby scaled, the replica standalone and available with
        # the backup retention it had, its source no longer listing it, traffic on the standby
        assert report["expectation_met"], report
        assert before["read_replica"] == {
            "db_instance": REPLICA,
            "region": STANDBY,
            "status": "available",
            "source": SOURCE,
            "listed_by_source": True,
            "backup_retention": 7,
        }
        assert after["read_replica"] == {**before["read_replica"], "source": None, "listed_by_source": False}
        assert len(after["standby"]["in_service"]) == 2
        roles = {r["SetIdentifier"]: r["Failover"] for r in after["dns_records"]}
        assert roles == {"web-api-standby": "PRIMARY", "web-api-primary": "SECONDARY"}

        # And the step waited while RDS rebooted the replica (asked again, no Lambda in between)
        waits = [e for e in report["lambda_errors"] if "PromoteReadReplica" in e]
        assert ["modifying" in waits[0], "rebooting" in waits[1]] == [True, True] and len(waits) == 2

        # And the audit trail shows the order: capacity, then the promotion, and only then the DNS
        actions = actions_by_step(run, STANDBY, report["impairment_id"])
        capacity = actions["provision_standby_group#apply"]
        promotion = actions["promote_read_replica#apply"]
        dns = actions["failover_dns#apply"]
        assert capacity["finished_at"] <= promotion["started_at"]
        assert promotion["finished_at"] <= dns["started_at"]
        assert promotion["before"]["source"] == SOURCE and promotion["before"]["backup_retention"] == 7


def test_a_rejected_approval_promotes_nothing_and_moves_nothing(drill_synth_cache: Path):
    # Given the on-call rejects the plan (the promotion cannot be undone)
    rejected = scenario.load(SCENARIO).model_copy(
        update={"approval": "reject", "expect": scenario.Expectation(outcome="escalated", executions_started=1)}
    )
    with drill.Drill(rejected, None, drill_synth_cache) as run:
        before = run.state()
        report = run.run()
        after = run.state()

    # Then it escalates, and the replica still replicates its source, which still lists it; the
    # DNS and the standby group are as they were
    assert report["expectation_met"], report
    assert report["guardrails_tripped"] == ["approval"] and "rejected" in report["reason"]
    assert after["read_replica"] == before["read_replica"]
    assert after["read_replica"]["source"] == SOURCE and after["read_replica"]["listed_by_source"]
    assert after["dns_records"] == before["dns_records"]
    assert after["standby"]["desired_capacity"] == 0
    assert [a for a in report["actions"] if a["phase"] == "apply"] == []


def test_a_replica_a_human_already_promoted_is_left_as_it_is_and_the_traffic_still_moves(drill_synth_cache: Path):
    # Given the DBA promoted the replica by hand as the region went down, before any recovery
    loaded = scenario.load(SCENARIO)
    expected = [
        a.model_copy(update={"result": "unchanged"}) if a.type == "promote_read_replica" else a
        for a in loaded.expect.actions or []
    ]
    promoted_by_hand = loaded.model_copy(update={"expect": loaded.expect.model_copy(update={"actions": expected})})
    with drill.Drill(promoted_by_hand, None, drill_synth_cache) as run:
        assert run.emulator is not None
        run.emulator.peer(STANDBY).client("rds").promote_read_replica(DBInstanceIdentifier=REPLICA)
        report = run.run()
        after = run.state()

        # Then the step finds nothing to promote (unchanged, not a failure), and the DNS still moves
        assert report["expectation_met"], report
        promotion = actions_by_step(run, STANDBY, report["impairment_id"])["promote_read_replica#apply"]
        assert promotion["result"]["result"] == "unchanged" and promotion["before"]["source"] is None
        assert "not a read replica" in promotion["result"]["message"]
        assert after["read_replica"]["source"] is None and after["read_replica"]["status"] == "available"
        roles = {r["SetIdentifier"]: r["Failover"] for r in after["dns_records"]}
        assert roles["web-api-standby"] == "PRIMARY"
        # and its rollback record would say nothing was promoted: no wait, no second PromoteReadReplica
        assert not [e for e in report["lambda_errors"] if "PromoteReadReplica" in e]
