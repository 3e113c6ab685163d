"""The execution state the workflow's tasks receive, validated: a task given a state it cannot
work with raises InvalidInput naming what is wrong, before it reads or changes anything.

Fields a task does not read are ignored (the state carries each task's output)."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, field

from core.contract import ImpairmentDetected
from core.errors import InvalidInput
from core.model import Model, ValidationError
from core.plans import VerifySettings


class PlanStep(Model, kw_only=True):
    index: Annotated[int, Meta(ge=0)]
    action: Annotated[str, Meta(min_length=1)]
    params: dict[str, Any] = {}


class PlanState(Model, kw_only=True):
    """The plan Admit selected (its output's `plan`), as the later tasks read it."""

    name: Annotated[str, Meta(min_length=1)]
    steps: list[PlanStep] = []
    verify: VerifySettings = field(default_factory=VerifySettings)
    dry_run: bool = False
    requires_approval: bool = False
    approval_timeout_seconds: Annotated[int, Meta(ge=1)] = 3600
    deadline: str | None = None
    rto_seconds: Annotated[
        Annotated[int, Meta(ge=1)] | None, Meta(description="the workload's recovery time objective")
    ] = None


class Admission(Model, kw_only=True):
    """Admit's output: the resources it locked."""

    admitted_at: str | None = None
    lock_keys: list[str] = []


class ExecutionState(Model, kw_only=True):
    impairment: ImpairmentDetected
    plan: PlanState | None = None
    admission: Admission = field(default_factory=Admission)
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
