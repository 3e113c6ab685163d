"""A target group shared by two Auto Scaling groups (a blue/green pair), drilled end to end: the
guardrails apply per group, for every group the impaired instances belong to (safety issue item
4: with the group "unknown", fail open and the blast radius were skipped, and 3 instances of a
4-instance group were terminated at once).

What a user relies on, per group: of its impaired instances, how many were taken out, never more
than its own blast radius at once (a third of the group, at least one: 1 of 4, 1 of 3); which of
its instances are in service afterwards; and its desired capacity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from recoveryctl import drill, scenario
from recoveryctl.scenario import Scenario

pytestmark = pytest.mark.e2e

GROUP, SECOND = "web-api-asg", "web-api-asg-green"
# The blast radius of each group of the built-in scenarios (4 and 3 instances): a third, at least one.
LIMIT = {GROUP: 1, SECOND: 1}


def _membership(report: dict[str, Any]) -> dict[str, set[str]]:
    """Each group's instances when the drill started."""
    before = report["workload"]["before"]
    return {GROUP: set(before["in_service"]), SECOND: set(before["second_group"]["in_service"])}


def _in_service(report: dict[str, Any]) -> dict[str, set[str]]:
    after = report["workload"]["after"]
    return {GROUP: set(after["in_service"]), SECOND: set(after["second_group"]["in_service"])}


def _impaired(report: dict[str, Any]) -> dict[str, set[str]]:
    impaired = set(report["workload"]["impaired_instances"])
    return {group: impaired & members for group, members in _membership(report).items()}


def _replaced_by_execution(report: dict[str, Any]) -> dict[str, dict[str, set[str]]]:
    """Per execution, per group: the instances its replace_instance steps took out."""
    membership = _membership(report)
    taken: dict[str, dict[str, set[str]]] = {}
    for action in report["actions"]:
        if action["type"] == "replace_instance" and action["phase"] == "apply" and action["result"] == "changed":
            per_group = taken.setdefault(action["execution"], {GROUP: set(), SECOND: set()})
            for group, members in membership.items():
                per_group[group] |= set(action["targets"]) & members
    return taken


def _terminated(run: drill.Drill, instances: set[str]) -> set[str]:
    assert run.home is not None
    if not instances:
        return set()
    found = run.home.client("ec2").describe_instances(InstanceIds=sorted(instances))
    return {
        i["InstanceId"]
        for r in found["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] in ("shutting-down", "terminated")
    }


def _target_health(run: drill.Drill) -> dict[str, str]:
    assert run.home is not None
    found = run.home.client("elbv2").describe_target_health(TargetGroupArn=run.workload["target_group_arn"])
    return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in found["TargetHealthDescriptions"]}


def test_each_group_of_a_shared_target_group_loses_at_most_its_own_blast_radius(synthesized):
    # Given the built-in drill: 2 of the group's 4 instances and 1 of the second group's 3 fail
    # their health check, and the target group's unhealthy-hosts alarm names all three
    spec = scenario.load("shared-target-group")
    with drill.Drill(spec, synthesized.template_path) as run:
        report = run.run()
        impaired = _impaired(report)
        everything = set().union(*impaired.values())
        terminated = _terminated(run, everything)
        health = _target_health(run)
        record = run.home.store().get_impairment(report["impairment_id"])
    seed = report["interleaving"]["seed"]

    assert report["expectation_met"], (seed, report["expectations"]["failed"], report["invariants"]["broken"])
    assert {g: len(i) for g, i in impaired.items()} == {GROUP: 2, SECOND: 1}
    # Then in each group, of its impaired instances, one was taken out (its own limit), and
    # terminated: one recovery, one replacement per group
    (per_group,) = _replaced_by_execution(report).values()
    for group in (GROUP, SECOND):
        assert len(per_group[group]) == LIMIT[group], (seed, group, per_group)
        assert per_group[group] <= impaired[group]
        assert terminated & impaired[group] == per_group[group], (seed, group)
    # And the group's other impaired instance is the one deferred to a human, still in service
    (left,) = impaired[GROUP] - per_group[GROUP]
    assert record["deferred_resources"] == [f"ec2:instance/{left}"]
    (trip,) = record["guardrail_trips"]
    assert trip["guardrail"] == "blast_radius"
    assert {k: trip["evidence"][k] for k in ("group", "group_size", "limit", "deferred")} == {
        "group": GROUP,
        "group_size": 4,
        "limit": 1,
        "deferred": [left],
    }
    (page,) = report["pages"]
    assert "defers 1" in page["summary"] and f"of the 4 instances of group {GROUP}" in page["summary"]
    # And afterwards: the group serves 5 (its 3 healthy originals, the deferred one, and two new:
    # the replacement and the emergency capacity the plan added and keeps while the workload is not
    # healthy); the second group serves its 3 again, its replacement among them
    in_service = _in_service(report)
    assert in_service[GROUP] & _membership(report)[GROUP] == _membership(report)[GROUP] - per_group[GROUP]
    assert len(in_service[GROUP]) == 5 and report["workload"]["after"]["desired_capacity"] == 5
    assert in_service[SECOND] & _membership(report)[SECOND] == _membership(report)[SECOND] - impaired[SECOND]
    assert len(in_service[SECOND]) == 3 and report["workload"]["after"]["second_group"]["desired_capacity"] == 3
    # And every instance in service is healthy behind the load balancer, but the deferred one
    serving = in_service[GROUP] | in_service[SECOND]
    assert {i: health.get(i) for i in serving if health.get(i) != "healthy"} == {left: "unhealthy"}


