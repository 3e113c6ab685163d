"""The execution state the workflow's tasks receive, validated: a task given a state it cannot
work with raises InvalidInput naming what is wrong, before it reads or changes anything."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.contract import ImpairmentDetected
from core.errors import InvalidInput
from core.plans import VerifySettings


class PlanStep(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    index: int = Field(ge=0)
    action: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class PlanState(BaseModel):
    """The plan Admit selected (its output's `plan`), as the later tasks read it."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    name: str = Field(min_length=1)
    steps: list[PlanStep] = Field(default_factory=list)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    dry_run: bool = False
    requires_approval: bool = False
    approval_timeout_seconds: int = Field(default=3600, ge=1)
    deadline: str | None = None
    rto_seconds: int | None = Field(default=None, ge=1, description="the workload's recovery time objective")


class Admission(BaseModel):
    """Admit's output: the resources it locked."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    admitted_at: str | None = None
    lock_keys: list[str] = Field(default_factory=list)


class ExecutionState(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    impairment: ImpairmentDetected
    plan: PlanState | None = None
    admission: Admission = Field(default_factory=Admission)
    actions: list[Any] | None = None
    verification: dict[str, Any] | None = None
    guardrails: dict[str, Any] | None = None


def parse(event: Any, task: str, *, plan: bool = False) -> ExecutionState:
    """The state, validated; `plan=True` when the task needs the selected plan."""
    try:
        state = ExecutionState.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'state'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"{task}: the execution state does not validate: {problems}") from None
    if plan and state.plan is None:
        raise InvalidInput(f"{task}: the execution state has no plan")
    return state
