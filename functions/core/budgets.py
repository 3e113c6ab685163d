"""The guardrails' counters (rate limits, concurrency, blast radius): BUDGET#<name> / BUDGET
items holding who took how many units until when, written only as they were read (a version).

A budget every recovery takes and gives back (the concurrency cap) is slotted instead: one item
per unit, BUDGET#<name>#<i> / BUDGET for i < limit, each held by at most one impairment (its
owner, until it expires). A single item would be written twice by every recovery of a storm, all
on one partition (issue 16); a slot is written only by its taker and its holder. The cap stays
exact: a slot is taken only if it is free (a conditional write), so there are never more holders
than slots."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.dynamo import ATTEMPTS, ConditionFailed, Table, now_epoch, to_attribute_values
from core.errors import TransientError

CONCURRENCY_BUDGET = "BUDGET#concurrency"


@dataclass(frozen=True)
class Claim:
    """Units of a budget one recovery takes: `key` names the budget item, `limit` its capacity,
    `expires_at` (epoch seconds) when the units stop counting.

    `decide`, when given, makes the claim depend on what the others hold (the blast radius: which
    of a group's instances may be acted on, given those others act on). It is called with the
    item's live holders but this recovery's own, at every attempt, and returns the units and
    detail to hold (0 units: hold nothing), or None when the claim is exceeded. The decision and
    the write are one atomic step: the write is conditioned on the item being as it was read."""

    name: str
    key: str
    limit: int
    units: int
    expires_at: int
    detail: dict[str, Any] = field(default_factory=dict)
    decide: Callable[[dict[str, dict[str, Any]]], tuple[int, dict[str, Any]] | None] | None = None
    # one item per unit (slot_key(key, i)), for a budget taken and given back by every recovery
    slotted: bool = False

    def __post_init__(self) -> None:
        if self.slotted and (self.units != 1 or self.decide is not None):
            raise ValueError("a slotted budget is taken one unit at a time, undecided")

    def items_read(self) -> list[tuple[str, str]]:
        """The items this claim reads."""
        if self.slotted:
            return [(slot_key(self.key, i), "BUDGET") for i in range(self.limit)]
        return [(self.key, "BUDGET")]


def slot_key(key: str, index: int) -> str:
    return f"{key}#{index}"


@dataclass(frozen=True)
class Taken:
    """What Budgets.take did: the claims that would exceed their limit (nothing was taken then:
    empty when every claim was taken) and the slot this impairment holds of each slotted budget
    ({budget key: slot key}), for its release."""

    exceeded: list[dict[str, Any]]
    slots: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Read:
    """Items already read with one BatchGetItem: the (pk, sk) asked for, and those found by pk
    (Table.get_many); a key asked for and not found does not exist."""

    keys: frozenset[tuple[str, str]]
    items: dict[str, dict[str, Any]]


# A transaction's item noting the slots an impairment newly holds (on its record: every end path
# that releases them reads it), given {budget key: slot key}.
SlotNote = Callable[[dict[str, str]], dict[str, Any]]


class Budgets:
    def __init__(self, table: Table) -> None:
        self.table = table

    def take(
        self, impairment_id: str, claims: list[Claim], note: SlotNote | None = None, read: Read | None = None
    ) -> Taken:
        """Take units of several budgets for this impairment, all or nothing, atomically.

        A budget is one item holding who took how many units until when (or, slotted, one item
        per unit); expired holders no longer count. Returns the claims that would exceed their
        limit (nothing is taken then), or none when every claim was taken, with the slots held.
        Re-entrant: an impairment that already holds a counted budget (a slot) keeps its units (a
        retried task does not count twice); a decided claim is decided again (its holding may
        shrink). Every item written is conditioned on its version as read (a slot: on being free),
        in one transaction with `note` of the slots newly taken: a concurrent taker makes the
        transaction fail, and the claims are read and decided again, so no limit is ever decided
        on a stale read. After a few lost races the error is transient (the state machine
        retries with backoff and jitter). `read`: items the caller read already (Read), used
        for the first attempt (a stale one only costs a lost race)."""
        for attempt in range(ATTEMPTS):
            now = now_epoch()
            needed = [k for c in claims for k in c.items_read()]
            if attempt == 0 and read is not None:
                items = {**read.items, **self.table.get_many([k for k in needed if k not in read.keys])}
            else:
                items = self.table.get_many(needed)
            exceeded: list[dict[str, Any]] = []
            writes: list[dict[str, Any]] = []
            slots: dict[str, str] = {}
            taking: dict[str, str] = {}
            for claim in claims:
                if claim.slotted:
                    slot, taken, over = self._slot(claim, impairment_id, items, now, attempt)
                    if over:
                        exceeded.append(over)
                    elif slot:
                        slots[claim.key] = slot
                    if taken:
                        taking[claim.key] = slot
                        writes.append(taken)
                    continue
                item = items.get(claim.key) or {}
                holders = {h: v for h, v in (item.get("holders") or {}).items() if int(v["expires"]) >= now}
                others = {h: v for h, v in holders.items() if h != impairment_id}
                mine = _holding(claim, impairment_id, holders, others)
                if mine is None:
                    exceeded.append(_exceeded(claim, others))
                elif mine is not _UNCHANGED:
                    writes.append(
                        self._versioned_put(
                            claim.key, item, {**others, impairment_id: mine} if mine["units"] else others, now
                        )
                    )
            if exceeded:
                return Taken(exceeded)
            if taking and note is not None:
                writes.append(note(slots))
            if not writes:
                return Taken([], slots)
            try:
                self.table.transact(writes)
                return Taken([], slots)
            except ConditionFailed:
                pass
        raise TransientError("budgets are contended: retry", operation="dynamodb:TransactWriteItems")

    def _slot(
        self, claim: Claim, impairment_id: str, items: dict[str, dict[str, Any]], now: int, attempt: int
    ) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
        """A slotted claim: (the slot this impairment holds, None) already; else (a free slot, its
        write: conditioned on it still being free); else ("", None, the claim exceeded)."""
        held = {
            key: str(item["owner"])
            for key, _ in claim.items_read()
            if (item := items.get(key)) and int(item.get("expiration", 0)) >= now
        }
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
        """A transaction's Put of a budget's holders, only if the item is still as it was read."""
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
        """Give back a budget's units before they expire; windowed budgets (rates, blast radius)
        are otherwise left to expire."""
        with contextlib.suppress(ConditionFailed):
            self.table.update({"pk": key, "sk": "BUDGET"}, **_release(impairment_id))

    def release_item(self, key: str, impairment_id: str) -> dict[str, Any]:
        """release as a transaction's item: cancels it unless this impairment holds units."""
        return self.table.write("Update", {"pk": key, "sk": "BUDGET"}, **_release(impairment_id))

    def release_slot(self, slot: str, impairment_id: str) -> None:
        """Give back a slot (a concurrency slot at the end of a recovery); another's is left alone."""
        self.table.delete_owned(slot, "BUDGET", impairment_id)

    def release_slot_item(self, slot: str, impairment_id: str) -> dict[str, Any]:
        """release_slot as a transaction's item: cancels it unless this impairment holds the slot."""
        return self.table.delete_owned_item(slot, "BUDGET", impairment_id)

    def holders(self, key: str, slots: int = 0) -> dict[str, dict[str, Any]]:
        """The live holders of a budget: {impairment id: {"units", "expires"}}; of a slotted one
        when `slots` (its limit) is given."""
        now = now_epoch()
        if slots:
            items = self.table.get_many(Claim("", key, slots, 1, 0, slotted=True).items_read())
            return {
                str(i["owner"]): {"units": 1, "expires": int(i["expiration"]), "slot": pk}
                for pk, i in items.items()
                if int(i.get("expiration", 0)) >= now
            }
        item = self.table.get_many([(key, "BUDGET")]).get(key) or {}
        return {h: v for h, v in (item.get("holders") or {}).items() if int(v["expires"]) >= now}


def _spread(impairment_id: str, attempt: int) -> int:
    """Which free slot a taker tries: a hash of its id (and the attempt, so a loser tries another),
    so that racers spread over the slots, the same way at every replay of a drill."""
    return zlib.crc32(f"{impairment_id}#{attempt}".encode())


def _release(impairment_id: str) -> dict[str, Any]:
    return {
        "UpdateExpression": "REMOVE holders.#h SET version = version + :one",
        "ConditionExpression": "attribute_exists(holders.#h)",
        "ExpressionAttributeNames": {"#h": impairment_id},
        "ExpressionAttributeValues": {":one": 1},
    }


# What _holding answers when this impairment's holding is already as it should be (no write).
_UNCHANGED: Any = object()


def _holding(
    claim: Claim, impairment_id: str, holders: dict[str, dict[str, Any]], others: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """What this impairment should hold of one budget, given the live holders: None when the
    claim is exceeded, _UNCHANGED when nothing is to be written."""
    if claim.decide is not None:
        decision = claim.decide(others)
        if decision is None:
            return None
        units, detail = decision
        mine = {**detail, "units": units, "expires": claim.expires_at}
        if holders.get(impairment_id) == mine or (units == 0 and impairment_id not in holders):
            return _UNCHANGED
        return mine
    if impairment_id in holders:
        return _UNCHANGED
    used = sum(int(v["units"]) for v in others.values())
    if used + claim.units > claim.limit:
        return None
    return {**claim.detail, "units": claim.units, "expires": claim.expires_at}


def _exceeded(claim: Claim, holders: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": claim.name,
        "budget": claim.key,
        "limit": claim.limit,
        "used": sum(int(v["units"]) for v in holders.values()),
        "holders": sorted(holders),
    }
