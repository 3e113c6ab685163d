"""Synthesize the stack in process, as `cdk synth` would, from cdk.json's configuration (or a
given one). Slow (~10 s): tiers share one synthesis per session through their fixtures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def project_config() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]["recovery"]


@dataclass
class Synthesized:
    stack: Any
    template_path: Path
    outdir: Path

    @property
    def template(self) -> dict[str, Any]:
        return json.loads(self.template_path.read_text())


def synthesize(outdir: Path, raw_config: dict[str, Any] | None = None) -> Synthesized:
    import aws_cdk as cdk

    from infra.config import validate
    from infra.stack import RecoveryStack

    config = validate(raw_config if raw_config is not None else project_config())
    app = cdk.App(outdir=str(outdir))
    stack = RecoveryStack(app, config.stack_name, config=config)
    app.synth()
    return Synthesized(stack=stack, template_path=outdir / f"{config.stack_name}.template.json", outdir=outdir)
