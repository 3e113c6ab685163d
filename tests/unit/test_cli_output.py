"""recoveryctl's output as a person (or a pipe) receives it: `show` of a deployed drill, a reader
that closes the pipe early, the live progress of a drill on a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recoveryctl import cli, views

ROOT = Path(__file__).resolve().parents[2]


def _show(record: dict[str, Any]) -> str:
    data = {
        "target": "stack ImpairmentRecovery in us-east-1",
        "impairment": {
            "impairment_id": "web-api-3f9a2b1c4d5e6f70",
            "workload": "web-api",
            "status": "recovered",
            "outcome": "recovered",
            **record,
        },
        "actions": [
            {
                "phase": "rollback",
                "step_index": 0,
                "action": "scale_out",
                "status": "done",
                "result": {"result": "changed"},
            }
        ],
        "execution": None,
        "history": [],
        "states": [],
        "escalations": [],
    }
    return views.format_show(data)


def test_show_of_a_deployed_drill_says_drill_without_a_scenario():
    # A practice drill's record (deployed) is marked drill, with no scenario: only local drills have one
    first = _show({"drill": True}).splitlines()[0]
    assert first == "Impairment web-api-3f9a2b1c4d5e6f70 (drill)"
    assert "(drill None)" not in _show({"drill": True})
    assert (
        _show({"drill": True, "drill_scenario": "instance-failure"})
        .splitlines()[0]
        .endswith("(drill instance-failure)")
    )
    assert _show({"drill": False}).splitlines()[0] == "Impairment web-api-3f9a2b1c4d5e6f70"


def test_show_calls_capacity_given_back_after_a_recovery_a_return():
    out = _show({})
    assert "return     step 0 scale_out: changed" in out
    assert "rollback" not in out


def _pipe_closed_by_the_reader(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI with its stdout a pipe whose reader is already gone (as `| head` after its
    lines): every write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "recoveryctl.cli", *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)


def _local_state(directory: Path, records: int) -> Path:
    """A recorded drill with many impairments, enough for a long `status`."""
    now = datetime.now(UTC)
    items = [
        {
            "pk": f"IMPAIRMENT#web-api-{n:016x}",
            "sk": "RECORD",
            "impairment_id": f"web-api-{n:016x}",
            "workload": "web-api",
            "impairment_type": "instance_failure",
            "severity": "high",
            "detected_at": (now - timedelta(minutes=n)).isoformat(),
            "status": "recovered",
            "outcome": "recovered",
            "drill": True,
        }
        for n in range(records)
    ]
    runs = directory / "runs"
    runs.mkdir(parents=True)
    (runs / "20261120T000000000000Z-crafted.json").write_text(
        json.dumps({"run_id": "crafted", "scenario": "crafted", "items": items, "executions": [], "escalations": []})
    )
    return directory


def test_status_into_a_closed_pipe_exits_quietly(tmp_path):
    state = _local_state(tmp_path / "state", records=400)

    done = _pipe_closed_by_the_reader("status", "--limit", "400", "--state-dir", str(state))

    assert done.returncode == cli.EXIT_BROKEN_PIPE
    assert done.stderr == "", "no BrokenPipeError traceback, nothing at all"


def test_scenarios_into_a_closed_pipe_exits_quietly():
    done = _pipe_closed_by_the_reader("scenarios")

    assert done.returncode == cli.EXIT_BROKEN_PIPE
    assert done.stderr == ""


# --- live progress --------------------------------------------------------------------------
class _Region:
    def __init__(self, executions: list[dict[str, Any]], states: dict[str, str]) -> None:
        self._executions = executions
        self.states = states

    def executions(self) -> list[dict[str, Any]]:
        return self._executions

    def history(self, arn: str) -> list[dict[str, Any]]:
        return [{"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": self.states[arn]}}]


class _Emulator:
    def __init__(self, region: _Region) -> None:
        self.region = region

    def every_region(self) -> list[_Region]:
        return [self.region]


class _Running:
    def __init__(self, region: _Region) -> None:
        self.emulator = _Emulator(region)
        self.started_at = None


def test_progress_says_which_state_each_running_execution_is_in_and_rewrites_its_line():
    region = _Region([{"name": "web-api-1", "status": "RUNNING", "executionArn": "arn-1"}], {"arn-1": "Admit"})
    stream = io.StringIO()
    progress = cli.DrillProgress(_Running(region), stream, interval=0)

    progress()  # the execution started, in Admit
    region.states["arn-1"] = "WaitBeforeVerify"
    progress()
    region._executions = [{"name": "web-api-1", "status": "SUCCEEDED", "executionArn": "arn-1"}]
    progress.done()  # the drill settled: how it ended, and the status line ends

    writes = stream.getvalue().split("\r\x1b[K")[1:]
    assert writes == [
        "  ... execution web-api-1 started\n",
        "  ... web-api-1: Admit",
        "  ... web-api-1: WaitBeforeVerify",
        "  ... execution web-api-1 succeeded\n",
    ]


def test_progress_waits_its_interval_between_updates():
    region = _Region([{"name": "web-api-1", "status": "RUNNING", "executionArn": "arn-1"}], {"arn-1": "Admit"})
    stream = io.StringIO()
    progress = cli.DrillProgress(_Running(region), stream, interval=3600)

    progress()
    region.states["arn-1"] = "Verify"
    progress()  # within the interval: nothing new

    assert "Verify" not in stream.getvalue()


def test_readiness_says_a_plan_with_no_workload_to_act_on_is_not_applicable_not_ready():
    from recoveryctl.readiness import format_table

    table = format_table(
        [
            {"plan": "replace-failed-eks-node", "workloads": [], "checked_at": "2026-12-03T16:00:00+00:00"},
            {
                "plan": "replace-failed-instance",
                "workloads": [{"workload": "web-api", "ready": True, "checks": [{"name": "x", "ok": True}]}],
            },
        ]
    )
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith("replace-")}
    assert rows["replace-failed-eks-node"][1:3] == ["-", "n/a"]
    assert "no configured workload" in table
    assert rows["replace-failed-instance"][1:3] == ["web-api", "yes"]
