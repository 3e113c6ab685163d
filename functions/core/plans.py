"""Recovery plans: declarative configuration saying which actions run for which impairment.

Plans are validated when the CDK app synthesizes (an unknown action or a bad parameter fails
`cdk synth`) and again when the plan step loads them at run time.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.contract import ImpairmentDetected, ImpairmentType, Severity
from core.errors import CAPACITY_WAIT_SECONDS, TASK_WITH_RETRIES_SECONDS


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

    @property
    def holding_seconds(self) -> int:
        """The longest a recovery by this plan may hold its resources (their locks): the approval,
        the plan's own time-box, each step's wait for capacity, then the rollback of every step
        (each may wait for capacity too, and retries)."""
        acting = len(self.steps) * (CAPACITY_WAIT_SECONDS + TASK_WITH_RETRIES_SECONDS)
        return (
            (self.approval_timeout_seconds if self.requires_approval else 0)
            + self.timeout_seconds
            + acting
            + self.rollback_seconds
        )

    @property
    def rollback_seconds(self) -> int:
        """The longest rolling this plan back and escalating may take: each step's rollback may
        wait for capacity and retry."""
        return (
            TASK_WITH_RETRIES_SECONDS  # PrepareRollback
            + len(self.steps) * (CAPACITY_WAIT_SECONDS + TASK_WITH_RETRIES_SECONDS)
            + TASK_WITH_RETRIES_SECONDS  # Escalate
        )

    @property
    def time_box_seconds(self) -> int:
        """The longest an execution of this plan may take: holding_seconds, and the wait before
        emergency capacity goes back."""
        returns = [
            int(step.params.get("return_after_seconds", 3600))
            for step in self.steps
            if step.action == "scale_out" and not step.params.get("keep")
        ]
        return self.holding_seconds + max(returns, default=0) + TASK_WITH_RETRIES_SECONDS

    @model_validator(mode="after")
    def _steps_known(self) -> Plan:
        from actions.registry import ACTIONS

        for index, step in enumerate(self.steps):
            spec = ACTIONS.get(step.action)
            if spec is None:
                raise ValueError(f"step {index}: unknown action {step.action!r} (known: {', '.join(sorted(ACTIONS))})")
            try:
                spec.implementation().params.model_validate(step.params)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(f"step {index} ({step.action}): {problems}") from None
        return self


def parse_plans(raw: list[dict[str, Any]] | str) -> list[Plan]:
    """Validate a list of plans, raising PlanError with a message a person can act on."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, list):
        raise PlanError("plans must be a list")
    plans = []
    for position, item in enumerate(data):
        label = item.get("name", f"#{position}") if isinstance(item, dict) else f"#{position}"
        try:
            plans.append(Plan.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(_describe(e) for e in exc.errors())
            raise PlanError(f"plan {label!r}: {problems}") from None
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
