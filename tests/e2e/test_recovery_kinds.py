"""Each kind of impairment through the emulator, from its AWS signal to the AWS state a user
would expect afterwards."""

from __future__ import annotations

import pytest

from recoveryctl import drill, scenario

pytestmark = pytest.mark.e2e


def _run(synthesized, name: str) -> tuple[dict, dict]:
    with drill.Drill(scenario.load(name), synthesized.template_path) as run:
        report = run.run()
        return report, run.state()


def test_container_crash_redeploys_the_service(synthesized):
    report, state = _run(synthesized, "container-crash")
    before = report["workload"]["before"]["ecs_service"]

    assert report["outcome"] == "recovered"
    assert report["impairment_type"] in ("service_degradation", "application_error")
    assert "RestartEcsService" in report["execution"]["states"]
    assert state["ecs_service"]["running"] == state["ecs_service"]["desired"]
    assert state["ecs_service"]["deployments"] != before["deployments"], "a new deployment was rolled out"


def test_database_failure_fails_the_instance_over_to_its_standby_zone(synthesized):
    report, state = _run(synthesized, "database-failure")

    assert report["outcome"] == "recovered"
    assert report["impairment_type"] == "database_issue"
    assert "FailoverDatabase" in report["execution"]["states"]
    assert report["workload"]["before"]["database"]["availability_zone"] != state["database"]["availability_zone"]
    assert state["database"]["status"] == "available"


def test_database_failover_promotes_the_cluster_reader(synthesized):
    report, state = _run(synthesized, "database-failover")

    assert report["outcome"] == "recovered"
    assert "FailoverDatabase" in report["execution"]["states"]
    assert report["workload"]["before"]["database"]["writer"] != state["database"]["writer"]


def test_region_failover_makes_the_standby_record_primary(synthesized):
    report, state = _run(synthesized, "region-failover")

    assert report["outcome"] == "recovered"
    assert report["impairment_type"] == "network_issue"
    roles = {r["SetIdentifier"]: r["Failover"] for r in state["dns_records"]}
    assert roles == {"web-api-primary": "SECONDARY", "web-api-standby": "PRIMARY"}


def test_az_impairment_shifts_traffic_away_and_adds_capacity_elsewhere(synthesized):
    report, state = _run(synthesized, "az-impairment")

    assert report["outcome"] == "recovered"
    assert report["impairment_type"] == "az_impairment"
    assert [(a["type"], a["phase"]) for a in report["actions"]] == [
        ("redirect_zonal_shift", "apply"),
        ("scale_out", "apply"),
        ("scale_out", "return"),  # the capacity went back after 2 h healthy, when the shift expires
    ]
    assert "RedirectZonalShift" in report["execution"]["states"] and "ScaleOut" in report["execution"]["states"]
    shift = next(a for a in report["actions"] if a["type"] == "redirect_zonal_shift")
    assert "zonal shift" in shift["message"] and "for 2h" in shift["message"], "a zonal shift, with an expiry"
    # The drill's clock ran past the capacity return (2 h): by then the shift has expired on its own
    assert state["zonal_shifts"] == []
    assert state["desired_capacity"] == report["workload"]["before"]["desired_capacity"]


def test_target_degradation_deregisters_then_re_registers_on_rollback(synthesized):
    with drill.Drill(scenario.load("target-degradation"), synthesized.template_path) as run:
        report = run.run()
        health = run.emulator.client("elbv2").describe_target_health(TargetGroupArn=run.workload["target_group_arn"])[
            "TargetHealthDescriptions"
        ]

    impaired = report["workload"]["impaired_instances"][0]
    assert report["outcome"] == "escalated"
    phases = [(a["type"], a["phase"], a["result"]) for a in report["actions"]]
    assert ("redirect_deregister_targets", "apply", "changed") in phases
    assert ("redirect_deregister_targets", "rollback", "changed") in phases
    states = report["execution"]["states"]
    assert states.index("RollbackReplaceInstance") < states.index("RollbackRedirectDeregisterTargets")
    assert impaired in {h["Target"]["Id"] for h in health}, "registered again, as it was"


def test_an_instance_stopping_unasked_is_replaced(synthesized):
    report, state = _run(synthesized, "instance-stopped")

    assert report["outcome"] == "recovered"
    assert report["impairment_type"] == "instance_failure"
    assert report["workload"]["impaired_instances"][0] not in state["in_service"]
    assert len(state["in_service"]) == state["desired_capacity"] == 3


def test_the_backstop_sweep_finds_an_unhealthy_target_no_alarm_reported(synthesized):
    report, state = _run(synthesized, "sweep-unhealthy-target")

    # one tick of the schedules (the sweep's, and the readiness check's, which finds nothing to recover)
    assert [s["event"] for s in report["signals"]] == ["schedule (2 rule(s) fired)"]
    assert report["outcome"] == "recovered"
    assert report["impairment_type"] == "service_degradation"
    assert report["workload"]["impaired_instances"][0] not in state["in_service"]