def test_one_group_failing_open_stops_the_recovery_of_both_groups(synthesized):
    # Given 3 of the group's 4 instances (more than half) and 1 of the second group's 3 unhealthy
    spec = scenario.load("shared-target-group-fail-open")
    with drill.Drill(spec, synthesized.template_path) as run:
        report = run.run()
        impaired = _impaired(report)
        terminated = _terminated(run, set().union(*impaired.values()))
        record = run.home.store().get_impairment(report["impairment_id"])

    assert report["expectation_met"], (report["expectations"]["failed"], report["invariants"]["broken"])
    assert {g: len(i) for g, i in impaired.items()} == {GROUP: 3, SECOND: 1}
    # Then the group fails open, which stops the whole recovery: no instance of either group is
    # taken out, each group keeps its capacity, and the page names the group and its share
    (trip,) = record["guardrail_trips"]
    assert trip["guardrail"] == "fail_open"
    assert trip["evidence"]["group"] == GROUP and trip["evidence"]["fleet_size"] == 4
    assert sorted(trip["evidence"]["impaired"]) == sorted(impaired[GROUP])
    assert report["actions"] == [] and terminated == set()
    assert _in_service(report) == _membership(report)
    after = report["workload"]["after"]
    assert (after["desired_capacity"], after["second_group"]["desired_capacity"]) == (4, 3)
    assert f"of group {GROUP}" in report["pages"][0]["summary"]


def test_instances_whose_groups_cannot_be_read_are_never_acted_on_without_a_human(synthesized):
    # Given the built-in drill, but Auto Scaling cannot say which group an instance is in once the
    # alarm detector has resolved the alarm's instances (its one call): the guardrails cannot tell
    # the groups apart, so they cannot be applied per group
    spec = scenario.load("shared-target-group").model_dump()
    spec["name"] = "shared-target-group-groups-unknown"
    spec["api_faults"] = [
        {"service": "auto-scaling", "operation": "DescribeAutoScalingInstances", "error_code": "Throttling", "after": 1}
    ]
    spec["expect"] = {}
    with drill.Drill(Scenario.model_validate(spec), synthesized.template_path) as run:
        report = run.run()
        impaired = _impaired(report)
        terminated = _terminated(run, set().union(*impaired.values()))

    # Then the guardrail check fails, is retried, and the recovery escalates to a human before any
    # action: nothing taken out in either group, nothing held afterwards
    assert report["executions_started"] == 1 and report["outcome"] == "escalated"
    assert "DescribeAutoScalingInstances" in report["reason"]
    assert report["lambda_errors"] and all("CheckGuardrails" in e.split(":")[0] for e in report["lambda_errors"])
    assert report["actions"] == [] and terminated == set()
    assert _in_service(report) == _membership(report)
    assert len(report["pages"]) == 1
    assert report["invariants"]["broken"] == []


def test_a_sweep_finding_both_groups_unhealthy_recovers_each_group_on_its_own(synthesized):
    # Given the built-in drill's faults, found by the backstop sweep instead of the alarm
    spec = scenario.load("shared-target-group").model_dump()
    spec["name"] = "shared-target-group-swept"
    spec["signals"] = [{"schedule": "sweep"}]
    spec["expect"] = {}
    with drill.Drill(Scenario.model_validate(spec), synthesized.template_path, seed=1) as run:
        report = run.run()
    impaired = _impaired(report)

    # Then the sweep reports each group's instances as an impairment of its own, each guarded by its
    # own group's blast radius: one instance of each group taken out, the first group's other deferred
    assert report["executions_started"] == 2
    taken = sorted(
        ({g: len(i) for g, i in per_group.items()} for per_group in _replaced_by_execution(report).values()),
        key=lambda counts: counts[GROUP],
    )
    assert taken == [{GROUP: 0, SECOND: 1}, {GROUP: 1, SECOND: 0}]
    in_service = _in_service(report)
    assert len(impaired[GROUP] & in_service[GROUP]) == 1 and not impaired[SECOND] & in_service[SECOND]
    # And both recoveries verify: the second group's, on its own targets (the first group's deferred
    # instance is not its to fix), so the only page is the deferral's
    assert report["outcomes"] == {"recovered": 2}, [e["reason"] for e in report["executions"]]
    assert [p["summary"].split(":")[0] for p in report["pages"]] == [
        "Automatic recovery of web-api acts on 1 instance(s) now and defers 1"
    ]
    assert report["invariants"]["broken"] == []


