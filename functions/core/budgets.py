"""The guardrails' counters (rate limits, concurrency, blast radius): items holding who took how
many units until when, each written only as it was read (a version).

A counted budget is sharded (core/shards.py): min(limit, MAX_SHARDS) items BUDGET#<name>#<i>, a
taker writing only the shard(s) it takes units of, so a storm spreads its writes and the limit
stays exact. A decided claim may name units held in one more item (`serial_key`: the blast
radius' healthy floor), which serializes their takers. The concurrency cap is slotted: one item
per unit, held by one impairment. LEGACY: the single item of the version before shards
(BUDGET#<name>) is read and counted until it expires; drop its read in a later release.

Design: docs/safety.md#budgets-in-the-table"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from msgspec import Struct, field

from core import shards
from core.dynamo import ATTEMPTS, ConditionFailed, Table, now_epoch, to_attribute_values
from core.errors import TransientError
from core.shards import MAX_SHARDS, shard_key

__all__ = ["CONCURRENCY_BUDGET", "MAX_SHARDS", "SERIAL", "Budgets", "Claim", "Read", "Taken", "slot_key"]

CONCURRENCY_BUDGET = "BUDGET#concurrency"

# The key of a decided claim's detail naming the units its `serial_key` item holds (the blast
# radius: the healthy instances acted on), written there, not in the shards.
SERIAL = "serial"


class Claim(Struct, frozen=True):
    """Units of a budget one recovery takes: `key` names the budget, `limit` its capacity,
    `expires_at` (epoch seconds) when the units stop counting.

    `decide`, when given, makes the claim depend on what the others hold (the blast radius: which
    of a group's instances may be acted on, given those others act on). It is called with the
    live holders but this recovery's own (one holding each, across the shards), at every attempt,
    and returns the units and detail to hold (0 units: hold nothing), or None when the claim is
    exceeded. The decision and the write are one atomic step: every item written is conditioned
    on being as it was read. The detail's SERIAL entry (a list), when not empty, is held in the
    `serial_key` item instead: every taker of such units writes that one item."""

    name: str
    key: str
    limit: int
    units: int
    expires_at: int
    detail: dict[str, Any] = field(default_factory=dict)
    decide: Callable[[dict[str, dict[str, Any]]], tuple[int, dict[str, Any]] | None] | None = None
    # one item per unit (slot_key(key, i)), for a budget taken and given back by every recovery
    slotted: bool = False
    # the shard items (0: min(limit, MAX_SHARDS)); fixed when the limit is not known before the
    # first read (the blast radius' depends on the group's size)
    shards: int = 0
    serial_key: str | None = None

    def __post_init__(self) -> None:
        if self.slotted and (self.units != 1 or self.decide is not None):
            raise ValueError("a slotted budget is taken one unit at a time, undecided")

    def shard_keys(self) -> list[str]:
        return [shard_key(self.key, i) for i in range(self.shards or max(1, min(self.limit, MAX_SHARDS)))]

    def items_read(self) -> list[tuple[str, str]]:
        """The items this claim reads: its slots, or its shards, the budget's item of the previous
        version (LEGACY) and its serial item."""
        if self.slotted:
            return [(slot_key(self.key, i), "BUDGET") for i in range(self.limit)]
        serial = [(self.serial_key, "BUDGET")] if self.serial_key else []
        return [(key, "BUDGET") for key in self.shard_keys()] + [(self.key, "BUDGET")] + serial


def slot_key(key: str, index: int) -> str:
    return shard_key(key, index)


class Taken(Struct, frozen=True):
    """What Budgets.take did: the claims that would exceed their limit (nothing was taken then:
    empty when every claim was taken), the slot this impairment holds of each slotted budget
    ({budget key: slot key}) and the items it holds units of of each other budget ({budget key:
    [item key]}, as written, or as read when nothing was taken): for their release."""

    exceeded: list[dict[str, Any]]
    slots: dict[str, str] = field(default_factory=dict)
    held: dict[str, list[str]] = field(default_factory=dict)


class Read(Struct, frozen=True):
    """Items already read with one BatchGetItem: the (pk, sk) asked for, and those found by pk
    (Table.get_many); a key asked for and not found does not exist."""

    keys: frozenset[tuple[str, str]]
    items: dict[str, dict[str, Any]]


# A transaction's item noting the slots an impairment newly holds (on its record: every end path
# that releases them reads it), given {budget key: slot key}.
SlotNote = Callable[[dict[str, str]], dict[str, Any]]


class _Attempt(Struct):
    """One attempt's outcome so far: what exceeds, what is written, what is held."""

    exceeded: list[dict[str, Any]] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)
    taking: dict[str, str] = field(default_factory=dict)
    held: dict[str, list[str]] = field(default_factory=dict)


