"""The infrastructure tier: the stack is synthesized once per test session, in process, from the
configuration in cdk.json (the same one `cdk synth` uses), and every test reads that result."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported for real inside the fixture, once PATH points at the pinned Node
    from aws_cdk.assertions import Template

    from infra.config import RecoveryConfig
    from infra.stack import RecoveryStack

ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = ROOT / "cdk.json"

# jsii runs on the project's pinned Node (node_modules/.bin), as `cdk synth` does.
_NODE_BIN = ROOT / "node_modules" / ".bin"
if _NODE_BIN.is_dir() and str(_NODE_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = f"{_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


def cdk_context() -> dict[str, Any]:
    """cdk.json's context: the feature flags and the "recovery" configuration."""
    return json.loads(CDK_JSON.read_text())["context"]


@dataclass(frozen=True)
class Synthesized:
    """One synthesis of the stack: the construct tree, the assertions view and the file on disk."""

    stack: RecoveryStack
    config: RecoveryConfig
    template: Template
    template_path: Path
    resources: dict[str, dict[str, Any]] = field(repr=False)
    template_json: dict[str, Any] = field(repr=False)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Synthesize RecoveryStack once (about 10 s) for the whole session."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import validate
    from infra.stack import RecoveryStack

    context = cdk_context()
    config = validate(context["recovery"])
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")), context=context)
    stack = RecoveryStack(app, config.stack_name, config=config)
    assembly = app.synth()
    template_path = Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path)
    template = Template.from_stack(stack)
    template_json = json.loads(template_path.read_text())
    return Synthesized(
        stack=stack,
        config=config,
        template=template,
        template_path=template_path,
        resources=template_json["Resources"],
        template_json=template_json,
    )


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template


@pytest.fixture(scope="session")
def resources(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return synthesized.resources


@pytest.fixture(scope="session")
def config(synthesized: Synthesized) -> RecoveryConfig:
    return synthesized.config
