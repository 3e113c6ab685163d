"""CheckGuardrails' blocking check (core/blocking.py decides): the conditions read for what the
impairment touches, recorded on the impairment (`blocked_by`, `blocking`) whenever they block
or stop blocking, and the verdict: wait (the workflow's Wait loops back to CheckGuardrails,
holding the locks Admit took for the longest wait), act, or escalate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actions import autoscaling as asg
from core import aws, blocking
from core.contract import ImpairmentDetected, ImpairmentType
from core.observability import logger, metrics


def check(
    store: Any,
    impairment: ImpairmentDetected,
    plan: dict[str, Any],
    default: blocking.Blocking,
    previous: Any,
    now: Any,
    groups_of: Callable[[], dict[str, str]] | None = None,
) -> blocking.Verdict:
    """The verdict of the blocking conditions for this recovery (reads; records on the
    impairment what blocked it). `previous`: the guardrails summary of the checks before;
    `groups_of`: the impaired instances' groups as the caller looks them up (once, for its own
    use too), else looked up here."""
    settings = blocking.of(plan, default)
    if impairment.impairment_type is ImpairmentType.REGION_IMPAIRMENT:
        return blocking.Verdict()  # its region is down: waiting on it helps nothing
    service = (impairment.scope["ecs_cluster"], impairment.scope["ecs_service"]) if _has_service(impairment) else None
    found = blocking.conditions(settings, _groups(impairment, settings, groups_of), service, impairment.account_id)
    before = (previous or {}).get("blocking")
    verdict = blocking.decide(found, settings, before, now)
    if verdict.record and verdict.record != before:
        record = verdict.record
        store.update_impairment(impairment.impairment_id, blocked_by=record["blocked_by"], blocking=record)
    if found and not (before and not before.get("outcome")):
        metrics.add_metric(name="RecoveryBlocked", unit="Count", value=1)
    if found:
        logger.warning("recovery blocked", blocked_by=[c["reason"] for c in found], verdict=verdict.wait_seconds)
    return verdict


def waiting(event: dict[str, Any], previous: Any, verdict: blocking.Verdict) -> dict[str, Any]:
    """The execution state of a recovery that waits: the guardrails summary of before, with
    what blocks it and how long to wait (the workflow's Choice reads guardrails.blocked)."""
    summary = {**(previous or {}), "blocking": verdict.record, "blocked": {"wait_seconds": verdict.wait_seconds}}
    return {**event, "guardrails": summary}


def _has_service(impairment: ImpairmentDetected) -> bool:
    return bool(impairment.scope.get("ecs_cluster") and impairment.scope.get("ecs_service"))


def _groups(
    impairment: ImpairmentDetected, settings: blocking.Blocking, groups_of: Callable[[], dict[str, str]] | None = None
) -> list[str]:
    """The Auto Scaling groups the impairment touches: named in its resources, and its
    instances' as `groups_of` finds them; without `groups_of`, named in its scope or resources,
    else those of its instances (one DescribeAutoScalingInstances, only then)."""
    if not settings.instance_refresh:
        return []
    named = [r.resource_id for r in impairment.affected_resources if r.resource_type == "autoscaling:group"]
    instances = asg.impaired_instances(impairment)
    if groups_of is not None and instances:
        found = set(groups_of().values())
        scoped = impairment.scope.get("auto_scaling_group")
        return sorted({*named, *found, *([scoped] if scoped and not found else [])})
    if impairment.scope.get("auto_scaling_group"):
        named.append(impairment.scope["auto_scaling_group"])
    if named or not instances:
        return sorted(set(named))
    client = aws.client("autoscaling", max_attempts=1, account=impairment.account_id)
    return sorted(set(asg.groups_of_instances(client, instances).values()))
