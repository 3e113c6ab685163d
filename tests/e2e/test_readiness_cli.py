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
