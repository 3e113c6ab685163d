"""The guardrails' counters (rate limits, concurrency, blast radius): BUDGET#<name> / BUDGET
items holding who took how many units until when, written only as they were read (a version)."""

from __future__ import annotations

import contextlib
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


class Budgets:
    def __init__(self, table: Table) -> None:
        self.table = table

    def take(self, impairment_id: str, claims: list[Claim]) -> list[dict[str, Any]]:
        """Take units of several budgets for this impairment, all or nothing, atomically.

        A budget is one item holding who took how many units until when; expired holders no
        longer count. Returns the claims that would exceed their limit (nothing is taken then),
        or [] when every claim was taken. Re-entrant: an impairment that already holds a counted
        budget keeps its units (a retried task does not count twice); a decided claim is decided
        again (its holding may shrink). Every item written is conditioned on its version as read,
        in one transaction: a concurrent taker makes the transaction fail, and the claims are
        read and decided again, so no limit is ever decided on a stale read. After a few lost
        races the error is transient (the state machine retries with backoff and jitter)."""
        for _ in range(ATTEMPTS):
            now = now_epoch()
            items = self.table.get_many([(c.key, "BUDGET") for c in claims])
            exceeded: list[dict[str, Any]] = []
            writes = []
            for claim in claims:
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
                return exceeded
            if not writes:
                return []
            try:
                self.table.transact(writes)
                return []
            except ConditionFailed:
                pass
        raise TransientError("budgets are contended: retry", operation="dynamodb:TransactWriteItems")

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
        """Give back a budget's units before they expire (a concurrency slot at the end of a
        recovery); windowed budgets (rates, blast radius) are left to expire."""
        with contextlib.suppress(ConditionFailed):
            self.table.update({"pk": key, "sk": "BUDGET"}, **_release(impairment_id))

    def release_item(self, key: str, impairment_id: str) -> dict[str, Any]:
        """release as a transaction's item: cancels it unless this impairment holds units."""
        return self.table.write("Update", {"pk": key, "sk": "BUDGET"}, **_release(impairment_id))

    def holders(self, key: str) -> dict[str, dict[str, Any]]:
        """The live holders of a budget: {impairment id: {"units", "expires"}}."""
        now = now_epoch()
        item = self.table.get_many([(key, "BUDGET")]).get(key) or {}
        return {h: v for h, v in (item.get("holders") or {}).items() if int(v["expires"]) >= now}


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
