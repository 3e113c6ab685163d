"""Plans judged by their actions: each step names a registered action with parameters it accepts
(or an alias of several, resolved here to the action its `kind` names), and what a plan does
follows from what its actions declare (actions/registry.py): whether it takes instances out of
service, what it hands back later and when, and how long it may take.

Validating a step's parameters imports that action's code (its parameters, msgspec models);
everything else here reads the declarations only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from msgspec.structs import replace

from actions.registry import ACTIONS, ALIASES
from core import plans as core_plans
from core.errors import TASK_WITH_RETRIES_SECONDS
from core.model import ValidationError
from core.plans import Plan, PlanError, PlanStep
from core.problems import Problem, from_validation, path


def resolved(plan: Plan, where: str = "") -> tuple[Plan, list[Problem]]:
    """The plan as it runs (each alias step resolved to the action its kind names, the kind left
    out), and what is wrong with its steps, each with its path under `where` (a plan's,
    "plans.2"): an action that is not registered, parameters its action does not take."""
    steps, problems = [], []
    for index, step in enumerate(plan.steps):
        at = path(where, "steps", index)
        action, params, found = resolve_step(step.action, step.params, at)
        steps.append(PlanStep(action=action, params=params, when_scope_has=step.when_scope_has))
        if found:  # an alias whose kind or params are wrong
            problems += found
            continue
        spec = ACTIONS.get(action)
        if spec is None:
            known = ", ".join(sorted([*ACTIONS, *ALIASES]))
            problems.append(Problem(path(at, "action"), f"no action is named {action!r} (actions: {known})"))
            continue
        found = params_problems(spec.implementation().params, params, at, f"action {action}")
        if found:
            problems += found
            continue
        if spec.needs_approval(params) and not plan.requires_approval:
            problems.append(
                Problem(
                    path(at, "action"),
                    f"{action} cannot be undone: the plan must set requires_approval (or the step's params "
                    "without_approval: true)",
                )
            )
    return (plan if problems else plan.model_copy(update={"steps": steps})), problems


def resolve_step(action: str, params: dict[str, Any], at: str = "") -> tuple[str, dict[str, Any], list[Problem]]:
    """An alias's step as the action its `kind` names, with the params that action takes (the
    kind left out); any other step as it is. The params are judged by the kind's own parameters
    (each kind's Params has its `kind`), so a field of another kind is refused by its path."""
    alias = ALIASES.get(action)
    if alias is None:
        return action, params, []
    given = {"kind": alias.default_kind, **params} if alias.default_kind else params
    kind = given.get("kind")
    if "kind" not in given:
        kinds = ", ".join(f"{known} ({name})" for known, name in alias.kinds.items())
        problem = Problem(path(at, "params", "kind"), f"missing: {action} is one of: {kinds}", f"action {action}")
        return action, params, [problem]
    if not isinstance(kind, str) or kind not in alias.kinds:
        kinds = ", ".join(sorted(alias.kinds))
        return action, params, [Problem(path(at, "params", "kind"), f"must be one of {kinds}", f"action {action}")]
    model = ACTIONS[alias.kinds[kind]].implementation().params
    problems = params_problems(model, given, at, f"action {action}, kind {kind}")
    if problems:
        return action, params, problems
    return alias.kinds[kind], {k: v for k, v in params.items() if k != "kind"}, []


# A model's own check about one of its fields says so first: "payload: sets phase, ...".
def params_problems(model: type[Any], params: dict[str, Any], at: str, within: str) -> list[Problem]:
    """What is wrong with a step's params as its action's Params, each at its path (under `at`'s
    params; a Params' own check about one field, "<field>: ...", is at that field: core/model_errors.py)."""
    try:
        model.model_validate(params)
    except ValidationError as exc:
        return [replace(p, within=within) for p in from_validation(exc, at, "params")]
    return []


def step_problems(plan: Plan, where: str = "") -> list[Problem]:
    """What is wrong with each step of a plan whose shape is valid (see resolved)."""
    return resolved(plan, where)[1]


def check_steps(plan: Plan) -> Plan:
    """The plan as it runs (its aliases resolved), if each step names a registered action and gives
    it parameters it accepts; else a ValueError with a line per problem (what Admit checks of
    the plan it chose, at run time)."""
    plan, problems = resolved(plan)
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))
    return plan


def plan_problems(raw: list[dict[str, Any]] | str, where: str = "plans") -> tuple[list[Plan], list[Problem]]:
    """The plans that validate, as they run, and every problem of the others."""
    return core_plans.plan_problems(raw, check=resolved, where=where)


def parse_plans(raw: list[dict[str, Any]] | str) -> list[Plan]:
    """Validate a list of plans and their steps, raising PlanError with every problem, each with
    its path (what `cdk synth`, `recoveryctl plans validate` and a drill's plans go through);
    returns them as they run."""
    return core_plans.parse_plans(raw, check=resolved)


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


def holding_seconds(plan: Plan, blocked_seconds: int = 0) -> int:
    """The longest a recovery by this plan may hold its resources (their locks): the approval,
    the wait while blocked (`blocked_seconds`: its blocking's max_wait_seconds, core/blocking.py),
    the plan's own time-box, each step's, then the rollback of every step."""
    approval = plan.approval_timeout_seconds if plan.requires_approval else 0
    return approval + blocked_seconds + plan.timeout_seconds + _steps_seconds(plan) + rollback_seconds(plan)


def time_box_seconds(plan: Plan, blocked_seconds: int = 0) -> int:
    """The longest an execution of this plan may take: holding_seconds, and the longest wait
    before what its steps changed is handed back, then handing it back."""
    waits = [ACTIONS[step.action].hand_back_after(step.params) or 0 for step in plan.steps]
    return holding_seconds(plan, blocked_seconds) + max(waits, default=0) + TASK_WITH_RETRIES_SECONDS


__all__ = [
    "Plan",
    "PlanError",
    "check_steps",
    "holding_seconds",
    "parse_plans",
    "plan_problems",
    "resolve_step",
    "resolved",
    "rollback_seconds",
    "step_problems",
    "takes_out_of_service",
    "time_box_seconds",
]
