"""Recovery plans: declarative configuration saying which actions run for which impairment.

Here, what every function reading plans needs: their shape, and which plan covers an impairment.
What a plan's steps may be is the actions' to say (actions/plans.py: each step names a registered
action with parameters it accepts, and the plan's time budget is what its actions declare); that
is checked when the CDK app synthesizes (a bad step fails `cdk synth`), and again for the plan
Admit chose, at run time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from msgspec import Meta, field

from core.blocking import Blocking
from core.contract import ImpairmentDetected, ImpairmentType, Severity
from core.model import Model, ValidationError
from core.problems import Problem, from_validation, named, path


class PlanError(ValueError):
    """Plans do not validate. The message has a line per problem: its path and what is wrong."""

    def __init__(self, problems: list[Problem] | str) -> None:
        self.problems = [Problem("", problems)] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


ScopeKey = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class PlanMatch(Model, kw_only=True, forbid_unknown_fields=True):
    impairment_types: Annotated[list[ImpairmentType], Meta(min_length=1)]
    min_severity: Severity = Severity.LOW
    max_severity: Annotated[
        Severity,
        Meta(description="above this a human decides (fail open: most of a fleet impaired at once is critical)"),
    ] = Severity.CRITICAL
    workloads: Annotated[list[str] | None, Meta(description="only these workloads (default: all)")] = None
    scope_has: Annotated[
        ScopeKey | None,
        Meta(
            description=(
                "only impairments whose scope has this key (e.g. eks_node: a failing EKS node, replaced through its "
                "node group rather than as a plain instance)"
            )
        ),
    ] = None

    def covers(self, impairment: ImpairmentDetected) -> bool:
        return (
            impairment.impairment_type in self.impairment_types
            and self.min_severity <= impairment.severity <= self.max_severity
            and (self.workloads is None or impairment.workload in self.workloads)
            and (self.scope_has is None or bool(impairment.scope.get(self.scope_has)))
        )


class PlanStep(Model, kw_only=True, forbid_unknown_fields=True):
    action: str
    params: dict[str, Any] = {}
    when_scope_has: Annotated[
        ScopeKey | None,
        Meta(
            description=(
                "run this step only when the impairment's scope has this key (e.g. global_cluster_id: the "
                "workload declares a global database); else it is skipped, and the plan's record says why"
            )
        ),
    ] = None

    def applies_to(self, scope: dict[str, str]) -> bool:
        """Does this step run for an impairment with this scope?"""
        return self.when_scope_has is None or bool(scope.get(self.when_scope_has))


class VerifySettings(Model, kw_only=True, forbid_unknown_fields=True):
    wait_seconds: Annotated[int, Meta(ge=0, le=3600, description="wait before each check")] = 30
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 10


class Plan(Model, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    description: str = ""
    match: PlanMatch
    steps: Annotated[list[PlanStep], Meta(min_length=1, max_length=10)]
    verify: VerifySettings = field(default_factory=VerifySettings)
    timeout_seconds: Annotated[int, Meta(ge=60, le=86400)] = 3600
    dry_run: Annotated[bool, Meta(description="run the whole recovery, changing nothing")] = False
    requires_approval: Annotated[
        bool, Meta(description="high risk: wait for a human to approve (recoveryctl approve ID) before acting")
    ] = False
    approval_timeout_seconds: Annotated[
        int, Meta(ge=60, le=86400, description="no answer within this time: escalate, act on nothing")
    ] = 3600
    max_recoveries_per_hour: Annotated[
        Annotated[int, Meta(ge=1, le=10_000)] | None,
        Meta(description="rate limit of this plan (default: the guardrails' per plan)"),
    ] = None
    blocking: Annotated[
        Blocking | None,
        Meta(description="when this plan's recoveries wait instead of acting (default: guardrails.blocking)"),
    ] = None


# Judges a plan whose shape is valid, its path given ("plans.2"): the plan as it runs (its steps'
# actions resolved) and what is wrong with its steps.
PlanCheck = Callable[[Plan, str], tuple[Plan, list[Problem]]]


def plan_problems(
    raw: list[dict[str, Any]] | str, check: PlanCheck | None = None, where: str = "plans"
) -> tuple[list[Plan], list[Problem]]:
    """Every plan that validates, and every problem of those that do not (all of them, each with
    its path under `where`): their shapes, what `check` says of their steps, duplicate names."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, list):
        return [], [Problem(where, "must be a list of plans")]
    plans: list[Plan] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for position, item in enumerate(data):
        at = path(where, position)
        try:
            plan = Plan.model_validate(item)
        except ValidationError as exc:
            problems += from_validation(exc, at)
            continue
        plan, found = check(plan, at) if check is not None else (plan, [])
        if plan.name in seen:
            found.append(
                Problem(path(at, "name"), f"another plan is already named {plan.name!r}: names must be unique")
            )
        seen.add(plan.name)
        problems += found
        if not found:
            plans.append(plan)
    return plans, named(problems, where, data, "plan")


def parse_plans(raw: list[dict[str, Any]] | str, check: PlanCheck | None = None) -> list[Plan]:
    """Validate a list of plans, raising PlanError with every problem, each on its own line."""
    plans, problems = plan_problems(raw, check)
    if problems:
        raise PlanError(problems)
    return plans


def select_plan(plans: list[Plan], impairment: ImpairmentDetected) -> Plan | None:
    """The first plan, in declared order, that covers the impairment."""
    return next((plan for plan in plans if plan.match.covers(impairment)), None)
