"""Each plan judged against each workload it may act on: ready when every check of every step
holds, in every one of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actions.plans import resolve_step
from core.errors import RecoveryError
from core.plans import Plan
from core.runtime_config import ReadinessTarget
from readiness.checks import Check, World, step_checks


def workloads_of(plan: Plan, targets: list[ReadinessTarget]) -> list[ReadinessTarget]:
    """The workloads the plan's match admits (all of them when it names none)."""
    named = plan.match.workloads
    return [t for t in targets if named is None or t.workload in named]


def _workload(world: World, plan: Plan, target: ReadinessTarget) -> dict[str, Any]:
    checks: list[Check] = []
    unchecked: list[str] = []
    if target.account_id:
        try:
            world.assume(target.account_id)
            checks.append(Check("member role", True, f"assumed in {target.account_id}"))
        except RecoveryError as exc:
            # Nothing else in that account can be read: the role's failure is the evidence.
            checks.append(Check("member role", False, f"cannot assume the member role in {target.account_id}: {exc}"))
            return _judged(target, checks, unchecked)
    for step in plan.steps:
        action, params, problems = resolve_step(step.action, step.params)
        found = None if problems else step_checks(world, target, action, params, plan.match.workloads is not None)
        if found is None:
            unchecked.append(action)
        else:
            checks.extend(found)
    return _judged(target, checks, unchecked)


def _judged(target: ReadinessTarget, checks: list[Check], unchecked: list[str]) -> dict[str, Any]:
    return {
        "workload": target.workload,
        "ready": all(c.ok for c in checks),
        "checks": [c.as_dict() for c in checks],
        "unchecked_steps": sorted(set(unchecked)),
    }


def evaluate(
    world: World, plans: list[Plan], targets: list[ReadinessTarget], disabled: set[str], at: datetime
) -> list[dict[str, Any]]:
    """A result per enabled plan: {plan, ready, checked_at, workloads: [...]}. A plan that
    matches no declared workload is ready with nothing checked (it says so)."""
    results = []
    for plan in plans:
        if plan.name in disabled:
            continue
        workloads = [_workload(world, plan, t) for t in workloads_of(plan, targets)]
        results.append(
            {
                "plan": plan.name,
                "ready": all(w["ready"] for w in workloads),
                "checked_at": at.isoformat(),
                "workloads": workloads,
            }
        )
    return results
