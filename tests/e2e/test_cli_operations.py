"""recoveryctl against the local emulator's recorded state: after a few drills, status, show,
report (with a PNG), the switches and plans, as an operator runs them."""

from __future__ import annotations

import json
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

import pytest

from recoveryctl import cli

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

USER_SCENARIO = {
    "name": "one-down-of-four",
    "description": "one instance of a bigger group stops (a user's own scenario)",
    "group": {"min_size": 2, "max_size": 8, "desired": 4},
    "instance_faults": [{"kind": "stop", "count": 1}],
    "signals": [{"alarm": "{workload}-status-check"}],
    "expect": {"outcome": "recovered"},
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _drill(state: Path, template: Path, scenario: str) -> dict:
    # capsys is function-scoped: the module fixture reads the drill's JSON through a file instead.
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(
            ["drill", "--scenario", scenario, "--json", "--template", str(template), "--state-dir", str(state)]
        )
    report = json.loads(out.getvalue())
    assert code == 0, report
    return report


@pytest.fixture(scope="module")
def drilled(synthesized, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three drills recorded once for the module: a recovery, a rollback with escalation, and a
    scenario file the user wrote."""
    state = tmp_path_factory.mktemp("state")
    scenario_file = tmp_path_factory.mktemp("scenarios") / "one-down-of-four.json"
    scenario_file.write_text(json.dumps(USER_SCENARIO))
    reports = {
        "recovered": _drill(state, synthesized.template_path, "instance-failure"),
        "escalated": _drill(state, synthesized.template_path, "action-failure-rollback"),
        "user": _drill(state, synthesized.template_path, str(scenario_file)),
    }
    return {"state": state, "template": synthesized.template_path, "reports": reports}


def _local(drilled: dict, *argv: str) -> list[str]:
    return [*argv, "--state-dir", str(drilled["state"]), "--template", str(drilled["template"])]


def test_every_drill_is_recorded_as_a_drill(drilled):
    runs = sorted((drilled["state"] / "runs").glob("*.json"))
    assert [json.loads(p.read_text())["scenario"] for p in runs] == [
        "instance-failure",
        "action-failure-rollback",
        "one-down-of-four",
    ]
    first = json.loads(runs[0].read_text())
    record = next(i for i in first["items"] if i["sk"] == "RECORD")
    assert record["drill"] is True and record["drill_scenario"] == "instance-failure"
    assert first["executions"][0]["history"][0]["type"] == "ExecutionStarted"


def test_status_lists_recent_recoveries_with_their_execution(drilled, capsys):
    # When
    code, out, _ = _run(capsys, *_local(drilled, "status", "--json"))

    # Then
    data = json.loads(out)
    assert code == 0
    rows = {r["impairment_id"]: r for r in data["recent"]}
    reports = drilled["reports"]
    assert set(rows) == {r["impairment_id"] for r in reports.values()}
    recovered = rows[reports["recovered"]["impairment_id"]]
    assert recovered["outcome"] == "recovered" and recovered["execution"]["status"] == "SUCCEEDED"
    assert recovered["execution"]["name"] == recovered["impairment_id"] and recovered["drill"] is True
    assert rows[reports["escalated"]["impairment_id"]]["execution"]["status"] == "FAILED"
    assert data["open"] == [] and data["switches"]["paused"] is False

    # And the table a person reads names each with its outcome
    code, out, _ = _run(capsys, *_local(drilled, "status"))
    assert code == 0
    assert "automatic recovery active" in out
    for report in reports.values():
        line = next(line for line in out.splitlines() if report["impairment_id"] in line)
        assert report["outcome"] in line


def test_show_gives_the_whole_timeline_and_the_state_history(drilled, capsys):
    report = drilled["reports"]["escalated"]

    code, out, _ = _run(capsys, *_local(drilled, "show", report["impairment_id"]))

    assert code == 0
    assert f"Impairment {report['impairment_id']} (drill action-failure-rollback)" in out
    assert "outcome escalated" in out and "AccessDenied" in out
    # each action with its state before and after, the apply and its rollback
    assert "apply      step 1 replace_instance" in out and "rollback   step 0" in out
    assert "before  {" in out and "after   {" in out
    # the execution's states in order, and the escalation sent
    history = out.split("Step Functions execution", 1)[1]
    lines = re.findall(r"^\s+\+\s*[\d.]+ s\s+(\S+)", history, flags=re.MULTILINE)
    states = [s for s in lines if s in ("Admit", "CheckGuardrails", "RunActions", "PrepareRollback", "Escalate")]
    assert states == ["Admit", "CheckGuardrails", "RunActions", "PrepareRollback", "Escalate"]
    assert "SelectPlan" not in history  # Admit selects the plan
    assert "Escalation sent: Automatic recovery of web-api needs a human" in out

    code, out, _ = _run(capsys, *_local(drilled, "show", report["impairment_id"], "--json"))
    data = json.loads(out)
    assert data["execution"]["status"] == "FAILED"
    assert data["history"][-1]["type"] == "ExecutionFailed"
    assert [a["phase"] for a in data["actions"]].count("rollback") == 2


def test_show_of_an_unknown_impairment_says_where_to_look(drilled, capsys):
    code, _, err = _run(capsys, *_local(drilled, "show", "web-api-0000000000000000"))
    assert code == 2
    assert "no impairment web-api-0000000000000000" in err and "recoveryctl status" in err


def test_report_has_percentiles_and_success_rates(drilled, capsys):
    code, out, _ = _run(capsys, *_local(drilled, "report", "--since", "30d", "--json"))

    data = json.loads(out)
    assert code == 0
    drills = data["overall"]["drill"]
    assert drills["impairments"] == 3 and drills["recovered"] == 2 and drills["attempted"] == 3
    assert drills["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    mttr = drills["mttr_seconds"]
    assert mttr["count"] == 2 and 0 < mttr["p50"] <= mttr["p90"] <= mttr["p99"]
    assert data["overall"]["real"]["impairments"] == 0
    replace = data["by_action"]["replace_instance"]["drill"]
    assert replace["applied"] == 3 and replace["succeeded"] == 2 and replace["failed"] == 1
    assert data["by_impairment_type"]["instance_failure"]["drill"]["recovered"] == 2

    code, out, _ = _run(capsys, *_local(drilled, "report"))
    assert code == 0
    assert "MTTR p50 / p90 / p99" in out and "replace_instance        2 of 3 (67%)" in out


def test_report_of_one_workload_counts_only_its_impairments(drilled, capsys):
    code, out, _ = _run(capsys, *_local(drilled, "report", "--workload", "web-api", "--json"))
    assert code == 0 and json.loads(out)["overall"]["drill"]["impairments"] == 3
    code, out, _ = _run(capsys, *_local(drilled, "report", "--workload", "no-such", "--json"))
    assert code == 0 and json.loads(out)["overall"]["drill"]["impairments"] == 0


def test_report_draws_a_png(drilled, tmp_path, capsys):
    chart = tmp_path / "charts" / "recovery.png"

    code, _, err = _run(capsys, *_local(drilled, "report", "--png", str(chart)))

    assert code == 0 and f"chart written to {chart}" in err
    data = chart.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000


def test_report_of_an_empty_period_says_so(drilled, capsys):
    code, out, _ = _run(capsys, *_local(drilled, "report", "--since", "2999-01-01"))
    assert code == 0 and "No impairment was detected" in out


def test_a_bad_since_is_explained(drilled, capsys):
    code, _, err = _run(capsys, *_local(drilled, "status", "--since", "last tuesday"))
    assert code == 2 and "30d, 12h" in err


def test_no_local_state_says_to_run_a_drill(tmp_path, capsys):
    code, _, err = _run(capsys, "status", "--state-dir", str(tmp_path / "none"))
    assert code == 2
    assert "run `recoveryctl drill --scenario instance-failure` first" in err


def test_pause_then_the_next_drill_acts_on_nothing_until_resumed(drilled, tmp_path, capsys):
    # Given a copy of the recorded state, paused
    state = tmp_path / "state"
    shutil.copytree(drilled["state"], state)
    argv = ["--state-dir", str(state), "--template", str(drilled["template"])]
    code, out, _ = _run(capsys, "pause", "--reason", "change freeze", *argv)
    assert code == 0 and "paused" in out
    code, out, _ = _run(capsys, "status", *argv)
    assert "automatic recovery PAUSED" in out and "change freeze" in out

    # When the next drill runs, it starts paused (the switches are seeded into its table)
    code, out, _ = _run(capsys, "drill", "--scenario", "instance-failure", "--json", *argv)

    # Then the impairment is recorded, skipped and escalated: nothing was acted on
    report = json.loads(out)
    assert report["outcome"] == "skipped" and report["actions"] == []
    assert "RecoveryPaused" in report["reason"] or "paused" in report["reason"]

    # And once resumed, the switches say so
    code, out, _ = _run(capsys, "resume", *argv)
    assert code == 0 and "resumed" in out
    assert json.loads((state / "switches.json").read_text())["paused"] is False


def test_plans_list_enable_disable(drilled, tmp_path, capsys):
    argv = ["--state-dir", str(tmp_path / "state"), "--template", str(drilled["template"])]

    code, out, _ = _run(capsys, "plans", "list", "--json", *argv)
    plans = json.loads(out)
    assert code == 0
    names = [p["name"] for p in plans]
    assert "replace-failed-instance" in names and all(p["enabled"] for p in plans)

    code, out, _ = _run(capsys, "plans", "disable", "replace-failed-instance", *argv)
    assert code == 0
    code, out, _ = _run(capsys, "plans", "list", *argv)
    assert "DISABLED  replace-failed-instance" in out

    code, out, _ = _run(capsys, "plans", "enable", "replace-failed-instance", *argv)
    assert code == 0
    assert json.loads((tmp_path / "state" / "switches.json").read_text())["disabled_plans"] == []

    code, _, err = _run(capsys, "plans", "disable", "no-such-plan", *argv)
    assert code == 2 and "no plan named 'no-such-plan'" in err and "replace-failed-instance" in err


def test_plans_validate(tmp_path, capsys):
    root = Path(__file__).resolve().parents[2]
    code, out, _ = _run(capsys, "plans", "validate", str(root / "cdk.json"))
    assert code == 0 and "valid plan(s)" in out

    good = tmp_path / "plans.json"
    good.write_text(
        json.dumps(
            [
                {
                    "name": "reboot-it",
                    "match": {"impairment_types": ["instance_failure"]},
                    "steps": [{"action": "scale_out"}],
                }
            ]
        )
    )
    code, out, _ = _run(capsys, "plans", "validate", str(good))
    assert code == 0 and "1 valid plan(s): reboot-it" in out

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "plans": [
                    {
                        "name": "x",
                        "match": {"impairment_types": ["instance_failure"]},
                        "steps": [{"action": "teleport"}],
                    }
                ]
            }
        )
    )
    code, _, err = _run(capsys, "plans", "validate", str(bad))
    assert code == 2 and "plans.0.steps.0.action (plan 'x'): no action is named 'teleport'" in err

    code, _, err = _run(capsys, "plans", "validate", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err


@pytest.mark.parametrize("command", ["approve", "reject"])
def test_approvals_are_scripted_in_local_drills(command, capsys):
    code, _, err = _run(capsys, command, "web-api-0000000000000000")
    assert code == 2 and "scripted in the scenario" in err and "--deployed" in err


def test_a_regional_drill_is_recorded_from_the_region_that_recovered(tmp_path, capsys):
    # Given a drill whose recovery ran in the standby region (its records are in that replica)
    state = tmp_path / "state"
    code, out, _ = _run(
        capsys, "drill", "--scenario", "region-failover-primary-down", "--json", "--state-dir", str(state)
    )
    report = json.loads(out)
    assert code == 0 and report["region"] == "us-west-2"

    # When the operator looks at the local state
    code, status, _ = _run(capsys, "status", "--state-dir", str(state))
    assert code == 0
    code, shown, _ = _run(capsys, "show", report["impairment_id"], "--state-dir", str(state))

    # Then the recovery is listed and shown, with the region that handled it and its execution there
    assert code == 0
    assert report["impairment_id"] in status and "recovered" in status
    assert re.search(r"region\s+us-west-2", shown)
    assert ":us-west-2:" in shown and "execution:ImpairmentRecovery-us-west-2" in shown
    assert "provision_standby_group on web-api-standby-asg: changed" in shown


def _timestamps(value: object) -> list[datetime]:
    """Every whole-string ISO 8601 timestamp in a recorded run."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in _timestamps(v)]
    if isinstance(value, str) and re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})", value
    ):
        return [datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))]
    return []