class Budgets:
    def __init__(self, table: Table) -> None:
        self.table = table

    def take(
        self, impairment_id: str, claims: list[Claim], note: SlotNote | None = None, read: Read | None = None
    ) -> Taken:
        """Take units of several budgets for this impairment, all or nothing, atomically.

        Expired holders no longer count. Returns the claims that would exceed their limit
        (nothing is taken then), or none when every claim was taken, with the slots and items
        held. Re-entrant: an impairment that already holds a counted budget (units in any shard,
        a slot) keeps them (a retried task does not count twice); a decided claim is decided
        again (its holding may shrink). Every item written is conditioned on its version as read
        (a slot: on being free), in one transaction with `note` of the slots newly taken: a
        concurrent taker makes the transaction fail, and the claims are read and decided again,
        so no limit is ever decided on a stale read. After a few lost races the error is
        transient (the state machine retries with backoff and jitter). `read`: items the caller
        read already (Read), used for the first attempt (a stale one only costs a lost race),
        unless it shows a budget nearly spent by a burst of takers (_contended): read again then,
        right before writing."""
        for attempt in range(ATTEMPTS):
            now = now_epoch()
            needed = [k for c in claims for k in c.items_read()]
            if attempt == 0 and read is not None and not _contended(claims, impairment_id, read, now):
                items = {**read.items, **self.table.get_many([k for k in needed if k not in read.keys])}
            else:
                items = self.table.get_many(needed)
            done = _Attempt()
            for claim in claims:
                if claim.slotted:
                    self._slotted(claim, impairment_id, items, now, attempt, done)
                else:
                    self._sharded(claim, impairment_id, items, now, attempt, done)
            if done.exceeded:
                return Taken(done.exceeded, held=done.held)
            if done.taking and note is not None:
                done.writes.append(note(done.slots))
            if not done.writes:
                return Taken([], done.slots, done.held)
            try:
                self.table.transact(done.writes)
                return Taken([], done.slots, done.held)
            except ConditionFailed:
                pass
        raise TransientError("budgets are contended: retry", operation="dynamodb:TransactWriteItems")

    def spent(self, impairment_id: str, claims: list[Claim], read: Read) -> list[dict[str, Any]]:
        """No call: the claims (undecided ones) that `read` shows already spent, as take would
        find them on its first attempt from the same read (which then stops, writing nothing).
        Empty when each has room or this impairment already holds its units."""
        done = _Attempt()
        for claim in claims:
            if claim.decide is not None or any(k not in read.keys for k in claim.items_read()):
                continue  # decided by what others act on, or not read: only take knows
            if claim.slotted:
                self._slotted(claim, impairment_id, read.items, now_epoch(), 0, done)
            else:
                self._sharded(claim, impairment_id, read.items, now_epoch(), 0, done)
        return done.exceeded

    def _slotted(
        self, claim: Claim, impairment_id: str, items: dict[str, dict[str, Any]], now: int, attempt: int, done: _Attempt
    ) -> None:
        slot, taken, over = self._slot(claim, impairment_id, items, now, attempt)
        if over:
            done.exceeded.append(over)
        elif slot:
            done.slots[claim.key] = slot
        if taken:
            done.taking[claim.key] = slot
            done.writes.append(taken)

    def _sharded(
        self, claim: Claim, impairment_id: str, items: dict[str, dict[str, Any]], now: int, attempt: int, done: _Attempt
    ) -> None:
        """A counted or decided claim over its shards: what this impairment should hold, where
        (core/shards.py), and the writes of the shards (and serial item) that change."""
        keys = claim.shard_keys()
        live = {key: shards.live(items.get(key), now) for key in keys}
        legacy = shards.live(items.get(claim.key), now)
        serial = shards.live(items.get(claim.serial_key), now) if claim.serial_key else {}
        others = {key: {h: v for h, v in holders.items() if h != impairment_id} for key, holders in live.items()}
        mine = {key: holders[impairment_id] for key, holders in live.items() if impairment_id in holders}
        legacy_others = {h: v for h, v in legacy.items() if h != impairment_id}
        holding = _Holding.of(claim, impairment_id, others, legacy_others, serial, mine, legacy)
        done.held[claim.key] = sorted(mine) + (
            [claim.serial_key] if claim.serial_key and impairment_id in serial else []
        )
        if holding is None:
            everyone = shards.merged([*others.values(), legacy_others])
            done.exceeded.append(_exceeded(claim, everyone))
            return
        if holding.unchanged:
            return
        limit = claim.limit - shards.used(legacy_others)  # LEGACY: the previous version's holders count
        placed = shards.place(keys, limit, others, holding.units, sorted(mine), _spread(impairment_id, attempt))
        if placed.parts is None:
            done.exceeded.append(_exceeded(claim, shards.merged([*others.values(), legacy_others])))
            return
        parts = shards.split(holding.value, placed.parts)
        for key in sorted(set(mine) | set(parts)):
            if mine.get(key) != parts.get(key):
                new = {**others[key], **({impairment_id: parts[key]} if key in parts else {})}
                done.writes.append(self._versioned_put(key, items.get(key) or {}, new, now))
        if claim.serial_key and serial.get(impairment_id) != holding.serial:
            new = {h: v for h, v in serial.items() if h != impairment_id}
            if holding.serial:
                new[impairment_id] = holding.serial
            done.writes.append(self._versioned_put(claim.serial_key, items.get(claim.serial_key) or {}, new, now))
        done.held[claim.key] = sorted(parts) + ([claim.serial_key] if holding.serial else [])

    def _slot(
        self, claim: Claim, impairment_id: str, items: dict[str, dict[str, Any]], now: int, attempt: int
    ) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
        """A slotted claim: (the slot this impairment holds, None) already; else (a free slot, its
        write: conditioned on it still being free); else ("", None, the claim exceeded)."""
        held = {key: str(item["owner"]) for key, item in _live_slots(claim, items, now).items()}
        mine = next((key for key, owner in held.items() if owner == impairment_id), None)
        if mine:
            return mine, None, None
        free = [key for key, _ in claim.items_read() if key not in held]
        if not free:
            used = sorted(held.values())
            return (
                "",
                None,
                {"name": claim.name, "budget": claim.key, "limit": claim.limit, "used": len(used), "holders": used},
            )
        chosen = free[_spread(impairment_id, attempt) % len(free)]
        return chosen, self.table.owned_put(chosen, "BUDGET", impairment_id, now, claim.expires_at, []), None

    def _versioned_put(
        self, key: str, item: dict[str, Any], holders: dict[str, dict[str, Any]], now: int
    ) -> dict[str, Any]:
        """A transaction's Put of a budget item's holders, only if it is still as it was read."""
        version = int(item.get("version", 0))
        return {
            "Put": {
                "TableName": self.table.name,
                "Item": to_attribute_values(
                    {
                        "pk": key,
                        "sk": "BUDGET",
                        "holders": holders,
                        "version": version + 1,
                        "expiration": max((int(v["expires"]) for v in holders.values()), default=now),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk) OR version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
        }

    def release(self, key: str, impairment_id: str) -> None:
        """Give back the units a budget item (a shard, a serial item) holds for this impairment
        before they expire; windowed budgets (rates, blast radius) are otherwise left to expire."""
        with contextlib.suppress(ConditionFailed):
            self.table.update({"pk": key, "sk": "BUDGET"}, **_release(impairment_id))

    def release_item(self, key: str, impairment_id: str) -> dict[str, Any]:
        """release as a transaction's item: cancels it unless this impairment holds units."""
        return self.table.write("Update", {"pk": key, "sk": "BUDGET"}, **_release(impairment_id))

    def held_items(self, claims: Sequence[Claim], impairment_id: str, read: Read | None = None) -> list[str]:
        """The items of these budgets holding units of this impairment, found by reading them
        (`read`: those read already), for their release."""
        wanted = [k for c in claims for k in c.items_read()]
        items = dict(read.items) if read is not None else {}
        items.update(self.table.get_many([k for k in wanted if read is None or k not in read.keys]))
        return sorted({pk for pk, _ in wanted if impairment_id in ((items.get(pk) or {}).get("holders") or {})})

    def release_slot(self, slot: str, impairment_id: str) -> None:
        """Give back a slot (a concurrency slot at the end of a recovery); another's is left alone."""
        self.table.delete_owned(slot, "BUDGET", impairment_id)

    def release_slot_item(self, slot: str, impairment_id: str) -> dict[str, Any]:
        """release_slot as a transaction's item: cancels it unless this impairment holds the slot."""
        return self.table.delete_owned_item(slot, "BUDGET", impairment_id)

    def holders(self, key: str, slots: int = 0, sharded: int = MAX_SHARDS) -> dict[str, dict[str, Any]]:
        """The live holders of a budget: {impairment id: {"units", "expires", ...}}, one holding
        each across its shards (`sharded`: how many to read; the most by default) and its LEGACY
        item; of a slotted one when `slots` (its limit) is given."""
        now = now_epoch()
        if slots:
            claim = Claim("", key, slots, 1, 0, slotted=True)
            live = _live_slots(claim, self.table.get_many(claim.items_read()), now)
            return {
                str(i["owner"]): {"units": 1, "expires": int(i["expiration"]), "slot": pk} for pk, i in live.items()
            }
        keys = Claim("", key, 0, 0, 0, shards=sharded).items_read()
        items = self.table.get_many(keys)
        return shards.merged([shards.live(items.get(pk), now) for pk, _ in keys])


# A budget is contended when a read shows room for fewer takers than this (free slots, or units
# left) while others took some within BURST_SECONDS: takers that read it then all go for its last
# few items, and each one whose view is stale by the time it writes costs that item a write (a
# cancelled transaction). 5: the most writes of one item in a second the storm allows (issue 16).
CONTENDED_ROOM = 5
BURST_SECONDS = 60


def _contended(claims: list[Claim], impairment_id: str, read: Read, now: int) -> bool:
    """No I/O: whether `read` (made earlier by the caller) shows a counted or slotted budget this
    impairment does not hold yet nearly spent, by takers of the last BURST_SECONDS (their units
    expire within that much of this claim's). A calm budget, however low, is not contended: a
    recovery makes no more calls than it did."""
    for claim in claims:
        if claim.decide is not None or any(k not in read.keys for k in claim.items_read()):
            continue
        recent = claim.expires_at - BURST_SECONDS
        if claim.slotted:
            owners = {str(i["owner"]): int(i["expiration"]) for i in _live_slots(claim, read.items, now).values()}
            room, taken = claim.limit - len(owners), owners
        else:
            holders = shards.merged([shards.live(read.items.get(k), now) for k, _ in claim.items_read()])
            room = claim.limit - shards.used(holders)
            taken = {h: int(v["expires"]) for h, v in holders.items()}
        if impairment_id in taken:
            continue  # held already: nothing to race for
        if room < CONTENDED_ROOM and any(at >= recent for at in taken.values()):
            return True
    return False


def _live_slots(claim: Claim, items: dict[str, dict[str, Any]], now: int) -> dict[str, dict[str, Any]]:
    """A slotted claim's slot items that are held (their holder's expiration not passed), by key."""
    return {
        key: item for key, _ in claim.items_read() if (item := items.get(key)) and int(item.get("expiration", 0)) >= now
    }


def _spread(impairment_id: str, attempt: int) -> int:
    """Which free slot or shard a taker tries: a hash of its id (and the attempt, so a loser tries
    another), so that racers spread over them, the same way at every replay of a drill."""
    return zlib.crc32(f"{impairment_id}#{attempt}".encode())


def _release(impairment_id: str) -> dict[str, Any]:
    return {
        "UpdateExpression": "REMOVE holders.#h SET version = version + :one",
        "ConditionExpression": "attribute_exists(holders.#h)",
        "ExpressionAttributeNames": {"#h": impairment_id},
        "ExpressionAttributeValues": {":one": 1},
    }


class _Holding(Struct, frozen=True):
    """What this impairment should hold of a sharded budget: its units, the holding (before it is
    split over shards), and its serial part; `unchanged` when nothing is to be written."""

    units: int
    value: dict[str, Any]
    serial: dict[str, Any] | None
    unchanged: bool = False

    @staticmethod
    def of(
        claim: Claim,
        impairment_id: str,
        others: dict[str, shards.Holders],
        legacy_others: shards.Holders,
        serial: shards.Holders,
        mine: dict[str, dict[str, Any]],
        legacy: shards.Holders,
    ) -> _Holding | None:
        """None when the claim is exceeded."""
        if claim.decide is None:
            if mine or impairment_id in legacy:  # a retry: it holds its units already
                return _Holding(0, {}, None, unchanged=True)
            everyone = shards.used(legacy_others) + sum(shards.used(h) for h in others.values())
            if everyone + claim.units > claim.limit:
                return None
            return _Holding(claim.units, {**claim.detail, "units": claim.units, "expires": claim.expires_at}, None)
        # the serial item's holders are read with the rest: what they hold counts even when a
        # shard was read before the transaction that wrote both
        decision = claim.decide(shards.merged([*others.values(), legacy_others, _others(serial, impairment_id)]))
        if decision is None:
            return None
        units, detail = decision
        detail = dict(detail)
        named = list(detail.pop(SERIAL, None) or [])
        value = {**detail, "units": units, "expires": claim.expires_at}
        held = shards.merged([{impairment_id: v} for v in mine.values()])
        part = {"instances": sorted(named), "units": len(named), "expires": claim.expires_at} if named else None
        same = serial.get(impairment_id) == part
        if same and (held.get(impairment_id) == value or (units == 0 and not mine)):
            return _Holding(units, value, part, unchanged=True)
        return _Holding(units, value, part)


def _others(holders: shards.Holders, impairment_id: str) -> shards.Holders:
    return {h: {**v, "units": 0} for h, v in holders.items() if h != impairment_id}


def _exceeded(claim: Claim, holders: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": claim.name,
        "budget": claim.key,
        "limit": claim.limit,
        "used": shards.used(holders),
        "holders": sorted(holders),
    }
