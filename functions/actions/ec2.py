"""EC2 look-ups shared by the actions: instances by id, and Availability Zones by name or id."""

from __future__ import annotations

from typing import Any

from core import aws
from core.errors import PermanentError
from core.reads import zones

# An Availability Zone id ("use1-az2") names the same physical zone in every account; a zone name
# ("us-east-1a") is mapped per account.


def describe_instances(client: Any, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """instance id -> instance, for the ids that exist. A filter rather than InstanceIds, so an
    instance that is gone is simply absent instead of failing the whole call."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(instance_ids), 200):  # at most 200 values per filter
        batch = sorted(set(instance_ids[start : start + 200]))
        reservations = aws.items(
            client, "describe_instances", "Reservations", Filters=[{"Name": "instance-id", "Values": batch}]
        )
        for reservation in reservations:
            for instance in reservation.get("Instances", []):
                found[instance["InstanceId"]] = instance
    return found


def resolve_zone(client: Any, zone: str) -> dict[str, str]:
    """{"name": "us-east-1a", "id": "use1-az6"} for a zone given by name or by id."""
    found = zones.find(client, zone)
    if found is None:
        raise PermanentError(f"unknown Availability Zone {zone!r}", availability_zone=zone)
    return found
