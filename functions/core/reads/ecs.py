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
