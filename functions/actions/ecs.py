"""ECS look-ups shared by the actions that act on a service (restart_ecs_service, scale_ecs_service)."""

from __future__ import annotations

from typing import Any

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
