"""A sharded budget (core/budgets.py), decided without I/O: which of its shard items a taker
writes, and with what.

A budget of limit L is n shard items, shard i holding at most L // n units (+1 for i < L % n):
the caps add up to L, and each is enforced by its own conditional write, so the limit is exact
while a storm of takers spreads its writes over n items instead of one (issue 16). A taker reads
every shard and writes only those it takes units of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct

# The most shards a budget has: a budget of a smaller limit has one per unit. Its items are read
# with the rest of CheckGuardrails' budgets in one BatchGetItem (100 keys at most).
MAX_SHARDS = 32

Holders = dict[str, dict[str, Any]]


def shard_key(key: str, index: int) -> str:
    return f"{key}#{index}"


def caps(limit: int, shards: int) -> list[int]:
    """The units each shard may hold: `limit` spread over the shards (none when it is 0 or less)."""
    limit = max(0, limit)
    return [limit // shards + (1 if i < limit % shards else 0) for i in range(shards)]


def live(item: Mapping[str, Any] | None, now: int) -> Holders:
    """An item's holders that have not expired."""
    return {h: v for h, v in ((item or {}).get("holders") or {}).items() if int(v["expires"]) >= now}


def used(holders: Holders) -> int:
    return sum(int(v["units"]) for v in holders.values())


def merged(parts: list[Holders]) -> Holders:
    """One holding per holder across items: its units added, its instances joined, its latest
    expiry (a holding split across shards, read as the one it is)."""
    out: Holders = {}
    for holders in parts:
        for holder, value in holders.items():
            seen = out.setdefault(holder, {"units": 0, "expires": 0})
            for name, part in value.items():
                if name == "units":
                    seen["units"] += int(part)
                elif name == "expires":
                    seen["expires"] = max(int(seen["expires"]), int(part))
                elif name == "instances":
                    seen["instances"] = sorted({*seen.get("instances", []), *part})
                else:
                    seen[name] = part
    return out


class Placement(Struct, frozen=True):
    """Where a holding of `units` goes: {shard key: units} (None: no shard has room for them)."""

    parts: dict[str, int] | None


def place(
    shards: list[str], limit: int, others: Mapping[str, Holders], units: int, mine: list[str], start: int
) -> Placement:
    """The shards a holding of `units` takes: the shards it already holds first (they are written
    anyway), then those with room from `start` on (a hash: racing takers spread over the shards);
    units > 1 may be split across shards. `others`: each shard's live holders but this one's."""
    capped = zip(shards, caps(limit, len(shards)), strict=True)
    room = {key: max(0, cap - used(others.get(key, {}))) for key, cap in capped}
    if units > sum(room.values()):
        return Placement(None)
    rest = [key for key in shards if key not in mine and room[key]]
    order = [key for key in shards if key in mine] + (
        rest[start % len(rest) :] + rest[: start % len(rest)] if rest else []
    )
    parts: dict[str, int] = {}
    left = units
    for key in order:
        if left <= 0:
            break
        take = min(room[key], left)
        if take:
            parts[key] = take
            left -= take
    return Placement(parts)


def split(holding: dict[str, Any], parts: dict[str, int]) -> dict[str, dict[str, Any]]:
    """A holding cut into its shards' parts: each part its units and (a decided holding's) as many
    of its instances."""
    out: dict[str, dict[str, Any]] = {}
    instances = list(holding.get("instances") or [])
    start = 0
    last = list(parts)[-1] if parts else None
    for key, units in parts.items():
        part = {**holding, "units": units}
        if "instances" in holding:
            part["instances"] = instances[start:] if key == last else instances[start : start + units]
        start += units
        out[key] = part
    return out
