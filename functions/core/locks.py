"""What one impairment holds on a resource, each item under LOCK#<resource> and expiring
(TTL: expiration): the lock (one recovery per resource at a time), the correlation window
(signals about it within the window are the same fault) and the escalation claim (a human is
paged once per window about it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.dynamo import ATTEMPTS, ConditionFailed, Table, now_epoch
from core.errors import RecoveryInProgress, TransientError


class ResourceLocks:
    """LOCK#<resource> / LOCK."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def acquire(
        self, impairment_id: str, resource_keys: list[str], ttl_seconds: int, take_over: Sequence[str] = ()
    ) -> None:
        """Lock every resource for this impairment, all or nothing.

        Re-entrant for the same impairment (a retried Admit succeeds); an expired lock is taken
        over, and so is a lock held by an impairment in `take_over` (one this impairment
        supersedes). Raises RecoveryInProgress naming the holder when another impairment holds one.
        """
        try:
            self.table.transact(self.acquire_items(impairment_id, resource_keys, ttl_seconds, take_over))
        except ConditionFailed as exc:
            holders = {k: o for k, o in self.holders(resource_keys).items() if o != impairment_id}
            held = ", ".join(f"{key} (impairment {owner})" for key, owner in sorted(holders.items()))
            raise RecoveryInProgress(f"another recovery holds {held}", holders=holders) from exc

    def acquire_items(
        self, impairment_id: str, resource_keys: list[str], ttl_seconds: int, take_over: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """acquire's writes, for a transaction that does more (Admit's): any one
        not granted cancels it."""
        now = now_epoch()
        others = sorted(set(take_over) - {impairment_id})
        return [
            self.table.owned_put(f"LOCK#{key}", "LOCK", impairment_id, now, now + ttl_seconds, others)
            for key in sorted(set(resource_keys))
        ]

    def release(self, impairment_id: str, resource_key: str) -> None:
        self.table.delete_owned(f"LOCK#{resource_key}", "LOCK", impairment_id)

    def release_item(self, impairment_id: str, resource_key: str) -> dict[str, Any]:
        """release as a transaction's item: cancels it unless this impairment holds the lock."""
        return self.table.delete_owned_item(f"LOCK#{resource_key}", "LOCK", impairment_id)

    def holders(self, resource_keys: list[str]) -> dict[str, str]:
        """Who holds the lock of each resource ({resource key: impairment id}; free ones left out)."""
        holders = {}
        for key in resource_keys:
            item = self.table.get({"pk": f"LOCK#{key}", "sk": "LOCK"})
            if item:
                holders[key] = item["owner"]
        return holders


class CorrelationWindows:
    """LOCK#<resource> / CORRELATION, with the epoch of the signal that opened it."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def correlate(
        self,
        impairment_id: str,
        resource_keys: list[str],
        window_seconds: int,
        signal_time: datetime,
        take_over: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Open a correlation window on each resource for this impairment, resource by resource.

        Returns the resources another open impairment already holds a window on, with its id
        ({} when this impairment holds every one: the first about them, a redelivery, or their
        windows had expired or were about another occurrence: signals more than the window apart
        are not the same fault). Each returned resource is that impairment's: a signal about it
        within the window is the same fault. `take_over` names windows to take from their holder
        ({resource key: holder id}): a broader impairment superseding a narrower one.
        """
        now = now_epoch()
        signal_epoch = int(signal_time.timestamp())
        wanted = {key: (take_over or {}).get(key) for key in sorted(set(resource_keys))}
        held: dict[str, str] = {}
        for _ in range(ATTEMPTS):
            if not wanted:
                return held
            try:
                self._put(impairment_id, wanted, now + window_seconds, signal_epoch, now)
                return held
            except ConditionFailed:
                pass
            for key in list(wanted):
                item = self.table.get({"pk": f"LOCK#{key}", "sk": "CORRELATION"})
                if not item or item["owner"] == impairment_id or item["owner"] == wanted[key]:
                    continue
                live = int(item["expiration"]) >= now
                same_fault = abs(int(item.get("signal_epoch", signal_epoch)) - signal_epoch) <= window_seconds
                if live and same_fault:
                    held[key] = str(item["owner"])
                    del wanted[key]
                else:  # expired, or another occurrence: this impairment's own window now
                    wanted[key] = str(item["owner"])
        raise TransientError("correlation windows are contended: retry", operation="dynamodb:TransactWriteItems")

    def _put(
        self, impairment_id: str, wanted: dict[str, str | None], expires: int, signal_epoch: int, now: int
    ) -> None:
        """Write this impairment's windows, all or nothing: each only if it is free, expired, already
        this impairment's, or held by the holder it is taken over from. Raises ConditionFailed."""
        self.table.transact(self.open_items(impairment_id, wanted, expires, signal_epoch, now))

    def open_items(
        self, impairment_id: str, wanted: dict[str, str | None], expires: int, signal_epoch: int, now: int
    ) -> list[dict[str, Any]]:
        """_put's writes, for a transaction that does more (StartRecovery's, with the record)."""
        return [
            self.table.owned_put(
                f"LOCK#{key}",
                "CORRELATION",
                impairment_id,
                now,
                expires,
                [previous] if previous else [],
                {"signal_epoch": {"N": str(signal_epoch)}},
            )
            for key, previous in wanted.items()
        ]

    def release(self, impairment_id: str, resource_key: str) -> None:
        self.table.delete_owned(f"LOCK#{resource_key}", "CORRELATION", impairment_id)

    def release_item(self, impairment_id: str, resource_key: str) -> dict[str, Any]:
        """release as a transaction's item: cancels it unless this impairment holds the window."""
        return self.table.delete_owned_item(f"LOCK#{resource_key}", "CORRELATION", impairment_id)


class EscalationClaims:
    """LOCK#<resource> / ESCALATED."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def claim(self, impairment_id: str, resource_keys: list[str], window_seconds: int) -> bool:
        """Note that these resources were escalated by this impairment; False when every one of
        them was already escalated by another impairment within the window (do not page again:
        a sweep that finds the same deferred instance every minute must not page every minute)."""
        now = now_epoch()
        fresh = not resource_keys
        for key in sorted(set(resource_keys)):
            try:
                self.table.put(
                    {
                        "pk": f"LOCK#{key}",
                        "sk": "ESCALATED",
                        "owner": impairment_id,
                        "expiration": now + window_seconds,
                    },
                    ConditionExpression="attribute_not_exists(pk) OR #o = :me OR #e < :now",
                    ExpressionAttributeNames={"#o": "owner", "#e": "expiration"},
                    ExpressionAttributeValues={":me": impairment_id, ":now": now},
                )
                fresh = True
            except ConditionFailed:
                pass
        return fresh
