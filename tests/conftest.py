"""Fixtures shared by every tier. Tests never reach the network (pytest-socket)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported for real inside the fixture, once PATH points at the pinned Node
    from aws_cdk.assertions import Template

    from infra.config import RecoveryConfig
    from infra.stack import RecoveryStack

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """A sample AWS event by file name, from tests/events (the repository keeps its own copies)."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region, so nothing can reach a real account; fresh boto3 clients."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "ImpairmentRecoveryTests",
        "POWERTOOLS_SERVICE_NAME": "impairment-recovery",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    from core import aws, clock

    aws.reset()
    clock.reset()
    yield
    aws.reset()
    clock.reset()


class LambdaContext:
    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


# Set before any module under test is imported (session fixtures run before autouse ones).
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# --- one synthesis of the stack for every tier that needs it ---

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
