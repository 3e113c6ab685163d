"""Availability Zones by name or by id (ec2:DescribeAvailabilityZones): scopes, alarms and plans
name a zone either way (us-east-1a, or use1-az2, which is the same place in every account)."""

from __future__ import annotations

import re
from typing import Any

from core import aws
from core.errors import PermanentError

ZONE_ID = re.compile(r"^[a-z]{2,5}\d+-az\d+$")
_UNKNOWN = ("InvalidParameterValue", "InvalidAvailabilityZone")


def is_zone_id(zone: str) -> bool:
    return bool(ZONE_ID.match(zone))


def find(client: Any, zone: str) -> dict[str, str] | None:
    """{"name": "us-east-1a", "id": "use1-az6"} of a zone given by either, or None when EC2 knows
    no such zone in this region (EC2 answers an unknown name or id with an error, not an empty list)."""
    key = "ZoneIds" if is_zone_id(zone) else "ZoneNames"
    try:
        zones = aws.call(client, "describe_availability_zones", **{key: [zone]}).get("AvailabilityZones", [])
    except PermanentError as error:
        if error.details.get("code") in _UNKNOWN:
            return None
        raise
    return {"name": zones[0]["ZoneName"], "id": zones[0]["ZoneId"]} if zones else None
