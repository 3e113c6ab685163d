"""recoveryctl config validate: a configuration file checked as `cdk synth` checks it, without
synthesizing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from recoveryctl import cli
from tests.conftest import ROOT, cdk_context


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _broken(tmp_path: Path) -> Path:
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["workloads"][0]["name"] = "Web API"
    raw["plans"][0]["steps"][0]["params"]["expires_in"] = "2 hours"
    path = tmp_path / "recovery.json"
    path.write_text(json.dumps(raw))
    return path


def test_every_problem_is_printed_with_its_path_and_the_exit_code_is_1(tmp_path, capsys):
    code, out, _ = _run(capsys, "config", "validate", str(_broken(tmp_path)))

    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("recovery.json: 4 problems in the recovery configuration:")
    assert lines[1].startswith("  - workloads.0.name (workload 'Web API'): must be a workload name")
    assert (
        "  - plans.0.steps.0.params.expires_in "
        "(plan 'shift-away-from-impaired-zone', action redirect_traffic, kind zonal_shift): "
        "must be a duration like 30m or 2h (got '2 hours')"
    ) in lines
    # web-api is gone (renamed, and invalid): the plans naming it are told so
    unknown = [line for line in lines if "match.workloads.0" in line]
    assert [line.split(" (")[0].strip() for line in unknown] == [
        "- plans.0.match.workloads.0",
        "- plans.3.match.workloads.0",
    ]
    assert all("no workload is named 'web-api'" in line for line in unknown)


def test_json_lists_the_problems_for_machines(tmp_path, capsys):
    code, out, _ = _run(capsys, "config", "validate", str(_broken(tmp_path)), "--json")

    report = json.loads(out)
    assert code == 1 and report["valid"] is False
    assert report["problems"][2] == {
        "path": "plans.0.steps.0.params.expires_in",
        "message": "must be a duration like 30m or 2h (got '2 hours')",
        "within": "plan 'shift-away-from-impaired-zone', action redirect_traffic, kind zonal_shift",
    }


def test_a_cdk_json_is_read_from_its_context_and_summarized(capsys):
    code, out, _ = _run(capsys, "config", "validate", str(ROOT / "cdk.json"))

    assert code == 0
    assert "valid; stack ImpairmentRecovery" in out
    assert "  workloads (4): web-api, checkout, orders, ledger" in out
    assert "  regions: one stack" in out
    assert "warning: no escalation subscriber is configured" in out  # the shipped cdk.json pages no one


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read"), ("{not json", "is not valid JSON"), ('{"context": {}}', "without a context.recovery")],
)
def test_a_file_that_cannot_be_read_is_a_usage_error(tmp_path, capsys, content, expected):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    code, _, err = _run(capsys, "config", "validate", str(path))
    assert code == 2 and expected in err


def test_plans_validate_still_checks_plans_alone(tmp_path, capsys):
    path = tmp_path / "plans.json"
    path.write_text(json.dumps([{"name": "p", "match": {"impairment_types": ["instance_failure"]}, "steps": []}]))
    code, _, err = _run(capsys, "plans", "validate", str(path))
    assert code == 2 and "plans.0.steps (plan 'p'): must not be empty" in err
