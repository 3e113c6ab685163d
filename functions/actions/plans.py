"""Plans judged by their actions: each step names a registered action with parameters it accepts
(or an alias of several, resolved here to the action its `kind` names), and what a plan does
follows from what its actions declare (actions/registry.py): whether it takes instances out of
service, what it hands back later and when, and how long it may take.

Validating a step's parameters imports that action's code (its pydantic parameters); everything
else here reads the declarations only.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from actions.registry import ACTIONS, ALIASES
from core import plans as core_plans
from core.errors import TASK_WITH_RETRIES_SECONDS
from core.plans import Plan, PlanError, PlanStep


def check_steps(plan: Plan) -> Plan:
    """The plan as it runs: each step names a registered action (an alias resolved to its kind's)
    and gives it parameters it accepts; a ValueError names the step, the action and what is wrong."""
    steps = []
    for index, step in enumerate(plan.steps):
        action, params = resolve_step(index, step.action, step.params)
        spec = ACTIONS.get(action)
        if spec is None:
            known = ", ".join(sorted([*ACTIONS, *ALIASES]))
            raise ValueError(f"step {index}: unknown action {action!r} (known: {known})")
        try:
            spec.implementation().params.model_validate(params)
        except ValidationError as exc:
            raise ValueError(f"step {index} ({action}): {_problems(exc)}") from None
        steps.append(PlanStep(action=action, params=params))
    return plan.model_copy(update={"steps": steps})


def resolve_step(index: int, action: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An alias's step as the action its `kind` names, with the params that action takes (the
    kind left out); any other step as it is. The params are judged by the alias's discriminated
    union of its kinds' parameters, so a field of another kind is refused by its path."""
    alias = ALIASES.get(action)
    if alias is None:
        return action, params
    given = {"kind": alias.default_kind, **params} if alias.default_kind else params
    if "kind" not in given:
        kinds = ", ".join(f"{kind} ({name})" for kind, name in alias.kinds.items())
        raise ValueError(f"step {index} ({action}): params.kind: missing; {action} is one of: {kinds}")
    try:
        model = _union(alias.name).validate_python(given)
    except ValidationError as exc:
        kind = given.get("kind")
        named = f"{action}, kind {kind}" if kind in alias.kinds else action
        raise ValueError(f"step {index} ({named}): {_problems(exc, tagged=True)}") from None
    return alias.kinds[model.kind], {k: v for k, v in params.items() if k != "kind"}


@cache
def _union(alias: str) -> TypeAdapter[Any]:
    """The alias's params: a discriminated union, on `kind`, of its kinds' own parameters."""
    models = tuple(ACTIONS[name].implementation().params for name in ALIASES[alias].kinds.values())
    return TypeAdapter(Annotated[Union[models], Field(discriminator="kind")])  # noqa: UP007


def _problems(exc: ValidationError, tagged: bool = False) -> str:
    """Each error as params.<field path>: what is wrong (a discriminated union's errors start
    with the kind's tag, left out: the step names its kind)."""
    problems = []
    for error in exc.errors():
        location = [str(p) for p in error["loc"]][1 if tagged and error["loc"] else 0 :]
        if error["type"].startswith("union_tag"):
            location = ["kind"]  # missing, or not one of the alias's kinds
        problems.append(f"{'.'.join(['params', *location])}: {error['msg']}")
    return "; ".join(problems)


def parse_plans(raw: list[dict[str, Any]] | str) -> list[Plan]:
    """Validate a list of plans and their steps, raising PlanError with a message a person can act
    on (what `cdk synth`, `recoveryctl plans validate` and a drill's plans go through)."""
    return core_plans.parse_plans(raw, check=check_steps)


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
    "resolve_step",
    "rollback_seconds",
    "takes_out_of_service",
    "time_box_seconds",
]
