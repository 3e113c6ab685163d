"""The synthesized template passes cfn-lint, and cdk-nag (AwsSolutions) finds nothing unexplained."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aws_cdk.assertions import Annotations, Match

from tests.infra.cfn import cfn_lint_errors


def test_cfn_lint_finds_no_errors(synthesized):
    errors = cfn_lint_errors(synthesized.template_path)
    assert not errors, "cfn-lint errors:\n" + "\n".join(errors)


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
