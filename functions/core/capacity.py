"""The capacity ledger (CAPACITY#<group ARN> / LEDGER): what each open recovery added to an Auto
Scaling group's desired capacity, so that each gives back its own share, in any order, whoever
else changed the group in between (docs/actions.md, "Emergency capacity: the capacity ledger").

One item per group: `grants`, the open grants keyed by impairment and step ({delta, ...});
`base`, the desired capacity before the first open grant; `changing`, the one change of the
group's desired capacity by a recovery under way: decided here (from the group as the caller
finds it and the ledger as read), made by the caller, then finished here. Desired capacity is set
as an absolute value, so two recoveries' changes of one group are made one at a time. Every write
is conditioned on the version read: a concurrent writer makes it read and decide again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from msgspec import Struct, field

from core.dynamo import ATTEMPTS, ConditionFailed, Table, call, from_dynamo, now_epoch, to_attribute_values
from core.errors import TransientError

# A change decided and not finished within this is abandoned (its Lambda died and was not
# retried): another recovery may decide over it. Setting a desired capacity takes a second.
CHANGE_SECONDS = 300
# How long a grant counts after the last moment it may be given back (a recovery's rollback, or
# its hand-back): an expired grant is folded into the base (the capacity is the group's now).
HOLD_SECONDS = 86400


class Ledger(Struct, frozen=True):
    """A group's ledger as read: its live grants, its base, the change under way."""

    base: int | None = None
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    changing: dict[str, Any] | None = None
    version: int = 0

    def expected(self) -> int | None:
        """The desired capacity the group would have had no one else changed it since the first
        open grant: its base plus every open grant."""
        if self.base is None:
            return None
        return self.base + sum(int(g["delta"]) for g in self.grants.values())


# What a decision returns: None (nothing to change or to record), or the change, a dict with at
# least "kind" ("grant" or "return"), "found" (the desired capacity it was decided on), "to"
# (what to set) and "delta"; a grant's also "grant" (its entry).
Decide = Callable[[Ledger], dict[str, Any] | None]


class CapacityLedger:
    def __init__(self, table: Table) -> None:
        self.table = table

    def read(self, group_arn: str) -> Ledger:
        """The group's ledger, as of now (consistent read; expired grants folded into the base)."""
        return self._read(group_arn, now_epoch())

    def begin(self, group_arn: str, key: str, decide: Decide) -> dict[str, Any] | None:
        """Decide this recovery's change of the group (`key`: its impairment and step) and record
        it as the change under way; a grant is recorded with it. Returns the change, or the one
        already under way under this key (a retry resumes it: the caller checks its kind), or None
        when `decide` says there is nothing to do. TransientError while another recovery's change
        of the group is under way, or after a few lost races."""
        for _ in range(ATTEMPTS):
            now = now_epoch()
            ledger = self._read(group_arn, now)
            change = ledger.changing
            if change and change["key"] == key:
                return change
            if change and int(change["expires"]) >= now:
                raise TransientError(
                    f"recovery {change.get('impairment_id', change['key'])} is changing this group's desired "
                    "capacity: retry once it is done",
                    group=group_arn,
                )
            decision = decide(ledger)
            if decision is None:
                return None
            grants, base = dict(ledger.grants), ledger.base
            if decision["kind"] == "grant":
                if not grants:
                    base = int(decision["found"])
                previous = int((grants.get(key) or {}).get("delta", 0))
                grants[key] = {**decision["grant"], "delta": previous + int(decision["delta"])}
            changing = {**decision, "key": key, "expires": now + CHANGE_SECONDS}
            changing.pop("grant", None)
            try:
                self._put(group_arn, ledger.version, base, grants, changing)
                return changing
            except ConditionFailed:
                continue
        raise TransientError("the capacity ledger is contended: retry", operation="dynamodb:PutItem", group=group_arn)

    def finish(self, group_arn: str, key: str) -> None:
        """The change under way under `key` was made: clear it (and for a return, remove its
        grant). Nothing when it was finished already."""
        for _ in range(ATTEMPTS):
            ledger = self._read(group_arn, now_epoch())
            change = ledger.changing
            if not change or change["key"] != key:
                return
            grants = dict(ledger.grants)
            if change["kind"] == "return":
                grants.pop(key, None)
            try:
                self._put(group_arn, ledger.version, ledger.base if grants else None, grants, None)
                return
            except ConditionFailed:
                continue
        raise TransientError("the capacity ledger is contended: retry", operation="dynamodb:PutItem", group=group_arn)

    def _read(self, group_arn: str, now: int) -> Ledger:
        from boto3.dynamodb.types import TypeDeserializer

        response = call(
            "dynamodb:GetItem",
            self.table.client.get_item,
            TableName=self.table.name,
            Key={"pk": {"S": _pk(group_arn)}, "sk": {"S": "LEDGER"}},
            ConsistentRead=True,
        )
        raw = response.get("Item")
        if not raw:
            return Ledger()
        deserializer = TypeDeserializer()
        item = from_dynamo({k: deserializer.deserialize(v) for k, v in raw.items()})
        grants = item.get("grants") or {}
        live = {k: g for k, g in grants.items() if int(g["expires"]) >= now}
        base = item.get("base")
        if base is not None:
            base += sum(int(g["delta"]) for k, g in grants.items() if k not in live)
        return Ledger(
            base=base if live else None,
            grants=live,
            changing=item.get("changing"),
            version=int(item.get("version", 0)),
        )

    def _put(
        self,
        group_arn: str,
        version: int,
        base: int | None,
        grants: dict[str, Any],
        changing: dict[str, Any] | None,
    ) -> None:
        """Write the group's ledger, only if it is still at the version read."""
        item: dict[str, Any] = {"pk": _pk(group_arn), "sk": "LEDGER", "grants": grants, "version": version + 1}
        if base is not None:
            item["base"] = base
        if changing is not None:
            item["changing"] = changing
        call(
            "dynamodb:PutItem",
            self.table.client.put_item,
            TableName=self.table.name,
            Item=to_attribute_values(item),
            ConditionExpression="attribute_not_exists(pk) OR version = :v",
            ExpressionAttributeValues={":v": {"N": str(version)}},
        )


def _pk(group_arn: str) -> str:
    return f"CAPACITY#{group_arn}"


def give_back(current: int, delta: int, min_size: int, ledger: Ledger) -> tuple[int, int, int]:
    """How far one grant goes back: (the desired capacity to set, how much is given back, how
    much of the recoveries' capacity someone else already took away).

    The rule: lower the CURRENT desired capacity by this grant's delta, never below MinSize, never
    raise it. What the recoveries added and someone else (an operator, a scaling policy) already
    took away counts as given back: when the group is below what the ledger expects (its base
    plus the open grants), that shortfall is taken off this grant first (the next give-back finds
    the rest of it). What someone else added on top is theirs and stays."""
    expected = ledger.expected()
    taken = max(0, expected - current) if expected is not None else 0
    given = max(0, min(delta - taken, current - min_size))
    return current - given, given, min(taken, delta)
