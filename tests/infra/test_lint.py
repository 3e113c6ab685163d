"""The synthesized template passes cfn-lint, and cdk-nag (AwsSolutions) finds nothing unexplained."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Annotations, Match

from tests.conftest import ROOT


def _cfn_lint() -> str:
    beside = Path(sys.executable).with_name("cfn-lint")
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    assert found, "cfn-lint is not installed (it is in requirements-dev)"
    return found


def test_cfn_lint_finds_no_errors(synthesized):
    # cwd is the repository root, so a .cfnlintrc there applies as it does for `cfn-lint` by hand.
    result = subprocess.run(
        [_cfn_lint(), "--format", "json", str(synthesized.template_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [
        f"{f['Rule']['Id']} {'/'.join(map(str, f['Location']['Path']))}: {f['Message']}"
        for f in findings
        if f["Level"] == "Error" or f["Rule"]["Id"].startswith("E")
    ]
    assert not errors, "cfn-lint errors:\n" + "\n".join(errors)
    assert result.returncode & 2 == 0, result.stderr  # bit 2: errors, even ones not in the JSON


def test_cdk_nag_finds_no_unsuppressed_aws_solutions_error(synthesized):
    errors = Annotations.from_stack(synthesized.stack).find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert errors == [], "\n".join(f"{e.id}: {e.entry.data}" for e in errors)


def _suppressions(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, suppression) for every cdk-nag suppression: the stack's and each resource's."""
    for suppression in template.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
        yield "stack", suppression
    for resource_id, resource in template["Resources"].items():
        for suppression in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            yield resource_id, suppression


def test_every_nag_suppression_says_why(synthesized):
    suppressions = list(_suppressions(synthesized.template_json))
    assert suppressions, "no cdk-nag suppression found in the template metadata: is cdk-nag applied?"
    unexplained = [(where, s.get("id")) for where, s in suppressions if not str(s.get("reason", "")).strip()]
    assert not unexplained, f"suppressions without a reason: {unexplained}"
