"""One ECS service (ecs:DescribeServices), for the actions on it and for Verify."""

from __future__ import annotations

from typing import Any

from core import aws


def service(client: Any, cluster: str, name: str) -> tuple[dict[str, Any] | None, str]:
    """The service as ECS describes it, or None with why (ECS lists a service it does not find
    under `failures`, with a reason such as MISSING, rather than failing the call)."""
    response = aws.call(client, "describe_services", cluster=cluster, services=[name])
    if response.get("services"):
        return response["services"][0], ""
    return None, ", ".join(f.get("reason", "?") for f in response.get("failures", [])) or "not found"


def steadiness(service: dict[str, Any]) -> dict[str, Any]:
    """Whether a described service is steady: it runs its desired count and its newest (PRIMARY)
    deployment is COMPLETED (not IN_PROGRESS, nor FAILED by the deployment circuit breaker). A
    deployment without a rolloutState (no circuit breaker, an older API) counts as completed."""
    primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {})
    rollout = primary.get("rolloutState", "COMPLETED")
    running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
    return {
        "passed": running >= desired and rollout == "COMPLETED",
        "running": running,
        "desired": desired,
        "rollout_state": rollout,
    }
