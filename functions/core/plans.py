"""Recovery plans: declarative configuration saying which actions run for which impairment.

Here, what every function reading plans needs: their shape, and which plan covers an impairment.
What a plan's steps may be is the actions' to say (actions/plans.py: each step names a registered
action with parameters it accepts, and the plan's time budget is what its actions declare); that
is checked when the CDK app synthesizes (a bad step fails `cdk synth`), and again for the plan
SelectPlan chose, at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.contract import ImpairmentDetected, ImpairmentType, Severity


class PlanError(ValueError):
    """A plan does not validate. The message names the plan, the step and what is wrong."""


class PlanMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    impairment_types: list[ImpairmentType] = Field(min_length=1)
    min_severity: Severity = Severity.LOW
    max_severity: Severity = Field(
        default=Severity.CRITICAL,
        description="above this a human decides (fail open: most of a fleet impaired at once is critical)",
    )
    workloads: list[str] | None = Field(default=None, description="only these workloads (default: all)")

    def covers(self, impairment: ImpairmentDetected) -> bool:
        return (
            impairment.impairment_type in self.impairment_types
            and self.min_severity <= impairment.severity <= self.max_severity
            and (self.workloads is None or impairment.workload in self.workloads)
        )


class PlanStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    params: dict[str, Any] = Field(default_factory=dict)


class VerifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait_seconds: int = Field(default=30, ge=0, le=3600, description="wait before each check")
    max_attempts: int = Field(default=10, ge=1, le=100)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    match: PlanMatch
    steps: list[PlanStep] = Field(min_length=1, max_length=10)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    timeout_seconds: int = Field(default=3600, ge=60, le=86400)
    dry_run: bool = Field(default=False, description="run the whole recovery, changing nothing")
    requires_approval: bool = Field(
        default=False, description="high risk: wait for a human to approve (recoveryctl approve ID) before acting"
    )
    approval_timeout_seconds: int = Field(
        default=3600, ge=60, le=86400, description="no answer within this time: escalate, act on nothing"
    )
    max_recoveries_per_hour: int | None = Field(
        default=None, ge=1, le=10_000, description="rate limit of this plan (default: the guardrails' per plan)"
    )


def parse_plans(raw: list[dict[str, Any]] | str, check: Callable[[Plan], Plan | None] | None = None) -> list[Plan]:
    """Validate a list of plans, raising PlanError with a message a person can act on. `check`
    judges each plan once its shape is valid (a ValueError it raises names what is wrong), and
    may return the plan as it is to run (its steps' actions resolved)."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, list):
        raise PlanError("plans must be a list")
    plans = []
    for position, item in enumerate(data):
        label = item.get("name", f"#{position}") if isinstance(item, dict) else f"#{position}"
        try:
            plan = Plan.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(_describe(e) for e in exc.errors())
            raise PlanError(f"plan {label!r}: {problems}") from None
        if check is not None:
            try:
                plan = check(plan) or plan
            except ValueError as exc:
                raise PlanError(f"plan {label!r}: {exc}") from None
        plans.append(plan)
    names = [p.name for p in plans]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PlanError(f"plan names must be unique: {', '.join(duplicates)}")
    return plans


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(p) for p in error["loc"])
    message = re.sub(r"^Value error, ", "", error["msg"])
    return f"{location}: {message}" if location else message


def select_plan(plans: list[Plan], impairment: ImpairmentDetected) -> Plan | None:
    """The first plan, in declared order, that covers the impairment."""
    return next((plan for plan in plans if plan.match.covers(impairment)), None)
