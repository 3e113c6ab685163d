"""Each plan judged against each workload it may act on: ready when every check of every step
holds, in every one of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actions.plans import resolve_step
from core.errors import RecoveryError
from core.plans import Plan
from core.runtime_config import ReadinessTarget
from readiness.checks import DEFAULT_MANAGED_TAG, Check, World, step_checks
from readiness.permissions import NAME as PERMISSIONS


def workloads_of(plan: Plan, targets: list[ReadinessTarget]) -> list[ReadinessTarget]:
    """The workloads the plan's match admits (all of them when it names none), of those whose
    impairments may carry the scope key it needs (match.scope_has), when that is known."""
    named, needs = plan.match.workloads, plan.match.scope_has
    return [
        t
        for t in targets
        if (named is None or t.workload in named) and (needs is None or t.scope_keys is None or needs in t.scope_keys)
    ]


def _workload(world: World, plan: Plan, target: ReadinessTarget, managed_tag: tuple[str, str]) -> dict[str, Any]:
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
        if step.when_scope_has and target.scope_keys is not None and step.when_scope_has not in target.scope_keys:
            continue  # skipped for this workload's impairments (Admit records why with the plan): nothing to judge
        action, params, problems = resolve_step(step.action, step.params)
        named = plan.match.workloads is not None
        found = None if problems else step_checks(world, target, action, params, named, managed_tag)
        # Unchecked: nothing of what the step acts on is checked (its permissions may be).
        if found is None or all(c.name == PERMISSIONS for c in found):
            unchecked.append(action)
        checks.extend(found or [])
    return _judged(target, checks, unchecked)


def _judged(target: ReadinessTarget, checks: list[Check], unchecked: list[str]) -> dict[str, Any]:
    made = [c for c in checks if c.checked]
    judged = {
        "workload": target.workload,
        "ready": all(c.ok for c in made),
        "checks": [c.as_dict() for c in made],
        "unchecked_steps": sorted(set(unchecked)),
    }
    # What could not be checked here is said, and counts neither way.
    not_checked = list(dict.fromkeys(f"{c.name}: {c.evidence}" for c in checks if not c.checked))
    return {**judged, "not_checked": not_checked} if not_checked else judged


def evaluate(
    world: World,
    plans: list[Plan],
    targets: list[ReadinessTarget],
    disabled: set[str],
    at: datetime,
    managed_tag: tuple[str, str] = DEFAULT_MANAGED_TAG,
) -> list[dict[str, Any]]:
    """A result per enabled plan: {plan, ready, checked_at, workloads: [...]}. A plan that
    matches no declared workload is ready with nothing checked (it says so). `managed_tag` is the
    tag the permissions are simulated with, as on a resource that opted in."""
    results = []
    for plan in plans:
        if plan.name in disabled:
            continue
        workloads = [_workload(world, plan, t, managed_tag) for t in workloads_of(plan, targets)]
        results.append(
            {
                "plan": plan.name,
                "ready": all(w["ready"] for w in workloads),
                "checked_at": at.isoformat(),
                "workloads": workloads,
            }
        )
    return results
