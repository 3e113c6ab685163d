"""The deployment's recovery configuration as the functions read it at run time: the plans, the
guardrails and each workload's maintenance schedule.

It is a JSON file written into the functions' code asset when the stack synthesizes (Lambda
environment variables are limited to 4 KB in all, which a few plans exceed), named by the
environment variable RECOVERY_CONFIG, relative to the code's root (LAMBDA_TASK_ROOT) unless it
is an absolute path (the local emulator points at its own copy).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidInput
from core.guardrails import Guardrails, Maintenance
from core.plans import Plan, PlanError, parse_plans

FILE_NAME = "recovery-config.json"
ENV = "RECOVERY_CONFIG"


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    plans: list[Plan] = Field(default_factory=list)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    maintenance: dict[str, Maintenance] = Field(default_factory=dict, description="by workload name")

    def maintenance_of(self, workload: str) -> Maintenance:
        return self.maintenance.get(workload) or Maintenance()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True)


def build(plans: list[dict[str, Any]], guardrails: dict[str, Any], maintenance: dict[str, Any]) -> RuntimeConfig:
    """Validate the parts into a RuntimeConfig (raises PlanError or InvalidInput)."""
    parsed = parse_plans(plans)
    try:
        return RuntimeConfig(plans=parsed, guardrails=guardrails or {}, maintenance=maintenance or {})
    except ValidationError as exc:
        raise InvalidInput(f"invalid recovery configuration: {exc}") from exc


def path() -> Path:
    name = os.environ.get(ENV) or FILE_NAME
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate
    root = os.environ.get("LAMBDA_TASK_ROOT") or str(Path(__file__).resolve().parent.parent)
    return Path(root) / candidate


def load() -> RuntimeConfig:
    """The configuration the function was deployed with (cached while the file is unchanged)."""
    file = path()
    try:
        stat = file.stat()
    except OSError as exc:
        raise InvalidInput(f"the recovery configuration {file} is missing: redeploy the stack") from exc
    return _load(str(file), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load(file: str, mtime_ns: int, size: int) -> RuntimeConfig:
    try:
        data = json.loads(Path(file).read_text())
        return build(data.get("plans", []), data.get("guardrails", {}), data.get("maintenance", {}))
    except (OSError, ValueError, PlanError) as exc:
        raise InvalidInput(f"the recovery configuration {file} does not validate: {exc}") from exc
