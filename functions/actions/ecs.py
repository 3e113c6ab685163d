"""ECS look-ups shared by the actions that act on a service (restart_ecs_service, scale_ecs_service,
provision_standby_ecs_service), and the rollback of the two that change its desired count."""

from __future__ import annotations

from typing import Any

from actions.base import ActionResult, Context
from core import aws
from core.errors import PermanentError
from core.reads import ecs as ecs_reads
from core.reads import tags
from core.reads.tags import require_managed


def target(cluster: str | None, service: str | None, scope: dict[str, str], what: str) -> tuple[str, str]:
    """The cluster and service a step acts on: from its params, else from the impairment's scope."""
    cluster = cluster or scope.get("ecs_cluster")
    service = service or scope.get("ecs_service")
    if not cluster or not service:
        raise PermanentError(
            f"{what} needs a cluster and a service: give cluster and service in the step's "
            "params, or ecs_cluster and ecs_service in the impairment's scope"
        )
    return cluster, service


def describe_service(client: Any, cluster: str, service: str) -> dict[str, Any]:
    found, why = ecs_reads.service(client, cluster, service)
    if found is None:
        raise PermanentError(f"ECS service {service!r} of cluster {cluster!r}: {why}")
    return found


def managed_service(client: Any, cluster: str, service: str, managed_tag: tuple[str, str]) -> dict[str, Any]:
    """The service as described now, if it opted in (the managed tag); else ActionRefused."""
    found = describe_service(client, cluster, service)
    require_managed(
        tags.of_ecs(client, found["serviceArn"]),
        managed_tag,
        "ECS service",
        found["serviceName"],
        service=found["serviceArn"],
    )
    return found


def service_state(service: dict[str, Any], desired_count: int) -> dict[str, Any]:
    """What a step records of a service it scales: which one, and its desired count."""
    return {k: service[k] for k in ("cluster", "service", "service_arn")} | {"desired_count": desired_count}


def restore_desired_count(ctx: Context) -> ActionResult:
    """Put the desired count recorded before back, unless someone else has changed it since the
    step set it (its result's, else the `target` it recorded before, for a step that failed
    waiting): then leave it."""
    applied = ctx.applied or {}
    before = applied.get("before") or ctx.before
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    client = aws.client("ecs", max_attempts=1, account=ctx.impairment.account_id)
    current = describe_service(client, before["cluster"], before["service_arn"])["desiredCount"]
    if ctx.before is None:  # the rollback's own state before, recorded before it changes anything
        ctx.record_before(service_state(before, current))
    previous = before["desired_count"]
    set_to = (applied.get("after") or {}).get("desired_count", before.get("target"))
    if current == previous:
        changed, message = False, "desired count already at its previous value"
    elif set_to is not None and current != set_to:
        changed, message = False, f"desired count is {current}, changed by someone else since; left as it is"
    else:
        aws.call(
            client, "update_service", cluster=before["cluster"], service=before["service_arn"], desiredCount=previous
        )
        changed, message = True, f"desired count restored to {previous}"
    return ctx.result(
        "rollback",
        "changed" if changed else "unchanged",
        [before["service_arn"]],
        before=service_state(before, current),
        after=service_state(before, previous if changed else current),
        message=f"{before['service']}: {message}",
    )
