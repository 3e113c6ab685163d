"""The configurations in examples/ are what the README tells a new user to start from: each
validates (`recoveryctl config validate`) and synthesizes, as `make synth CONFIG=...` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recoveryctl import cli
from tests.conftest import ROOT, cdk_context

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


def test_there_is_a_single_region_and_a_multi_region_multi_account_example():
    names = {path.stem for path in EXAMPLES}
    assert {"single-region", "two-regions-member-account"} <= names
    regional = json.loads((ROOT / "examples" / "two-regions-member-account.json").read_text())
    assert regional["regions"]["standby"] and regional["accounts"]["members"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_each_example_validates(path: Path, capsys: pytest.CaptureFixture[str]):
    code = cli.main(["config", "validate", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["valid"] and report["workloads"] and report["plans"]
    assert report["warnings"] == []  # each example pages someone


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_each_example_synthesizes(path: Path, tmp_path: Path):
    # As app.py builds it from `-c recovery_config=FILE` (the context `make synth CONFIG=...` passes)
    import aws_cdk as cdk

    import app as cdk_app
    from infra.config import load
    from infra.member_stack import build_member_stacks

    context = {**cdk_context(), "recovery_config": str(path)}
    app = cdk.App(outdir=str(tmp_path), context=context)
    config = load(app.node.try_get_context)
    stacks = cdk_app.build(app, config)
    members = build_member_stacks(app, config)
    assembly = app.synth()

    templates = {stack.stack_name: assembly.get_stack_by_name(stack.stack_name).template for stack in stacks}
    expected = 1 if config.regions is None else 1 + len(config.regions.standby)
    assert len(templates) == expected
    for template in templates.values():
        assert any(r["Type"] == "AWS::StepFunctions::StateMachine" for r in template["Resources"].values())
    if config.accounts:
        assert members, "a member account's stack is built"
