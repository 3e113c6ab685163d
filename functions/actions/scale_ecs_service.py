"""scale_ecs_service: raise an ECS service's desired count by a bounded amount, as scale_out does for
an Auto Scaling group, and give the extra tasks back after a recovery that held (unless `keep`).
Rollback restores the desired count recorded before, unless someone changed it since.

Design: docs/actions.md#scale_ecs_service
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from actions import ecs
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused
from core.reads import ecs as ecs_reads

NAME = "scale_ecs_service"


class Params(ActionParams, kw_only=True):
    cluster: Annotated[str, Meta(min_length=1, max_length=2048, description="default: the scope's")] | None = None
    service: Annotated[str, Meta(min_length=1, max_length=2048, description="default: the scope's")] | None = None
    increment: Annotated[int, Meta(ge=1, le=100, description="tasks to add")] = 1
    max_desired_count: Annotated[int, Meta(ge=1, description="never set the desired count above this")] | None = None
    # The extra tasks go back once the workload has stayed healthy this long after the recovery
    # (the workflow waits, checks health, then runs this action's rollback)...
    return_after_seconds: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600
    # ...unless the plan keeps them.
    keep: bool = False


def apply(ctx: Context) -> ActionResult:
    client = aws.client("ecs", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before or _record_before(ctx, client)
    wanted = before["desired_count"] + ctx.params.increment
    limit = ctx.params.max_desired_count or wanted
    target = max(before["desired_count"], min(wanted, limit))
    current = ecs.describe_service(client, before["cluster"], before["service_arn"])["desiredCount"]
    changed = current < target
    if changed and not ctx.dry_run:
        aws.call(
            client, "update_service", cluster=before["cluster"], service=before["service_arn"], desiredCount=target
        )
    capped = f" (capped at {limit})" if target < wanted else ""
    return ctx.result(
        "apply",
        result_of(ctx, changed),
        [before["service_arn"]],
        before=before,
        after=_state(before, current if ctx.dry_run else max(current, target)),
        message=f"{before['service']}: desired count {before['desired_count']} -> {target}{capped}",
    )


def _record_before(ctx: Context, client: Any) -> dict[str, Any]:
    cluster, name = ecs.target(ctx.params.cluster, ctx.params.service, ctx.impairment.scope, NAME)
    service = ecs.managed_service(client, cluster, name, ctx.managed_tag)
    if service.get("status") != "ACTIVE":
        raise ActionRefused(f"ECS service {service['serviceName']} is {service.get('status')}: it cannot be scaled")
    before = {"cluster": cluster, "service": service["serviceName"], "service_arn": service["serviceArn"]}
    before = _state(before, service["desiredCount"])
    ctx.record_before(before)
    return before


def rollback(ctx: Context) -> ActionResult:
    """Put the desired count back, unless someone else has changed it since: then leave it."""
    return ecs.restore_desired_count(ctx)


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after the step (its Verification in actions/registry.py), and what
    ReturnCapacity checks before it gives the tasks back: the service runs the desired count the
    step set (the count it found, if it changed nothing), and is steady (it runs its desired
    count, its deployment COMPLETED: not one that failed), whether or not the impairment's scope
    names it."""
    after = (applied or {}).get("after") or {}
    if not after.get("service_arn"):
        return []  # the step recorded no service: nothing of its own to check
    client = aws.client("ecs", max_attempts=1, account=impairment.account_id)
    service = ecs.describe_service(client, after["cluster"], after["service_arn"])
    steady, wanted = ecs_reads.steadiness(service), after["desired_count"]
    return [
        {"check": "ecs_desired_count", "service": after["service"]}
        | steady
        | {"passed": steady["passed"] and steady["running"] >= wanted, "scaled_to": wanted}
    ]


_state = ecs.service_state


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
