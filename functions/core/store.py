"""The audit trail and locks: one DynamoDB table.

Items (pk / sk):
  IMPAIRMENT#<id> / RECORD              the impairment, its status, outcome, MTTD and MTTR
  IMPAIRMENT#<id> / ACTION#<nn>#<phase>  one action step: state before and after, result
  LOCK#<resource> / LOCK                 one recovery per resource at a time (TTL: expiration)
Records are queryable by workload and time through GSI1 (WORKLOAD#<name>, detected_at).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core import aws, clock
from core.errors import RecoveryInProgress, classify_client_error

GSI1 = "gsi1"


def _to_dynamo(value: Any) -> Any:
    # DynamoDB wants Decimal, not float; a JSON round trip also turns datetimes into strings.
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class RecoveryStore:
    """Repository over the recovery table. Pass a boto3 DynamoDB client to inject a fake."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client
        self._table: Any = None

    @property
    def table(self) -> Any:
        if self._table is None:
            import boto3

            if self._client is None:
                self._client = aws.client("dynamodb")
            self._table = boto3.resource("dynamodb", region_name=self._client.meta.region_name).Table(self.table_name)
        return self._table

    # --- impairments -------------------------------------------------------------------------
    def put_impairment(self, impairment: dict[str, Any], status: str, **fields: Any) -> bool:
        """Write the impairment record if it is new; returns False when it already existed."""
        item = {
            "pk": f"IMPAIRMENT#{impairment['impairment_id']}",
            "sk": "RECORD",
            "impairment_id": impairment["impairment_id"],
            "workload": impairment["workload"],
            "impairment_type": impairment.get("impairment_type"),
            "severity": impairment.get("severity"),
            "detected_at": impairment.get("detected_at"),
            "signal_time": (impairment.get("signal") or {}).get("signal_time"),
            "first_signal_time": _sortable((impairment.get("signal") or {}).get("signal_time")),
            "impairment": impairment,
            "status": status,
            "updated_at": clock.utc_now().isoformat(),
            "gsi1pk": f"WORKLOAD#{impairment['workload']}",
            "gsi1sk": str(impairment.get("detected_at")),
            **fields,
        }
        try:
            self.table.put_item(Item=_to_dynamo(item), ConditionExpression="attribute_not_exists(pk)")
            return True
        except Exception as exc:
            if _is_condition_failure(exc):
                return False
            raise classify_client_error(exc, "dynamodb:PutItem") from exc

    def update_impairment(self, impairment_id: str, **fields: Any) -> None:
        """Set fields on an impairment record (status, outcome, execution, resolved_at, ...)."""
        fields["updated_at"] = clock.utc_now().isoformat()
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        try:
            self.table.update_item(
                Key={"pk": f"IMPAIRMENT#{impairment_id}", "sk": "RECORD"},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_to_dynamo(values),
            )
        except Exception as exc:
            raise classify_client_error(exc, "dynamodb:UpdateItem") from exc

    def get_impairment(self, impairment_id: str) -> dict[str, Any] | None:
        response = self.table.get_item(Key={"pk": f"IMPAIRMENT#{impairment_id}", "sk": "RECORD"}, ConsistentRead=True)
        item = response.get("Item")
        return _from_dynamo(item) if item else None

    def list_impairments(self, workload: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Impairment records of one workload, oldest first (paginated query on GSI1)."""
        from boto3.dynamodb.conditions import Key

        condition = Key("gsi1pk").eq(f"WORKLOAD#{workload}")
        if since is not None:
            condition = condition & Key("gsi1sk").gte(since.isoformat())
        return self._query_all(IndexName=GSI1, KeyConditionExpression=condition)

    # --- actions -----------------------------------------------------------------------------
    def put_action(self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any]) -> None:
        item = {
            "pk": f"IMPAIRMENT#{impairment_id}",
            "sk": f"ACTION#{step_index:02d}#{phase}",
            "step_index": step_index,
            "phase": phase,
            **record,
        }
        try:
            self.table.put_item(Item=_to_dynamo(item))
        except Exception as exc:
            raise classify_client_error(exc, "dynamodb:PutItem") from exc

    def get_action(self, impairment_id: str, step_index: int, phase: str) -> dict[str, Any] | None:
        response = self.table.get_item(
            Key={"pk": f"IMPAIRMENT#{impairment_id}", "sk": f"ACTION#{step_index:02d}#{phase}"},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _from_dynamo(item) if item else None

    def list_actions(self, impairment_id: str) -> list[dict[str, Any]]:
        """Every action record of an impairment, in step order."""
        from boto3.dynamodb.conditions import Key

        return self._query_all(
            KeyConditionExpression=Key("pk").eq(f"IMPAIRMENT#{impairment_id}") & Key("sk").begins_with("ACTION#"),
            ConsistentRead=True,
        )

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a query."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            items.extend(_from_dynamo(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- locks -------------------------------------------------------------------------------
    def acquire_locks(self, impairment_id: str, resource_keys: list[str], ttl_seconds: int) -> None:
        """Lock every resource for this impairment, all or nothing.

        Re-entrant for the same impairment (a retried Admit succeeds); an expired lock is taken
        over. Raises RecoveryInProgress naming the holder when another impairment holds one.
        """
        now = int(clock.utc_now().timestamp())
        items = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {
                        "pk": {"S": f"LOCK#{key}"},
                        "sk": {"S": "LOCK"},
                        "owner": {"S": impairment_id},
                        "expiration": {"N": str(now + ttl_seconds)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk) OR #o = :me OR #e < :now",
                    "ExpressionAttributeNames": {"#o": "owner", "#e": "expiration"},
                    "ExpressionAttributeValues": {":me": {"S": impairment_id}, ":now": {"N": str(now)}},
                }
            }
            for key in sorted(set(resource_keys))
        ]
        client = self._client = self._client or aws.client("dynamodb")
        for start in range(0, len(items), 100):  # TransactWriteItems takes at most 100 items
            try:
                client.transact_write_items(TransactItems=items[start : start + 100])
            except Exception as exc:
                if _is_condition_failure(exc):
                    holders = {k: o for k, o in self._lock_holders(resource_keys).items() if o != impairment_id}
                    held = ", ".join(f"{key} (impairment {owner})" for key, owner in sorted(holders.items()))
                    raise RecoveryInProgress(f"another recovery holds {held}", holders=holders) from exc
                raise classify_client_error(exc, "dynamodb:TransactWriteItems") from exc

    def release_locks(self, impairment_id: str, resource_keys: list[str]) -> None:
        """Release the locks and correlation windows this impairment holds (its recovery is
        over: a new signal about these resources is a new impairment); others' are left alone."""
        for key in sorted(set(resource_keys)):
            for sort_key in ("LOCK", "CORRELATION"):
                try:
                    self.table.delete_item(
                        Key={"pk": f"LOCK#{key}", "sk": sort_key},
                        ConditionExpression="#o = :me",
                        ExpressionAttributeNames={"#o": "owner"},
                        ExpressionAttributeValues={":me": impairment_id},
                    )
                except Exception as exc:
                    if not _is_condition_failure(exc):
                        raise classify_client_error(exc, "dynamodb:DeleteItem") from exc

    # --- the switches: pause everything, disable plans, at run time ------------------------------
    def get_switches(self) -> dict[str, Any]:
        """The runtime switches: {"paused": bool, "disabled_plans": [...], ...}."""
        item = self.table.get_item(Key={"pk": "CONTROL", "sk": "SWITCHES"}, ConsistentRead=True).get("Item")
        return _from_dynamo(item) if item else {"paused": False, "disabled_plans": []}

    def set_paused(self, paused: bool, reason: str = "", actor: str = "") -> None:
        """The kill switch: pause (or resume) every automatic action, without a redeploy."""
        self._set_switch({"paused": paused, "pause_reason": reason, "changed_by": actor})

    def set_plan_enabled(self, plan: str, enabled: bool, actor: str = "") -> None:
        disabled = set(self.get_switches().get("disabled_plans", []))
        disabled = disabled - {plan} if enabled else disabled | {plan}
        self._set_switch({"disabled_plans": sorted(disabled), "changed_by": actor})

    def _set_switch(self, fields: dict[str, Any]) -> None:
        fields = {**fields, "changed_at": clock.utc_now().isoformat()}
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(fields.values())}
        self.table.update_item(
            Key={"pk": "CONTROL", "sk": "SWITCHES"},
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_to_dynamo(values),
        )

    # --- correlation -------------------------------------------------------------------------
    def correlate(
        self, impairment_id: str, resource_keys: list[str], window_seconds: int, signal_time: datetime
    ) -> str | None:
        """Open a correlation window on each resource for this impairment, all or nothing.

        Returns None when this impairment is the first about its resources (or already holds
        them: a redelivery, or its signal is not within the window of the open one's), else the
        id of the open impairment it belongs to: signals about the same resource within the
        window are one impairment, and start one recovery.
        """
        now = int(clock.utc_now().timestamp())
        signal_epoch = int(signal_time.timestamp())
        items = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {
                        "pk": {"S": f"LOCK#{key}"},
                        "sk": {"S": "CORRELATION"},
                        "owner": {"S": impairment_id},
                        "signal_epoch": {"N": str(signal_epoch)},
                        "expiration": {"N": str(now + window_seconds)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk) OR #o = :me OR #e < :now",
                    "ExpressionAttributeNames": {"#o": "owner", "#e": "expiration"},
                    "ExpressionAttributeValues": {":me": {"S": impairment_id}, ":now": {"N": str(now)}},
                }
            }
            for key in sorted(set(resource_keys))[:100]
        ]
        client = self._client = self._client or aws.client("dynamodb")
        try:
            client.transact_write_items(TransactItems=items)
        except Exception as exc:
            if not _is_condition_failure(exc):
                raise classify_client_error(exc, "dynamodb:TransactWriteItems") from exc
            for key in sorted(set(resource_keys)):
                item = self.table.get_item(Key={"pk": f"LOCK#{key}", "sk": "CORRELATION"}, ConsistentRead=True).get(
                    "Item"
                )
                if item and item["owner"] != impairment_id and int(item["expiration"]) >= now:
                    if abs(int(item.get("signal_epoch", signal_epoch)) - signal_epoch) <= window_seconds:
                        return str(item["owner"])
                    return None  # a later occurrence, not the same fault: its own impairment
            return self.correlate(impairment_id, resource_keys, window_seconds, signal_time)  # holder expired
        return None

    def link_signal(self, impairment_id: str, linked: dict[str, Any]) -> None:
        """Attach a correlated signal to an open impairment; MTTD then counts from the earliest
        signal of all."""
        signal_time = _sortable(linked["signal"]["signal_time"])
        self.table.update_item(
            Key={"pk": f"IMPAIRMENT#{impairment_id}", "sk": "RECORD"},
            UpdateExpression="SET #l = list_append(if_not_exists(#l, :empty), :one)",
            ExpressionAttributeNames={"#l": "linked_signals"},
            ExpressionAttributeValues=_to_dynamo({":one": [linked], ":empty": []}),
        )
        record = self.get_impairment(impairment_id)
        if record is None:
            return
        detected_at = datetime.fromisoformat(record["detected_at"])
        mttd = max(0.0, (detected_at - datetime.fromisoformat(linked["signal"]["signal_time"])).total_seconds())
        try:
            self.table.update_item(
                Key={"pk": f"IMPAIRMENT#{impairment_id}", "sk": "RECORD"},
                UpdateExpression="SET first_signal_time = :t, mttd_seconds = :m",
                ConditionExpression="attribute_not_exists(first_signal_time) OR first_signal_time > :t",
                ExpressionAttributeValues=_to_dynamo({":t": signal_time, ":m": mttd}),
            )
        except Exception as exc:
            if not _is_condition_failure(exc):
                raise classify_client_error(exc, "dynamodb:UpdateItem") from exc

    def _lock_holders(self, resource_keys: list[str]) -> dict[str, str]:
        holders = {}
        for key in resource_keys:
            item = self.table.get_item(Key={"pk": f"LOCK#{key}", "sk": "LOCK"}, ConsistentRead=True).get("Item")
            if item:
                holders[key] = item["owner"]
        return holders


def _sortable(timestamp: str | None) -> str | None:
    """A UTC timestamp that sorts as a string (signals come with different offsets)."""
    if not timestamp:
        return None
    return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_condition_failure(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons
    return False
