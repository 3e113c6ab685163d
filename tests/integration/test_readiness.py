"""The readiness check under moto: groups, warm pools and Route 53 read for real, each plan's
result recorded and PlanNotReady emitted; a member whose role is refused makes its plan not ready
while the others are still checked."""

from __future__ import annotations

import json

import boto3
import pytest

from readiness import handler as readiness
from tests.builders import REGION, build_workload, in_account, scheduled_event, use_runtime_config
from tests.integration.test_member_sweeps import DENIED, MEMBER, ROLE, assumed_roles

SCALE_OUT = {
    "name": "scale",
    "match": {"impairment_types": ["resource_exhaustion"]},
    "steps": [{"action": "scale_out"}],
}


def plan(name: str, steps: list[dict], workloads: list[str] | None = None) -> dict:
    return {"name": name, "match": {"impairment_types": ["instance_failure"], "workloads": workloads}, "steps": steps}


def emitted(capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    """PlanNotReady by plan, from the EMF documents written to stdout."""
    found = {}
    for line in capsys.readouterr().out.splitlines():
        if '"PlanNotReady"' in line:
            doc = json.loads(line)
            value = doc["PlanNotReady"]
            found[doc["plan"]] = value[0] if isinstance(value, list) else value
    return found


def test_a_group_at_its_max_makes_scale_out_not_ready_and_is_recorded(
    store, lambda_context, tmp_path, monkeypatch, capsys
):
    # Given a workload whose group has MaxSize = desired, and one with room
    build_workload("full", min_size=1, max_size=3, desired=3)
    build_workload("roomy", min_size=1, max_size=6, desired=3)
    use_runtime_config(
        monkeypatch,
        tmp_path,
        plans=[
            plan("scale-full", [{"action": "scale_out"}], ["full"]),
            plan("scale-roomy", [{"action": "scale_out"}], ["roomy"]),
        ],
        readiness=[
            {"workload": "full", "auto_scaling_group": "full-asg"},
            {"workload": "roomy", "auto_scaling_group": "roomy-asg"},
        ],
    )

    # When the schedule runs the check
    response = readiness.handler(scheduled_event(), lambda_context)

    # Then the full group's plan is not ready, with the evidence, recorded and counted
    assert response["not_ready"] == ["scale-full"]
    recorded = store.readiness.get_many(["scale-full", "scale-roomy"])
    assert [r["ready"] for r in recorded] == [False, True]
    (check,) = recorded[0]["workloads"][0]["checks"]
    assert check["evidence"] == "full-asg: no headroom: MaxSize 3 = desired 3"
    assert emitted(capsys) == {"scale-full": 1.0, "scale-roomy": 0.0}


def test_warm_pool_and_dns_are_read_from_aws(store, lambda_context, tmp_path, monkeypatch):
    # Given a group with a warm pool of no warmed instance yet, and a zone with only the primary record
    build_workload("web", min_size=1, max_size=6, desired=2)
    boto3.client("autoscaling", region_name=REGION).put_warm_pool(AutoScalingGroupName="web-asg", MinSize=0)
    route53 = boto3.client("route53", region_name=REGION)
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="r")["HostedZone"]["Id"].split("/")[-1]
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "app.example.com",
                        "Type": "A",
                        "SetIdentifier": "primary",
                        "Failover": "PRIMARY",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "10.0.0.1"}],
                    },
                }
            ]
        },
    )
    dns = {
        "hosted_zone_id": zone,
        "record_name": "app.example.com",
        "record_type": "A",
        "primary_set_identifier": "primary",
        "secondary_set_identifier": "secondary",
    }
    use_runtime_config(
        monkeypatch,
        tmp_path,
        plans=[
            plan("warm", [{"action": "provision_backup", "params": {"kind": "warm_pool", "count": 2}}]),
            plan("dns", [{"action": "failover", "params": {"kind": "dns"}}]),
        ],
        readiness=[{"workload": "web", "auto_scaling_group": "web-asg", "dns": dns}],
    )

    response = readiness.handler(scheduled_event(), lambda_context)

    by_plan = {r["plan"]: r["workloads"][0]["checks"] for r in response["results"]}
    assert by_plan["warm"] == [
        {"name": "warm pool depth", "ok": False, "evidence": "web-asg: 0 warmed instance(s), the step needs 2"}
    ]
    assert by_plan["dns"] == [
        {"name": "dns records", "ok": False, "evidence": "app.example.com A: no record secondary"}
    ]


def test_a_member_whose_role_is_refused_is_not_ready_and_the_others_are_checked(
    store, lambda_context, tmp_path, monkeypatch, iam_simulation
):
    # Given workloads in a member account, in a member whose role is refused, and in this account
    monkeypatch.setenv("MEMBER_ROLE_NAME", ROLE)
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{MEMBER}", "{DENIED}"]')
    with in_account(MEMBER, monkeypatch):
        build_workload("member", min_size=1, max_size=6, desired=2)
    build_workload("central", min_size=1, max_size=6, desired=2)
    asked = assumed_roles()
    use_runtime_config(
        monkeypatch,
        tmp_path,
        plans=[plan("everywhere", [{"action": "scale_out"}]), plan("here", [{"action": "scale_out"}], ["central"])],
        readiness=[
            {"workload": "member", "account_id": MEMBER, "auto_scaling_group": "member-asg"},
            {"workload": "denied", "account_id": DENIED, "auto_scaling_group": "denied-asg"},
            {"workload": "central", "auto_scaling_group": "central-asg"},
        ],
    )

    response = readiness.handler(scheduled_event(), lambda_context)

    # Then the plan covering the denied member is not ready, saying why; the member's group was
    # read through its role; the plan of this account alone is ready
    assert response["not_ready"] == ["everywhere"]
    (everywhere,) = [r for r in response["results"] if r["plan"] == "everywhere"]
    checks = {w["workload"]: w for w in everywhere["workloads"]}
    assert checks["member"]["ready"]
    assert checks["central"]["ready"]
    (refused,) = checks["denied"]["checks"]
    assert refused["name"] == "member role" and not refused["ok"] and "AccessDenied" in refused["evidence"]
    assert f"arn:aws:iam::{MEMBER}:role/{ROLE}" in asked
