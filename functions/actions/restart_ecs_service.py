"""restart_ecs_service: UpdateService(forceNewDeployment=True) on the workload's ECS service, which
must carry the managed tag: ECS replaces every task with a fresh one of the same task definition.
(`restart_service` with kind "ecs" is this action: actions/registry.py, ALIASES.)

A Lambda must not wait minutes for a rollout, so the action returns once ECS started the
deployment and Verify waits for the service to be steady. Replaced tasks cannot be brought back:
the rollback is "irreversible" (it restores only a task definition changed since).

Design: docs/actions.md#restart_ecs_service
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import ecs
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.errors import ActionRefused, PermanentError, TransientError

NAME = "restart_ecs_service"


class Params(ActionParams, kw_only=True):
    kind: Literal["ecs"] = "ecs"
    # cluster and service default to the impairment's scope
    cluster: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    service: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    wait_for_stable: Annotated[
        bool, Meta(description="read the rollout once per attempt and retry until it completes")
    ] = False


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or {}
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    return _ecs_rollback(ctx, before)


def _deployments(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": d["id"],
            "status": d.get("status"),
            "task_definition": d.get("taskDefinition"),
            "rollout_state": d.get("rolloutState"),
        }
        for d in service.get("deployments", [])
    ]


def _primary(service: dict[str, Any]) -> dict[str, Any] | None:
    return next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)


def _ecs_state(service: dict[str, Any]) -> dict[str, Any]:
    primary = _primary(service) or {}
    return {
        "task_definition": service.get("taskDefinition"),
        "primary_deployment": primary.get("id"),
        "deployments": _deployments(service),
    }


def _ecs_apply(ctx: Context) -> ActionResult:
    client = aws.client("ecs", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        cluster, name = ecs.target(ctx.params.cluster, ctx.params.service, ctx.impairment.scope, NAME)
        service = ecs.managed_service(client, cluster, name, ctx.managed_tag)
        what = f"ECS service {service['serviceName']}"
        if service.get("status") != "ACTIVE":
            raise ActionRefused(f"{what} is {service.get('status')}: only an active service can be restarted")
        controller = service.get("deploymentController", {}).get("type", "ECS")
        if controller != "ECS":
            raise ActionRefused(f"{what} is deployed by {controller}: force a new deployment there")
        before = {
            "kind": "ecs",
            "cluster": cluster,
            "service": service["serviceName"],
            "service_arn": service["serviceArn"],
            "desired_count": service.get("desiredCount"),
            **_ecs_state(service),
        }
        ctx.record_before(before)
    else:
        service = ecs.describe_service(client, before["cluster"], before["service_arn"])
    recorded = {d["id"] for d in before["deployments"]}
    primary = _primary(service)
    label = before["service_arn"]
    if primary is not None and primary["id"] not in recorded:
        message = f"{before['service']}: new deployment {primary['id']} already started"
    else:
        verb = "would force" if ctx.dry_run else "forced"
        message = f"{before['service']}: {verb} a new deployment of {before['task_definition']}"
        if not ctx.dry_run:
            service = aws.call(
                client, "update_service", cluster=before["cluster"], service=label, forceNewDeployment=True
            )["service"]
            primary = _primary(service)
    if ctx.params.wait_for_stable and not ctx.dry_run:
        _require_stable(before["service"], service, primary)
        message += "; rollout completed"
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [label],
        before=before,
        after=_ecs_state(service),
        message=message,
    )


def _require_stable(name: str, service: dict[str, Any], primary: dict[str, Any] | None) -> None:
    """One look at the new deployment: done, failed (permanent) or still rolling out (transient)."""
    if primary is None:
        raise TransientError(f"ECS service {name}: no primary deployment yet")
    state = primary.get("rolloutState")
    if state == "FAILED":
        raise PermanentError(
            f"ECS service {name}: deployment {primary['id']} failed: {primary.get('rolloutStateReason', '')}"
        )
    steady = len(service.get("deployments", [])) == 1 and primary.get("runningCount") == primary.get("desiredCount")
    if state == "COMPLETED" or (state is None and steady):
        return
    raise TransientError(
        f"ECS service {name}: deployment {primary['id']} is still rolling out "
        f"({primary.get('runningCount', 0)} of {primary.get('desiredCount', 0)} tasks running)"
    )


def _ecs_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    client = aws.client("ecs", max_attempts=1, account=ctx.impairment.account_id)
    service = ecs.describe_service(client, before["cluster"], before["service_arn"])
    label, name = before["service_arn"], before["service"]
    current = _ecs_state(service)
    if current["task_definition"] != before["task_definition"]:
        if ctx.before is None:
            ctx.record_before(current)
        service = aws.call(
            client,
            "update_service",
            cluster=before["cluster"],
            service=label,
            taskDefinition=before["task_definition"],
        )["service"]
        return ctx.result(
            "rollback",
            "changed",
            [label],
            before=current,
            after=_ecs_state(service),
            message=f"{name}: restored task definition {before['task_definition']} (was {current['task_definition']})",
        )
    if ctx.before is not None:
        # A retry of this rollback finds the task definition it restored.
        return ctx.result(
            "rollback",
            "changed",
            [label],
            before=ctx.before,
            after=current,
            message=f"{name}: task definition {before['task_definition']} restored",
        )
    recorded = {d["id"] for d in before["deployments"]}
    if current["primary_deployment"] in recorded:
        return ctx.result(
            "rollback",
            "unchanged",
            [label],
            before=current,
            after=current,
            message=f"{name}: no new deployment was started; nothing to undo",
        )
    return ctx.result(
        "rollback",
        "irreversible",
        [label],
        before=current,
        after=current,
        message=f"{name}: a forced new deployment cannot be undone (the tasks it replaced are gone); the service "
        f"still runs task definition {before['task_definition']}",
    )


ACTION = Action(NAME, Params, _ecs_apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
