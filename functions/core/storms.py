"""Storms: escalations with one cause within a window, paged as one (orchestration/storm.py).

A storm opens with its first escalation (the leader, paged at once); later ones of the same cause
within the window are listed in one summary the leader sends at the window's end. Closing freezes
the storm, so every escalation is either paged at once or listed in a summary.

No item is written by every escalation of a storm (issue 16: one item is one partition, whose
writes are capped): each one that joins writes its own member item, and the storm's own item is
written when it opens, closes and is summarized. The summary reads the members by a Query.

Design: docs/operations.md#what-the-on-call-receives-in-a-storm
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from msgspec import Struct

from core import clock
from core.dynamo import ATTEMPTS, ConditionFailed, Table, to_attribute_values
from core.errors import InvalidInput, TransientError
from core.records import retention

# Impairments a storm's summary lists by id, reason and workload; past this it counts them (their
# records name the storm). About 300 bytes each: 100 keep the page well under SNS's 256 KB.
LISTED = 100
# Member items a summary reads per Query page (a page also stops at 1 MB, about 1,500 members).
PAGE = 500

OPEN, JOIN, LEAD = "open", "join", "lead"


class Roster(Struct, frozen=True):
    """The members a summary carries: the first LISTED to escalate (in that order) and how many."""

    listed: list[dict[str, Any]]
    count: int


class Membership(Struct, frozen=True):
    """Where an escalation stands in its storm: its leader (paged now; it summarizes at
    summary_at) or a member (listed in the leader's summary)."""

    role: str  # "leader" or "member"
    key: str
    storm_id: str
    leader: str
    summary_at: str  # the window's end, as Step Functions' Wait TimestampPath reads it

    def as_state(self) -> dict[str, Any]:
        return {
            "leader": self.role == "leader",
            "key": self.key,
            "storm_id": self.storm_id,
            "leader_impairment_id": self.leader,
            "summary_at": self.summary_at,
        }


def step(head: dict[str, Any] | None, impairment_id: str, now: int) -> str:
    """No I/O: what an escalation does given the key's open storm (None: none). Its own storm it
    leads again (a retried escalation); another's open one it joins; otherwise it opens one."""
    if head and int(head["window_end"]) > now:
        return LEAD if head["leader"] == impairment_id else JOIN
    return OPEN


def timestamp(epoch: int) -> str:
    """An epoch as Step Functions' Wait TimestampPath wants it (UTC, 'Z')."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Storms:
    def __init__(self, table: Table) -> None:
        self.table = table

    def enter(self, key: str, impairment_id: str, entry: dict[str, Any], window_seconds: int) -> Membership:
        """Join the key's open storm, or open one led by this impairment. `entry` (its workload
        and reason) is what the summary lists. Races: one leader per window (the OPEN item is
        written conditionally); a storm closed meanwhile is not joined (_join takes it back)."""
        for _ in range(ATTEMPTS):
            now = int(clock.utc_now().timestamp())
            head = self._head(key)
            action = step(head, impairment_id, now)
            if action == LEAD and head:
                return _membership("leader", key, head)
            with contextlib.suppress(ConditionFailed):
                if action == JOIN and head:
                    self._join(key, head["storm_id"], impairment_id, entry)
                    return _membership("member", key, head)
                if action == OPEN:
                    return self._open(key, impairment_id, entry, now, now + window_seconds, head)
        raise TransientError("the storm is contended: retry", operation="dynamodb:TransactWriteItems")

    def close(self, key: str, storm_id: str) -> dict[str, Any]:
        """Close a storm (idempotent) and return it as closed: nothing joins it afterwards (an
        escalation whose member item races the close takes it back unless `roster` claimed it),
        so the members `roster` reads then are everything its summary lists. InvalidInput: no
        such storm."""
        if self.get(key, storm_id) is None:  # asked about no storm: nothing is written
            raise InvalidInput(f"there is no storm {storm_id} of {key}")
        closed = self.table.update(
            _storm_key(key, storm_id),
            UpdateExpression="SET closed_at = if_not_exists(closed_at, :now)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":now": clock.utc_now().isoformat()},
            ReturnValues="ALL_NEW",
        )
        # Closed early (the leader's execution died before the window's end): the next
        # escalation of the key opens a new storm rather than finding this one open.
        with contextlib.suppress(ConditionFailed):
            self.table.delete(
                {"pk": f"STORM#{key}", "sk": "OPEN"},
                ConditionExpression="storm_id = :id",
                ExpressionAttributeValues={":id": storm_id},
            )
        return closed

    def get(self, key: str, storm_id: str) -> dict[str, Any] | None:
        return self.table.get(_storm_key(key, storm_id))

    def roster(self, key: str, storm_id: str) -> Roster:
        """Of a closed storm: its members, a Query page at a time, each claimed for the summary
        (one conditional write per member, once: a retried summary skips those it claimed). A
        member that took its item back first (it found the storm closed: _join) is not counted:
        it went to the next storm. Keeps the first LISTED, by when they escalated, in memory."""
        count = 0

        def claimed() -> Iterator[dict[str, Any]]:
            nonlocal count
            for member in self.table.query_each(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :member)",
                ExpressionAttributeValues={":pk": _members_pk(key, storm_id), ":member": "MEMBER#"},
                ConsistentRead=True,
                Limit=PAGE,
            ):
                if member.get("claimed_at") or self._claim(member):
                    count += 1
                    yield {"impairment_id": member["impairment_id"], **(member.get("entry") or {})}

        listed = heapq.nsmallest(LISTED, claimed(), key=lambda m: (str(m.get("at")), m["impairment_id"]))
        return Roster(listed, count)

    def summarized(self, key: str, storm_id: str, status: str, **fields: Any) -> None:
        """Record the summary's fate: "sent", "not_needed" (nobody joined) or "failed"."""
        names = {"#s": "summary_status", **{f"#f{i}": k for i, k in enumerate(fields)}}
        values = {":s": status, **{f":v{i}": v for i, v in enumerate(fields.values())}}
        sets = ", ".join(["#s = :s", *(f"#f{i} = :v{i}" for i in range(len(fields)))])
        self.table.update(
            _storm_key(key, storm_id),
            UpdateExpression=f"SET {sets}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _head(self, key: str) -> dict[str, Any] | None:
        return self.table.get({"pk": f"STORM#{key}", "sk": "OPEN"})

    def _open(
        self, key: str, leader: str, entry: dict[str, Any], now: int, window_end: int, head: dict[str, Any] | None
    ) -> Membership:
        """The OPEN item (only if the key has none open, or the one read ended) and the storm's
        own item, in one transaction. Raises ConditionFailed when another opened it first."""
        opened = timestamp(now)
        storm_id = f"{opened.replace('-', '').replace(':', '')}-{leader}"
        summary_at = timestamp(window_end)
        pointer = {"storm_id": storm_id, "leader": leader, "window_end": window_end, "summary_at": summary_at}
        storm = {
            **pointer,
            "key": key,
            "opened_at": clock.utc_now().isoformat(),
            "leader_entry": entry,
            **retention(),
        }
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if head:  # the one read, ended: replaced only as it was (no other opener got there first)
            condition = {
                "ConditionExpression": "storm_id = :old",
                "ExpressionAttributeValues": {":old": {"S": head["storm_id"]}},
            }
        self.table.transact(
            [
                {
                    "Put": {
                        "TableName": self.table.name,
                        "Item": to_attribute_values(
                            {"pk": f"STORM#{key}", "sk": "OPEN", **pointer, "expiration": window_end + 86400}
                        ),
                        **condition,
                    }
                },
                {
                    "Put": {
                        "TableName": self.table.name,
                        "Item": to_attribute_values({**_storm_key(key, storm_id), **storm}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
        return Membership("leader", key, storm_id, leader, summary_at)

    def _join(self, key: str, storm_id: str, impairment_id: str, entry: dict[str, Any]) -> None:
        """Its own member item (put once: a redelivered escalation finds it, and is not counted
        twice), then the storm, read. Still open: the summary's Query comes after the close, so it
        lists the item. Closed meanwhile: the summary may have read the item or not, and one
        conditional write on the item settles which: the summary's claim (listed) or this take-
        back, after which it raises ConditionFailed and the escalation goes to the next storm."""
        member = _member_key(key, storm_id, impairment_id)
        with contextlib.suppress(ConditionFailed):  # already in (a redelivery): it joined once
            self.table.put(
                {
                    **member,
                    "impairment_id": impairment_id,
                    "entry": {**entry, "at": clock.utc_now().isoformat()},
                    **retention(),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        storm = self.get(key, storm_id)
        if storm is not None and not storm.get("closed_at"):
            return
        try:
            self.table.delete(member, ConditionExpression="attribute_not_exists(claimed_at)")
        except ConditionFailed:
            return  # the summary claimed it first: it lists it
        raise ConditionFailed("dynamodb:DeleteItem")

    def _claim(self, member: dict[str, Any]) -> bool:
        """Claim a member for the summary; False when it was taken back first (_join)."""
        try:
            self.table.update(
                {"pk": member["pk"], "sk": member["sk"]},
                UpdateExpression="SET claimed_at = :now",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":now": clock.utc_now().isoformat()},
            )
        except ConditionFailed:
            return False
        return True


def _storm_key(key: str, storm_id: str) -> dict[str, str]:
    return {"pk": f"STORM#{key}", "sk": f"STORM#{storm_id}"}


def _members_pk(key: str, storm_id: str) -> str:
    """The members' own partition: one item each, not one item every member writes."""
    return f"STORM#{key}#{storm_id}"


def _member_key(key: str, storm_id: str, impairment_id: str) -> dict[str, str]:
    return {"pk": _members_pk(key, storm_id), "sk": f"MEMBER#{impairment_id}"}


def _membership(role: str, key: str, head: dict[str, Any]) -> Membership:
    return Membership(role, key, head["storm_id"], head["leader"], head["summary_at"])