def _zones(run: drill.Drill, instances: set[str]) -> dict[str, str]:
    assert run.home is not None
    found = run.home.client("ec2").describe_instances(InstanceIds=sorted(instances))
    return {i["InstanceId"]: i["Placement"]["AvailabilityZone"] for r in found["Reservations"] for i in r["Instances"]}


def test_faults_pick_the_second_groups_instances_by_index_and_a_zone_outage_stops_both_groups(synthesized):
    # Given faults on the second group by index, and a zone outage in the zone of the group's first
    # instance (the alarm only clears: nothing is recovered, the drill shows what was impaired)
    spec = Scenario.model_validate(
        {
            "name": "second-group-faults",
            "group": {"min_size": 2, "max_size": 6, "desired": 4},
            "second_group": {"min_size": 1, "max_size": 4, "desired": 3},
            "instance_faults": [
                {"kind": "fail_health_check", "index": 2, "group": "second"},
                {"kind": "zone_outage"},
            ],
            "signals": [{"alarm": "{workload}-unhealthy-hosts", "state": "OK"}],
        }
    )
    with drill.Drill(spec, synthesized.template_path) as run:
        report = run.run()
        members = _membership(report)
        zones = _zones(run, members[GROUP] | members[SECOND])
        health = _target_health(run)

    # Then the second group's instance at index 2 (of its instances sorted by id) fails its health
    # check, and every instance of both groups in the zone stops
    picked = sorted(members[SECOND])[2]
    zone = zones[sorted(members[GROUP])[0]]
    in_zone = {i for i, z in zones.items() if z == zone}
    assert in_zone & members[GROUP] and in_zone & members[SECOND], zones  # each group spreads over both zones
    assert report["workload"]["impaired_instances"][0] == picked
    assert set(report["workload"]["impaired_instances"]) == {picked} | in_zone
    assert {i for i, state in health.items() if state != "healthy"} == {picked} | in_zone
    assert report["executions_started"] == 0


def test_a_fault_by_index_beyond_the_second_group_says_which_group_was_too_small(synthesized):
    spec = Scenario.model_validate(
        {
            "name": "second-group-too-small",
            "second_group": {"min_size": 1, "max_size": 4, "desired": 2},
            "instance_faults": [{"kind": "stop", "index": 2, "group": "second"}],
            "signals": [{"alarm": "{workload}-unhealthy-hosts", "state": "OK"}],
        }
    )
    with drill.Drill(spec, synthesized.template_path) as run, pytest.raises(drill.DrillError) as raised:
        run.run()

    assert "instance fault index 2 (count 1) in round 1: the second group started with 2 instance(s)" in str(
        raised.value
    )


@pytest.fixture(scope="module")
def after_the_sweep(synthesized) -> dict[str, Any]:
    """The built-in drill, then the backstop sweep 90 s later (after the first recovery verified,
    at +30 s): the report."""
    spec = scenario.load("shared-target-group").model_dump()
    spec["name"] = "shared-target-group-then-sweep"
    spec["signals"].append({"schedule": "sweep", "at_seconds": 90})
    spec["expect"] = {}
    with drill.Drill(Scenario.model_validate(spec), synthesized.template_path, seed=1) as run:
        return run.run()


def test_the_deferred_instance_is_recovered_by_the_next_sweep_never_two_of_a_group_at_once(after_the_sweep):
    report = after_the_sweep
    impaired = _impaired(report)

    # Then two recoveries, both verified: the second one, started by the sweep, took out the
    # deferred instance of the group, once the first had verified and given its share back
    assert report["outcomes"] == {"recovered": 2}
    first, second = report["executions"]
    verified = next(s["at"] for s in first["states"] if s.get("state") == "Verify")
    assert datetime.fromisoformat(verified) <= datetime.fromisoformat(second["started_at"])
    taken = _replaced_by_execution(report)
    assert {g: len(i) for g, i in taken[first["name"]].items()} == {GROUP: 1, SECOND: 1}
    assert {g: len(i) for g, i in taken[second["name"]].items()} == {GROUP: 1, SECOND: 0}
    for per_group in taken.values():
        for group, instances in per_group.items():
            assert len(instances) <= LIMIT[group]
    # And no impaired instance is left in service in either group; each serves its own count
    in_service = _in_service(report)
    assert all(not (impaired[g] & in_service[g]) for g in (GROUP, SECOND))
    assert len(in_service[SECOND]) == 3 and report["workload"]["after"]["second_group"]["desired_capacity"] == 3
    assert report["invariants"]["broken"] == []


def test_two_recoveries_that_each_added_emergency_capacity_give_all_of_it_back(after_the_sweep):
    report = after_the_sweep
    returns = [a for a in report["actions"] if a["type"] == "scale_out" and a["phase"] == "return"]
    assert len(returns) == 2
    # Then once both verified and the workload stayed healthy, the group is back at its 4 and
    # serves 4 (the second group was never scaled)
    after = report["workload"]["after"]
    assert (after["desired_capacity"], len(after["in_service"])) == (4, 4), [a["message"] for a in returns]
    # And each said what it gave back of what the two recoveries had added (the capacity ledger)
    assert any("gave back 1 of the 2 added by recoveries" in a["message"] for a in returns), returns
