"""Public on-demand prices (US East, N. Virginia; no free tier, no Savings Plans) and the cost
arithmetic of one measured run. Sources are cited in docs/performance.md."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

STEP_FUNCTIONS_PER_TRANSITION = 0.025 / 1_000  # Standard workflows; retries count as transitions
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_SECOND = 0.0000166667  # x86, first 6 billion GB-seconds a month
EVENTBRIDGE_PER_CUSTOM_EVENT = 1.00 / 1_000_000  # each 64 KB chunk of a custom event; AWS service events are free
DYNAMODB_PER_WRITE_UNIT = 0.625 / 1_000_000  # on-demand write request unit (1 KB standard write)
DYNAMODB_PER_READ_UNIT = 0.125 / 1_000_000  # on-demand read request unit (4 KB strongly consistent read)

PRICES = {
    "step_functions_per_1000_transitions": 0.025,
    "lambda_per_million_requests": 0.20,
    "lambda_per_gb_second": LAMBDA_PER_GB_SECOND,
    "eventbridge_per_million_custom_events": 1.00,
    "dynamodb_per_million_write_request_units": 0.625,
    "dynamodb_per_million_read_request_units": 0.125,
    "region": "us-east-1",
}


def billed_milliseconds(seconds: float) -> int:
    """Lambda bills duration rounded up to the next millisecond (at least 1 ms)."""
    return max(1, math.ceil(seconds * 1000 - 1e-9))


def lambda_cost(durations_by_memory: Mapping[int, list[float]]) -> dict[str, float]:
    """Requests and GB-seconds of invocations, given their measured durations (seconds) by the
    function's memory size (MB)."""
    requests = sum(len(v) for v in durations_by_memory.values())
    gb_seconds = sum(
        memory / 1024 * billed_milliseconds(d) / 1000 for memory, values in durations_by_memory.items() for d in values
    )
    return {
        "requests": requests,
        "gb_seconds": gb_seconds,
        "dollars": requests * LAMBDA_PER_REQUEST + gb_seconds * LAMBDA_PER_GB_SECOND,
    }


def estimate(
    *,
    transitions: int,
    durations_by_memory: Mapping[int, list[float]],
    custom_events: int,
    write_units: float,
    read_units: float = 0.0,
) -> dict[str, Any]:
    """The dollars of one run, by service, and their total."""
    lam = lambda_cost(durations_by_memory)
    parts = {
        "step_functions": transitions * STEP_FUNCTIONS_PER_TRANSITION,
        "lambda": lam["dollars"],
        "eventbridge": custom_events * EVENTBRIDGE_PER_CUSTOM_EVENT,
        "dynamodb": write_units * DYNAMODB_PER_WRITE_UNIT + read_units * DYNAMODB_PER_READ_UNIT,
    }
    return {
        "by_service": parts,
        "lambda_gb_seconds": lam["gb_seconds"],
        "total": sum(parts.values()),
    }


def write_units(operation: str, params: Mapping[str, Any]) -> float:
    """Write request units of one DynamoDB call: 1 per started KB of each item written (its size
    estimated from the request, as the item after the write is unknown here), doubled inside a
    transaction. UpdateItem and DeleteItem count 1 per item (a lower bound: DynamoDB bills the
    larger of the item before and after)."""
    if operation == "PutItem":
        return _item_units(params.get("Item"))
    if operation in ("UpdateItem", "DeleteItem"):
        return 1.0
    if operation == "BatchWriteItem":
        units = 0.0
        for requests in (params.get("RequestItems") or {}).values():
            for request in requests:
                put = request.get("PutRequest")
                units += _item_units(put.get("Item")) if put else 1.0
        return units
    if operation == "TransactWriteItems":
        units = 0.0
        for item in params.get("TransactItems") or []:
            put = item.get("Put")
            units += 2 * (_item_units(put.get("Item")) if put else 1.0)
        return units
    return 0.0


def read_units(operation: str, params: Mapping[str, Any], items_returned: int | None = None) -> float:
    """Read request units of one DynamoDB call, assuming items under 4 KB: a GetItem is 1 when
    strongly consistent and 0.5 otherwise; a Query or Scan at least one unit (more items are
    counted 0.5 each as a rough size proxy); TransactGetItems 2 per item."""
    consistent = bool(params.get("ConsistentRead"))
    if operation == "GetItem":
        return 1.0 if consistent else 0.5
    if operation in ("Query", "Scan"):
        return max(1.0, 0.5 * (items_returned or 0))
    if operation == "BatchGetItem":
        keys = sum(len(v.get("Keys", [])) for v in (params.get("RequestItems") or {}).values())
        return 0.5 * keys
    if operation == "TransactGetItems":
        return 2.0 * len(params.get("TransactItems") or [])
    return 0.0


def _item_units(item: Any) -> float:
    if not item:
        return 1.0
    return float(max(1, math.ceil(_size(item) / 1024)))


def _size(value: Any) -> int:
    """An item's size as DynamoDB counts it, roughly: names plus values in bytes."""
    if isinstance(value, Mapping):
        # A typed attribute value ({"S": "x"}) counts as its content.
        if len(value) == 1 and next(iter(value)) in ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"):
            return _size(next(iter(value.values())))
        return sum(len(str(k).encode()) + _size(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(_size(v) for v in value)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 1
    return len(str(value).encode())
