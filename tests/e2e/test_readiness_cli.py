"""`recoveryctl readiness` on a drill deployment in the emulator: the drill group with MaxSize =
desired makes the plan that scales it out not ready, and the table says why."""

from __future__ import annotations

import json

from recoveryctl.cli import main


def test_a_group_capped_at_desired_is_reported_not_ready(synthesized, capsys):
    # the stack this test session synthesized (a fresh clone has no cdk.out)
    code = main(["readiness", "--cap-at-desired", "--json", "--template", str(synthesized.template_path)])
    results = {r["plan"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 1
    surge = {w["workload"]: w for w in results["surge-and-replace-unhealthy"]["workloads"]}
    failing = [c["evidence"] for c in surge["web-api"]["checks"] if not c["ok"]]
    assert failing == ["web-api-asg: no headroom: MaxSize 3 = desired 3"]
    # moto simulates no IAM policy: the permissions are said not checked, never judged ready
    assert surge["web-api"]["not_checked"] == ["permissions: locally, the emulator simulates no IAM policy"]
    assert all(c["name"] != "permissions" for c in surge["web-api"]["checks"])


def test_the_same_deployment_with_headroom_prints_the_plan_ready(synthesized, capsys):
    code = main(["readiness", "--template", str(synthesized.template_path)])
    table = capsys.readouterr().out
    assert code == 0, table
    row = next(
        line for line in table.splitlines() if line.startswith("surge-and-replace-unhealthy") and "web-api" in line
    )
    assert row.split()[2] == "yes"
    assert "not checked: permissions: locally, the emulator simulates no IAM policy" in table.splitlines()


def test_the_arc_clusters_endpoints_are_asked_in_the_emulator(synthesized, capsys):
    # the emulator answers the cluster's data plane: the endpoint check runs locally, for real
    code = main(
        [
            "readiness",
            "--scenario",
            "region-failover-routing-control",
            "--json",
            "--template",
            str(synthesized.template_path),
        ]
    )
    results = json.loads(capsys.readouterr().out)
    (arc,) = [r for r in results if r["plan"] == "fail-over-to-standby-region-arc"]
    web = next(w for w in arc["workloads"] if w["workload"] == "web-api")
    (endpoints,) = [c for c in web["checks"] if c["name"] == "cluster endpoints"]
    assert endpoints["ok"] and endpoints["evidence"].startswith("5 of 5 answered: us-east-1 https://")
    assert "answered (primary On, standby Off)" in endpoints["evidence"]
    assert code == 0
