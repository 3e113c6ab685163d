"""provision_standby_ecs_service: bring a standby region's ECS service up to `desired_count` (never
above `max_desired_count`) before traffic moves there; the step ends only when that many tasks run
and its deployment is COMPLETED (until then CapacityNotReady: the state machine asks again every
30 s for up to 10 minutes, no Lambda running in between, as for provision_standby_group). Rollback
restores the desired count recorded before, unless someone changed it since. It runs in the standby
region's stack: the impaired region is never called. Service and count default to the impairment's
scope (standby_ecs_cluster, standby_ecs_service, standby_ecs_desired_count). (`provision_backup`
with kind "standby_ecs_service" is this action: actions/registry.py, ALIASES.)

Design: docs/actions.md#provision_standby_ecs_service
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import ecs
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused, CapacityNotReady, PermanentError
from core.reads import ecs as ecs_reads

NAME = "provision_standby_ecs_service"


class Params(ActionParams, kw_only=True):
    kind: Literal["standby_ecs_service"] = "standby_ecs_service"
    cluster: Annotated[str, Meta(min_length=1, max_length=2048, description="default: the scope's")] | None = None
    service: Annotated[str, Meta(min_length=1, max_length=2048, description="default: the scope's")] | None = None
    desired_count: Annotated[int, Meta(ge=1, le=10000, description="default: the scope's")] | None = None
    max_desired_count: Annotated[int, Meta(ge=1, description="never set the desired count above this")] | None = None
    wait_until_in_service: Annotated[
        bool, Meta(description="end the step only when that many tasks run and the deployment is COMPLETED")
    ] = True


def apply(ctx: Context) -> ActionResult:
    client = aws.client("ecs", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before or _record_before(ctx, client)
    target = before["target"]
    current = ecs.describe_service(client, before["cluster"], before["service_arn"])["desiredCount"]
    if current < target and not ctx.dry_run:
        aws.call(
            client, "update_service", cluster=before["cluster"], service=before["service_arn"], desiredCount=target
        )
    if ctx.params.wait_until_in_service and not ctx.dry_run:
        _require_steady(client, before, target)
    limits = before.get("limited_by") or []
    return ctx.result(
        "apply",
        # This step's change: made now, or by an earlier attempt that then waited for the tasks.
        result_of(ctx, before["desired_count"] < target),
        [before["service_arn"]],
        before=before,
        after=ecs.service_state(before, current if ctx.dry_run else max(current, target)),
        message=f"{before['service']}: desired count {before['desired_count']} -> {target}"
        + (f" (limited by {', '.join(limits)})" if limits else ""),
    )


def _record_before(ctx: Context, client: Any) -> dict[str, Any]:
    """The standby service as found, and the count this step brings it to (recorded before
    anything changes, so a retry after a wait, and the rollback, know both)."""
    cluster, name, wanted = _standby_target(ctx)
    service = ecs.managed_service(client, cluster, name, ctx.managed_tag)
    if service.get("status") != "ACTIVE":
        raise ActionRefused(f"ECS service {service['serviceName']} is {service.get('status')}: it cannot be scaled")
    before = {"cluster": cluster, "service": service["serviceName"], "service_arn": service["serviceArn"]}
    before = ecs.service_state(before, service["desiredCount"])
    bound = ctx.params.max_desired_count
    before["target"] = max(before["desired_count"], min(wanted, bound or wanted))
    before["limited_by"] = [f"max_desired_count {bound}"] if bound and wanted > bound else []
    ctx.record_before(before)
    return before


def _standby_target(ctx: Context) -> tuple[str, str, int]:
    """The standby service and its desired count: the step's, else the impairment's scope's."""
    scope = ctx.impairment.scope
    cluster = ctx.params.cluster or scope.get("standby_ecs_cluster")
    name = ctx.params.service or scope.get("standby_ecs_service")
    wanted = ctx.params.desired_count
    if wanted is None and scope.get("standby_ecs_desired_count", "").isdigit():
        wanted = int(scope["standby_ecs_desired_count"])
    if not cluster or not name or not wanted:
        raise PermanentError(
            "kind standby_ecs_service needs cluster, service and desired_count (in the step, or the impairment's"
            " scope standby_ecs_cluster, standby_ecs_service and standby_ecs_desired_count)",
            impairment=ctx.impairment.impairment_id,
        )
    return cluster, name, wanted


def _require_steady(client: Any, before: dict[str, Any], target: int) -> None:
    """Raise CapacityNotReady until the service runs `target` tasks and is steady."""
    steady = ecs_reads.steadiness(ecs.describe_service(client, before["cluster"], before["service_arn"]))
    if not steady["passed"] or steady["running"] < target:
        raise CapacityNotReady(
            f"{before['service']}: {steady['running']} of {target} tasks running, deployment "
            f"{steady['rollout_state']}; waiting for the rest before the plan goes on",
            service=before["service_arn"],
            running=steady["running"],
            target=target,
            rollout_state=steady["rollout_state"],
        )


def rollback(ctx: Context) -> ActionResult:
    """Put the standby's desired count back, unless someone else has changed it since: then leave it."""
    return ecs.restore_desired_count(ctx)


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after the step (its Verification in actions/registry.py), in the standby
    region: the standby service runs its desired count (at least what the step set) and is steady."""
    after = (applied or {}).get("after") or {}
    if not after.get("service_arn"):
        return []  # the step recorded no service: nothing of its own to check
    client = aws.client("ecs", max_attempts=1, account=impairment.account_id)
    steady = ecs_reads.steadiness(ecs.describe_service(client, after["cluster"], after["service_arn"]))
    wanted = after["desired_count"]
    return [
        {"check": "standby_ecs_service", "service": after["service"]}
        | steady
        | {"passed": steady["passed"] and steady["running"] >= wanted, "scaled_to": wanted}
    ]


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
