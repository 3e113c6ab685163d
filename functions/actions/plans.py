"""Plans judged by their actions: each step names a registered action with parameters it accepts,
and what a plan does follows from what its actions declare (actions/registry.py): whether it
takes instances out of service, what it hands back later and when, and how long it may take.

Validating a step's parameters imports that action's code (its pydantic parameters); everything
else here reads the declarations only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from actions.registry import ACTIONS
from core import plans as core_plans
from core.errors import TASK_WITH_RETRIES_SECONDS
from core.plans import Plan, PlanError
from core.problems import Problem, from_validation, path


def step_problems(plan: Plan, where: str = "") -> list[Problem]:
    """What is wrong with each step of a plan whose shape is valid, each with its path under `where`
    (a plan's, "plans.2"): an action that is not registered, parameters its action does not take."""
    problems = []
    for index, step in enumerate(plan.steps):
        at = path(where, "steps", index)
        spec = ACTIONS.get(step.action)
        if spec is None:
            known = ", ".join(sorted(ACTIONS))
            problems.append(Problem(path(at, "action"), f"no action is named {step.action!r} (actions: {known})"))
            continue
        try:
            spec.implementation().params.model_validate(step.params)
        except ValidationError as exc:
            problems += [replace(p, within=f"action {step.action}") for p in from_validation(exc, at, "params")]
    return problems


def check_steps(plan: Plan) -> None:
    """Each step names a registered action and gives it parameters it accepts; else a ValueError
    with a line per problem (what SelectPlan checks of the plan it chose, at run time)."""
    problems = step_problems(plan)
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))


def plan_problems(raw: list[dict[str, Any]] | str, where: str = "plans") -> tuple[list[Plan], list[Problem]]:
    """The plans that validate, with their steps, and every problem of the others."""
    return core_plans.plan_problems(raw, check=step_problems, where=where)


def parse_plans(raw: list[dict[str, Any]] | str) -> list[Plan]:
    """Validate a list of plans and their steps, raising PlanError with every problem, each with
    its path (what `cdk synth`, `recoveryctl plans validate` and a drill's plans go through)."""
    return core_plans.parse_plans(raw, check=step_problems)


def takes_out_of_service(steps: Iterable[dict[str, Any]]) -> bool:
    """Does a plan's step take the impaired instances out of service (what the blast radius and
    fail open guard)? Steps as the execution state carries them; an unknown action does not."""
    for step in steps:
        spec = ACTIONS.get(step["action"])
        if spec is not None and spec.takes_out_of_service(step.get("params") or {}):
            return True
    return False


# --- the time budget: how long a recovery by a plan may hold its resources and run ----------


def _steps_seconds(plan: Plan) -> int:
    """Every step's time-box, as its action declares it."""
    return sum(ACTIONS[step.action].time_box_seconds for step in plan.steps)


def rollback_seconds(plan: Plan) -> int:
    """The longest rolling a plan back and escalating may take: each step's rollback may take as
    long as its apply may."""
    return TASK_WITH_RETRIES_SECONDS + _steps_seconds(plan) + TASK_WITH_RETRIES_SECONDS  # Prepare, Escalate


def holding_seconds(plan: Plan) -> int:
    """The longest a recovery by this plan may hold its resources (their locks): the approval,
    the plan's own time-box, each step's, then the rollback of every step."""
    approval = plan.approval_timeout_seconds if plan.requires_approval else 0
    return approval + plan.timeout_seconds + _steps_seconds(plan) + rollback_seconds(plan)


def time_box_seconds(plan: Plan) -> int:
    """The longest an execution of this plan may take: holding_seconds, and the longest wait
    before what its steps changed is handed back, then handing it back."""
    waits = [ACTIONS[step.action].hand_back_after(step.params) or 0 for step in plan.steps]
    return holding_seconds(plan) + max(waits, default=0) + TASK_WITH_RETRIES_SECONDS


__all__ = [
    "Plan",
    "PlanError",
    "check_steps",
    "holding_seconds",
    "parse_plans",
    "plan_problems",
    "rollback_seconds",
    "step_problems",
    "takes_out_of_service",
    "time_box_seconds",
]
