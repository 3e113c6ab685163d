"""Writes per DynamoDB item (pk, sk), in all and within each second of the emulated clock: what
shows a hot item (issue 16). DynamoDB serves one item from one partition, whose writes are capped
(1,000 write units a second); an item every recovery of a storm writes caps the storm's rate.

A write is a request that may change the item: PutItem, UpdateItem, DeleteItem, a batch's put or
delete, a transaction's Put, Update or Delete, counted when requested (a failed condition costs
the partition a write too). A transaction's ConditionCheck changes nothing: it is counted apart, as
a check. The emulator's API calls take no virtual time, so every write a burst makes between two
waits falls in one emulated second: the per-second figure is a burst's bound, not a rate.

Design: docs/performance.md#4-event-storm
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

_WRITES = ("Put", "Update", "Delete")


@dataclass
class ItemWrites:
    """Install a clock (`clock`: emulated seconds now) and `record` each DynamoDB call."""

    clock: Callable[[], float] = lambda: 0.0
    writes: Counter = field(default_factory=Counter)  # "pk / sk" -> writes
    by_second: Counter = field(default_factory=Counter)  # ("pk / sk", second) -> writes
    checks: Counter = field(default_factory=Counter)  # "pk / sk" -> transactions' condition checks

    def record(self, operation: str, params: Mapping[str, Any]) -> None:
        second = int(self.clock())
        for kind, item in _touched(operation, params):
            name = _name(item)
            if kind == "ConditionCheck":
                self.checks[name] += 1
                continue
            self.writes[name] += 1
            self.by_second[(name, second)] += 1

    def summary(self, recoveries: int = 0, top: int = 5) -> dict[str, Any]:
        """The most written items, each with its writes, its most in one emulated second and (given
        `recoveries`) its writes per recovery; the most checked item."""
        peak: dict[str, int] = {}
        for (name, _), count in self.by_second.items():
            peak[name] = max(peak.get(name, 0), count)
        ranked = sorted(self.writes, key=lambda n: (-peak[n], -self.writes[n], n))[:top]
        items = [
            {
                "item": name,
                "writes": self.writes[name],
                "max_per_second": peak[name],
                "per_recovery": round(self.writes[name] / recoveries, 2) if recoveries else None,
            }
            for name in ranked
        ]
        checked = max(self.checks, key=lambda n: (self.checks[n], n), default=None)
        return {
            "dynamodb_items_written": len(self.writes),
            "dynamodb_max_item_writes": max(self.writes.values(), default=0),
            "dynamodb_max_item_writes_per_second": max(peak.values(), default=0),
            "dynamodb_hot_items": items,
            "dynamodb_most_checked_item": {"item": checked, "checks": self.checks[checked]} if checked else None,
        }


def _touched(operation: str, params: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(kind, key or item) of each item a call writes or checks."""
    if operation == "PutItem":
        yield "Put", params.get("Item") or {}
    elif operation in ("UpdateItem", "DeleteItem"):
        yield operation[: -len("Item")], params.get("Key") or {}
    elif operation == "BatchWriteItem":
        for requests in (params.get("RequestItems") or {}).values():
            for request in requests:
                if "PutRequest" in request:
                    yield "Put", request["PutRequest"].get("Item") or {}
                else:
                    yield "Delete", (request.get("DeleteRequest") or {}).get("Key") or {}
    elif operation == "TransactWriteItems":
        for entry in params.get("TransactItems") or []:
            for kind, body in entry.items():
                if kind in _WRITES:
                    yield kind, body.get("Item") or body.get("Key") or {}
                elif kind == "ConditionCheck":
                    yield kind, body.get("Key") or {}


def _name(item: Mapping[str, Any]) -> str:
    return f"{_plain(item.get('pk'))} / {_plain(item.get('sk'))}"


def _plain(value: Any) -> str:
    """A key attribute, typed ({"S": ...}, the client's) or plain (the resource's)."""
    if isinstance(value, Mapping):
        return str(next(iter(value.values()), ""))
    return str(value)
