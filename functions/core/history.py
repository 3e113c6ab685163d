"""Recent recoveries, for the flapping guardrail: one item per resource (FLAP#<resource key>) and
per group and kind of impairment (FLAP#group#<group>#<type>), sk HISTORY, with an attribute
`recovered#<impairment id>` = when it was resolved, for each recovery that verified.

Why: the guardrail asks "was this resource, or this group for this kind of impairment, recovered
too often lately?". Querying every record of the workload in the window answered it, but a storm
made that O(n^2) reads on one index partition. These items are read with one BatchGetItem, and
written in the transaction that ends a recovery (store.finish): an update of attributes of their
own, so no read first. What was already outside the window when the recovery was checked is
removed by that same write; the item expires (TTL) a window after its newest recovery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from core.dynamo import Table

RECOVERED = "recovered#"


def keys(impairment: Mapping[str, Any]) -> list[str]:
    """The history items an impairment is counted in (and checked against): each of its
    resources', and its group's for its type (a replaced instance is a new resource: its group is
    what flaps)."""
    resources = sorted({f"{r['resource_type']}/{r['resource_id']}" for r in impairment.get("affected_resources") or []})
    found = [f"FLAP#{key}" for key in resources]
    group = (impairment.get("scope") or {}).get("auto_scaling_group")
    if group:
        found.append(f"FLAP#group#{group}#{impairment.get('impairment_type')}")
    return found


def table_keys(item_keys: Iterable[str]) -> list[tuple[str, str]]:
    """The (pk, sk) of history items, for a read made together with others (CheckGuardrails')."""
    return [(k, "HISTORY") for k in item_keys]


def recoveries(items: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """{impairment id: resolved at} of the recoveries the items name (each once)."""
    found: dict[str, datetime] = {}
    for item in items:
        for name, at in item.items():
            if name.startswith(RECOVERED) and isinstance(at, str):
                found[name[len(RECOVERED) :]] = datetime.fromisoformat(at)
    return found


def stale(items: Mapping[str, Mapping[str, Any]], since: datetime) -> dict[str, list[str]]:
    """{item key: its attributes of recoveries resolved before `since`}: what the next write of
    each item removes."""
    out: dict[str, list[str]] = {}
    for key, item in items.items():
        old = sorted(RECOVERED + i for i, at in recoveries([item]).items() if at < since)
        if old:
            out[key] = old
    return out


class RecoveryHistory:
    def __init__(self, table: Table) -> None:
        self.table = table

    def read(self, item_keys: list[str]) -> dict[str, dict[str, Any]]:
        """The history items, by key (consistent reads, one BatchGetItem per 100)."""
        return self.table.get_many(table_keys(item_keys))

    def recovered_items(
        self,
        item_keys: list[str],
        impairment_id: str,
        resolved_at: datetime,
        keep_seconds: int,
        stale: Mapping[str, list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """A transaction's updates noting a recovery that verified in each of `item_keys`,
        removing the attributes `stale` names, kept `keep_seconds` after it."""
        items = []
        for key in item_keys:
            old = [n for n in (stale or {}).get(key, []) if n != RECOVERED + impairment_id]
            names = {"#r": RECOVERED + impairment_id, **{f"#s{i}": n for i, n in enumerate(old)}}
            remove = f" REMOVE {', '.join(f'#s{i}' for i in range(len(old)))}" if old else ""
            items.append(
                self.table.write(
                    "Update",
                    {"pk": key, "sk": "HISTORY"},
                    UpdateExpression=f"SET #r = :at, #e = :exp{remove}",
                    ExpressionAttributeNames={**names, "#e": "expiration"},
                    ExpressionAttributeValues={
                        ":at": resolved_at.isoformat(),
                        ":exp": int(resolved_at.timestamp()) + keep_seconds,
                    },
                )
            )
        return items
