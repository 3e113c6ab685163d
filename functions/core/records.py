"""The audit trail: an impairment's record and the records of its action steps, kept for the
table's retention (AUDIT_RETENTION_DAYS) and queryable by workload and time through GSI1."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from core import clock
from core.dynamo import GSI1, ConditionFailed, Table, set_expression, sortable, to_attribute_values
from core.errors import ImpairmentNotRecorded
from core.observability import logger


def _record_key(impairment_id: str) -> dict[str, str]:
    return {"pk": f"IMPAIRMENT#{impairment_id}", "sk": "RECORD"}


def _checked_key(impairment_id: str) -> dict[str, str]:
    return {"pk": f"IMPAIRMENT#{impairment_id}", "sk": "GUARDRAILS"}


# What CheckGuardrails notes of an impairment on an item of its own (IMPAIRMENT#<id> /
# GUARDRAILS), not on the record: the concurrency slot it took (`budget_slots`, in the take's
# transaction, which a lost race cancels and tries again) and what stopped it (the trip, and
# `page`: whether it was the first to escalate these resources). The record is written by every
# task of a recovery one after the other; these writes on it made an impairment's record the most
# written item of a storm (issue 16). Escalate writes the trip onto the record with its outcome
# (ExecutionEnded, when an execution died first); every end path reads the slots here.
CHECKED_FIELDS = ("budget_slots", "guardrails_tripped", "guardrail_trips", "page")


def _action_key(impairment_id: str, step_index: int, phase: str) -> dict[str, str]:
    return {"pk": f"IMPAIRMENT#{impairment_id}", "sk": f"ACTION#{step_index:02d}#{phase}"}


class ImpairmentRecords:
    """IMPAIRMENT#<id> / RECORD: the impairment, its status, outcome, MTTD and MTTR; GSI1
    (WORKLOAD#<name>, detected_at)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def put(self, impairment: dict[str, Any], status: str, **fields: Any) -> bool:
        """Write the impairment record if it is new; returns False when it already existed."""
        try:
            self.table.put(self._item(impairment, status, fields), ConditionExpression="attribute_not_exists(pk)")
            return True
        except ConditionFailed:
            return False

    def put_item(self, impairment: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
        """put as a transaction's item: cancels it when the record exists, which the cancellation
        then hands back (ConditionFailed.items): no read is needed to see what it was."""
        return {
            "Put": {
                "TableName": self.table.name,
                "Item": to_attribute_values(self._item(impairment, status, fields)),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _item(self, impairment: dict[str, Any], status: str, fields: dict[str, Any]) -> dict[str, Any]:
        signal_time = (impairment.get("signal") or {}).get("signal_time")
        item = {
            **_record_key(impairment["impairment_id"]),
            "impairment_id": impairment["impairment_id"],
            "workload": impairment["workload"],
            "impairment_type": impairment.get("impairment_type"),
            "severity": impairment.get("severity"),
            "detected_at": impairment.get("detected_at"),
            "signal_time": signal_time,
            "first_signal_time": sortable(signal_time),
            "impairment": impairment,
            "drill": bool(impairment.get("drill")),
            "status": status,
            "updated_at": clock.utc_now().isoformat(),
            "gsi1pk": f"WORKLOAD#{impairment['workload']}",
            "gsi1sk": str(impairment.get("detected_at")),
            **fields,
            **retention(),
        }
        return item

    def update(self, impairment_id: str, **fields: Any) -> None:
        """Set fields on an impairment record (status, outcome, execution, resolved_at, ...).

        Only on a record that exists: an update of a missing one would create a stub, with no
        impairment, workload or index keys, that no listing finds. Raises ImpairmentNotRecorded
        (nothing written) when there is none."""
        fields["updated_at"] = clock.utc_now().isoformat()
        expression = set_expression(fields)
        expression["ExpressionAttributeNames"]["#pk"] = "pk"
        try:
            self.table.update(_record_key(impairment_id), ConditionExpression="attribute_exists(#pk)", **expression)
        except ConditionFailed as exc:
            logger.error(
                "an update named an impairment that has no record; nothing was written",
                impairment_id=impairment_id,
                fields=sorted(fields),
            )
            raise ImpairmentNotRecorded(
                f"impairment {impairment_id} has no record to update", impairment_id=impairment_id
            ) from exc

    def update_item(self, impairment_id: str, **fields: Any) -> dict[str, Any]:
        """update as a transaction's item: cancels it when there is no record."""
        fields["updated_at"] = clock.utc_now().isoformat()
        expression = set_expression(fields)
        expression["ExpressionAttributeNames"]["#pk"] = "pk"
        return self.table.write(
            "Update", _record_key(impairment_id), ConditionExpression="attribute_exists(#pk)", **expression
        )

    def get(self, impairment_id: str) -> dict[str, Any] | None:
        return self.table.get(_record_key(impairment_id))

    def get_checked(self, impairment_id: str) -> dict[str, Any] | None:
        """The record with what CheckGuardrails noted of it (CHECKED_FIELDS of its item) laid
        over it, in one read (BatchGetItem); None when there is no record. A record written
        before the item existed keeps its own (its budget_slots, its trip: LEGACY)."""
        record, checked = (_record_key(impairment_id), _checked_key(impairment_id))
        found = self.table.get_keyed([(record["pk"], record["sk"]), (checked["pk"], checked["sk"])])
        item = found.get((record["pk"], record["sk"]))
        if item is None:
            return None
        noted = found.get((checked["pk"], checked["sk"])) or {}
        return {**item, **{k: noted[k] for k in CHECKED_FIELDS if k in noted}}

    def note(self, impairment_id: str, **fields: Any) -> None:
        """Set CHECKED_FIELDS on the impairment's guardrails item (made if it has none: it is
        written before the record takes any of it), kept as long as the record."""
        self.table.update(_checked_key(impairment_id), **self._note_expression(fields))

    def note_item(self, impairment_id: str, **fields: Any) -> dict[str, Any]:
        """note as a transaction's item (the budgets' take: the slot it takes)."""
        return self.table.write("Update", _checked_key(impairment_id), **self._note_expression(fields))

    @staticmethod
    def _note_expression(fields: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(fields) - set(CHECKED_FIELDS))
        if unknown:
            raise ValueError(f"not noted on the guardrails item: {unknown}")
        return set_expression({**fields, "updated_at": clock.utc_now().isoformat(), **retention()})

    def list(self, workload: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Impairment records of one workload, oldest first (paginated query on GSI1)."""
        condition, values = "gsi1pk = :w", {":w": f"WORKLOAD#{workload}"}
        if since is not None:
            condition, values[":since"] = condition + " AND gsi1sk >= :since", since.isoformat()
        return self.table.query_all(IndexName=GSI1, KeyConditionExpression=condition, ExpressionAttributeValues=values)

    def link_signal(self, impairment_id: str, linked: dict[str, Any]) -> None:
        """Attach a correlated signal to an open impairment; MTTD then counts from the earliest
        signal of all."""
        signal_time = sortable(linked["signal"]["signal_time"])
        try:
            self.table.update(
                _record_key(impairment_id),
                UpdateExpression="SET #l = list_append(if_not_exists(#l, :empty), :one)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#l": "linked_signals"},
                ExpressionAttributeValues={":one": [linked], ":empty": []},
            )
        except ConditionFailed:  # no record to link to (not a stub made of one signal)
            logger.warning("a signal was linked to an impairment that has no record", impairment_id=impairment_id)
            return
        record = self.get(impairment_id)
        if record is None:
            return
        detected_at = datetime.fromisoformat(record["detected_at"])
        mttd = max(0.0, (detected_at - datetime.fromisoformat(linked["signal"]["signal_time"])).total_seconds())
        with contextlib.suppress(ConditionFailed):
            self.table.update(
                _record_key(impairment_id),
                UpdateExpression="SET first_signal_time = :t, mttd_seconds = :m",
                ConditionExpression="attribute_not_exists(first_signal_time) OR first_signal_time > :t",
                ExpressionAttributeValues={":t": signal_time, ":m": mttd},
            )


class ActionRecords:
    """IMPAIRMENT#<id> / ACTION#<nn>#<phase>: one action step, its state before and after, its
    result."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def put(self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any]) -> None:
        self.table.put(self._item(impairment_id, step_index, phase, record))

    def put_first(
        self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Write the step's record if it has none, in one conditional put instead of a read and a
        write; returns None when written, else the record that was there (DynamoDB hands it back
        with the refusal), which is left as it was."""
        try:
            self.table.put(
                self._item(impairment_id, step_index, phase, record),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as exc:
            return exc.item or {}
        return None

    def put_if_started(
        self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any], started_at: str
    ) -> dict[str, Any] | None:
        """Write the step's record if it is still the "started" record written at `started_at`
        (as the attempt that wrote it left it); returns None when written, else the record that is
        there ({} for none), which is left as it was."""
        try:
            self.table.put(
                self._item(impairment_id, step_index, phase, record),
                ConditionExpression="#status = :started AND started_at = :at",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":started": "started", ":at": started_at},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as exc:
            return exc.item or {}
        return None

    def _item(self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any]) -> dict[str, Any]:
        return {
            **_action_key(impairment_id, step_index, phase),
            "step_index": step_index,
            "phase": phase,
            **record,
            **retention(),
        }

    def get(self, impairment_id: str, step_index: int, phase: str) -> dict[str, Any] | None:
        return self.table.get(_action_key(impairment_id, step_index, phase))

    def list(self, impairment_id: str) -> list[dict[str, Any]]:
        """Every action record of an impairment, in step order."""
        return self.table.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": f"IMPAIRMENT#{impairment_id}", ":prefix": "ACTION#"},
            ConsistentRead=True,
        )

    def fail_started(self, impairment_id: str, error: str) -> list[dict[str, Any]]:
        """End every step still "started" as "failed" with `error` (its retries ran out, or its
        execution died: it will not finish). Their state before is kept for the rollback. Returns
        the records as they now are."""
        ended = []
        for record in self.list(impairment_id):
            if record.get("status") != "started":
                continue
            fields = {k: v for k, v in record.items() if k not in ("pk", "sk", "step_index", "phase", "expiration")}
            fields.update(status="failed", error=error[:4000], finished_at=clock.utc_now().isoformat())
            self.put(impairment_id, int(record["step_index"]), record["phase"], fields)
            ended.append({**record, **fields})
        return ended


def retention() -> dict[str, int]:
    """The TTL of an audit record (the table's TTL attribute `expiration`): the function's
    AUDIT_RETENTION_DAYS after it is written; 0 keeps it forever."""
    from core import settings

    days = settings.load().audit_retention_days
    return {"expiration": int(clock.utc_now().timestamp()) + days * 86400} if days else {}