def test_a_drill_on_the_virtual_clock_is_recorded_in_the_past_with_its_durations(synthesized, tmp_path, capsys):
    # Given a drill whose virtual clock ran an hour ahead of the wall clock (the plan gives its
    # emergency capacity back after an hour healthy)
    state = tmp_path / "state"
    report = _drill(state, synthesized.template_path, "service-degradation")
    (path,) = (state / "runs").glob("*.json")
    run = json.loads(path.read_text())

    # Then nothing it recorded is dated after it was recorded
    recorded = datetime.fromisoformat(run["recorded_at"])
    times = _timestamps(run["items"]) + _timestamps(run["executions"])
    assert len(times) > 50
    assert max(times) <= recorded
    assert run["clock_shift_seconds"] <= -3600
    # And the distances are kept: the record's MTTR, the execution's hour of waiting
    record = next(i for i in run["items"] if i["sk"] == "RECORD")
    detected, resolved = (
        datetime.fromisoformat(record[k].replace("Z", "+00:00")) for k in ("detected_at", "resolved_at")
    )
    assert (resolved - detected).total_seconds() == pytest.approx(report["mttr_seconds"], abs=0.01)
    execution = run["executions"][0]
    started, stopped = (datetime.fromisoformat(execution[k]) for k in ("startDate", "stopDate"))
    assert (stopped - started).total_seconds() > 3600

    # And `status --since` reads those times: detected an hour before the drill ended, it is not
    # among the last 5 minutes' impairments, it is among the last 2 hours'
    argv = ["--state-dir", str(state), "--template", str(synthesized.template_path)]
    code, out, _ = _run(capsys, "status", "--json", "--since", "5m", *argv)
    assert code == 0 and json.loads(out)["recent"] == []
    code, out, _ = _run(capsys, "status", "--json", "--since", "2h", *argv)
    assert [r["impairment_id"] for r in json.loads(out)["recent"]] == [report["impairment_id"]]

    # And `show` gives each state's duration on that clock
    code, out, _ = _run(capsys, "show", report["impairment_id"], *argv)
    assert re.search(r"\+\s*\d+\.\d s\s+WaitBeforeReturningCapacity\s+\(3600\.\d s\)", out), out


def test_progress_is_shown_only_on_a_terminal_and_never_with_json(synthesized, monkeypatch, tmp_path, capsys):
    # Given stderr is a terminal, and a stand-in that records whether progress was attached
    attached: list[object] = []

    class Recorded(cli.DrillProgress):
        def __init__(self, running: object, stream: object, interval: float = 0.5) -> None:
            super().__init__(running, stream, interval)
            attached.append(stream)

    monkeypatch.setattr(cli, "DrillProgress", Recorded)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    argv = ["drill", "--scenario", "instance-failure", "--template", str(synthesized.template_path)]
    argv += ["--state-dir", str(tmp_path)]

    # When a drill runs with --json, no progress; without it, progress on stderr
    assert cli.main([*argv, "--json"]) == 0
    assert attached == []
    assert cli.main(argv) == 0
    assert attached == [sys.stderr]

    # And on a pipe (not a terminal) none either
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.main(argv) == 0
    assert attached == [sys.stderr]
    capsys.readouterr()
