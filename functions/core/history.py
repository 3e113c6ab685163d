"""Recent recoveries, for the flapping guardrail: one item per resource (FLAP#<resource key>) and
GROUP_SHARDS per group and kind of impairment (FLAP#group#<group>#<type>, then #1 and #2), sk
HISTORY, with `recovered#<impairment id>` = when it was resolved, for each recovery that verified.

Read with one BatchGetItem (a group's history: the union of its shards), in place of a Query of the
workload's records (O(n^2) in a storm); written in the transaction that ends a recovery
(store.finish), pruned of what was outside the window at its check; TTL: a window after the newest.
A group's shards: its recoveries finishing in one second each wrote its one item (issue 16); a
recovery writes the shard of its concurrency slot's index, and slots held at once are distinct: at
most ceil(max_concurrent / GROUP_SHARDS) write one shard at once (9 by default). Shard 0 keeps the
key of the version before the shards: what that version wrote is read as shard 0.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from core.dynamo import Table

RECOVERED = "recovered#"

# The items a group's history is spread over. Every check reads them all in CheckGuardrails' one
# BatchGetItem of at most 100 keys, with the budgets (91 keys with the default limits) and one per
# resource: 3 keep an impairment of up to six instances (fail open's drill) in one call.
GROUP_SHARDS = 3


def keys(impairment: Mapping[str, Any]) -> list[str]:
    """The history items an impairment is checked against: each of its resources', and every
    shard of its group's for its type (a replaced instance is a new resource: its group is what
    flaps)."""
    group = _group_key(impairment)
    return _resource_keys(impairment) + ([group_shard(group, i) for i in range(GROUP_SHARDS)] if group else [])


def noted_keys(impairment: Mapping[str, Any], slot: str | None) -> list[str]:
    """The history items a recovery that verified is noted in: each of its resources', and one
    shard of its group's, that of `slot` (the concurrency slot it holds, core/budgets.py), else
    one chosen by a hash of its id."""
    group = _group_key(impairment)
    return _resource_keys(impairment) + ([group_shard(group, shard(impairment, slot))] if group else [])


def shard(impairment: Mapping[str, Any], slot: str | None) -> int:
    """Which shard of its group's history a recovery writes: its concurrency slot's index (slots
    held at once are distinct, so are their indexes), else a hash of its id (the same at every
    replay of a drill)."""
    index = (slot or "").rpartition("#")[2]
    if index.isdigit():
        return int(index) % GROUP_SHARDS
    return zlib.crc32(str(impairment.get("impairment_id")).encode()) % GROUP_SHARDS


def group_shard(group_key: str, index: int) -> str:
    """Shard 0 is the group's item of the version before the shards (its key unchanged)."""
    return group_key if index == 0 else f"{group_key}#{index}"


def _resource_keys(impairment: Mapping[str, Any]) -> list[str]:
    resources = sorted({f"{r['resource_type']}/{r['resource_id']}" for r in impairment.get("affected_resources") or []})
    return [f"FLAP#{key}" for key in resources]


def _group_key(impairment: Mapping[str, Any]) -> str | None:
    group = (impairment.get("scope") or {}).get("auto_scaling_group")
    return f"FLAP#group#{group}#{impairment.get('impairment_type')}" if group else None


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
