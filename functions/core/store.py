"""The audit trail and locks: one DynamoDB table.

Items (pk / sk):
  IMPAIRMENT#<id> / RECORD              the impairment, its status, outcome, MTTD and MTTR
  IMPAIRMENT#<id> / ACTION#<nn>#<phase>  one action step: state before and after, result
  LOCK#<resource> / LOCK                 one recovery per resource at a time (TTL: expiration)
  PROBE#<workload> / REGION#<region>     consecutive failed probes of a workload's region, seen from
                                         its standby region (detectors/region_probe.py; TTL: expiration)
Records are queryable by workload and time through GSI1 (WORKLOAD#<name>, detected_at).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core import aws, clock
from core.errors import RecoveryInProgress, TransientError, classify_client_error

GSI1 = "gsi1"
CONCURRENCY_BUDGET = "BUDGET#concurrency"
_BUDGET_ATTEMPTS = 5


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


def _to_dynamo(value: Any) -> Any:
    # DynamoDB wants Decimal, not float; a JSON round trip also turns datetimes into strings.
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def _to_attribute_values(item: dict[str, Any]) -> dict[str, Any]:
    """A plain item as the low-level client's attribute values."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in _to_dynamo(item).items()}


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
            "drill": bool(impairment.get("drill")),
            "status": status,
            "updated_at": clock.utc_now().isoformat(),
            "gsi1pk": f"WORKLOAD#{impairment['workload']}",
            "gsi1sk": str(impairment.get("detected_at")),
            **fields,
            **_retention(),
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
            **_retention(),
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

    def fail_started_actions(self, impairment_id: str, error: str) -> list[dict[str, Any]]:
        """End every step still "started" as "failed" with `error` (its retries ran out, or its
        execution died: it will not finish). Their state before is kept for the rollback. Returns
        the records as they now are."""
        ended = []
        for record in self.list_actions(impairment_id):
            if record.get("status") != "started":
                continue
            fields = {k: v for k, v in record.items() if k not in ("pk", "sk", "step_index", "phase", "expiration")}
            fields.update(status="failed", error=error[:4000], finished_at=clock.utc_now().isoformat())
            self.put_action(impairment_id, int(record["step_index"]), record["phase"], fields)
            ended.append({**record, **fields})
        return ended

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
    def acquire_locks(
        self, impairment_id: str, resource_keys: list[str], ttl_seconds: int, take_over: Sequence[str] = ()
    ) -> None:
        """Lock every resource for this impairment, all or nothing.

        Re-entrant for the same impairment (a retried Admit succeeds); an expired lock is taken
        over, and so is a lock held by an impairment in `take_over` (one this impairment
        supersedes). Raises RecoveryInProgress naming the holder when another impairment holds one.
        """
        now = int(clock.utc_now().timestamp())
        others = sorted(set(take_over) - {impairment_id})
        items = [
            self._owned_put(f"LOCK#{key}", "LOCK", impairment_id, now, now + ttl_seconds, others)
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

    def _owned_put(
        self,
        pk: str,
        sk: str,
        owner: str,
        now: int,
        expires: int,
        take_over: list[str],
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A transaction's Put of an item owned by one impairment until `expires`: written only if
        it is free, expired, already this owner's, or held by an owner in `take_over`."""
        condition = "attribute_not_exists(pk) OR #o = :me OR #e < :now"
        values = {":me": {"S": owner}, ":now": {"N": str(now)}}
        if take_over:
            condition += f" OR #o IN ({', '.join(f':t{i}' for i in range(len(take_over)))})"
            values.update({f":t{i}": {"S": previous} for i, previous in enumerate(take_over)})
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": {
                    "pk": {"S": pk},
                    "sk": {"S": sk},
                    "owner": {"S": owner},
                    "expiration": {"N": str(expires)},
                    **(extra or {}),
                },
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#o": "owner", "#e": "expiration"},
                "ExpressionAttributeValues": values,
            }
        }

    def release_locks(self, impairment_id: str, resource_keys: list[str], concurrency: bool = True) -> None:
        """Release the locks, correlation windows and (unless concurrency=False: the recovery goes
        on without these resources) the concurrency slot this impairment holds: a new signal about
        these resources is a new impairment. Others' are left alone."""
        if concurrency:
            self.release_budget(CONCURRENCY_BUDGET, impairment_id)
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

    # --- budgets: the guardrails' counters (rate limits, concurrency, blast radius) --------------
    def take_budgets(self, impairment_id: str, claims: list[Claim]) -> list[dict[str, Any]]:
        """Take units of several budgets for this impairment, all or nothing, atomically.

        A budget is one item holding who took how many units until when; expired holders no
        longer count. Returns the claims that would exceed their limit (nothing is taken then),
        or [] when every claim was taken. Re-entrant: an impairment that already holds a counted
        budget keeps its units (a retried task does not count twice); a decided claim is decided
        again (its holding may shrink). Every item written is conditioned on its version as read,
        in one transaction: a concurrent taker makes the transaction fail, and the claims are
        read and decided again, so no limit is ever decided on a stale read. After a few lost
        races the error is transient (the state machine retries with backoff and jitter)."""
        for _ in range(_BUDGET_ATTEMPTS):
            now = int(clock.utc_now().timestamp())
            items = self._get_many([(c.key, "BUDGET") for c in claims])
            exceeded: list[dict[str, Any]] = []
            writes = []
            for claim in claims:
                item = items.get(claim.key) or {}
                holders = {h: v for h, v in (item.get("holders") or {}).items() if int(v["expires"]) >= now}
                others = {h: v for h, v in holders.items() if h != impairment_id}
                if claim.decide is not None:
                    decision = claim.decide(others)
                    if decision is None:
                        exceeded.append(_exceeded(claim, others))
                        continue
                    units, detail = decision
                    mine = {**detail, "units": units, "expires": claim.expires_at}
                    if holders.get(impairment_id) == mine or (units == 0 and impairment_id not in holders):
                        continue
                else:
                    if impairment_id in holders:
                        continue
                    used = sum(int(v["units"]) for v in others.values())
                    if used + claim.units > claim.limit:
                        exceeded.append(_exceeded(claim, others))
                        continue
                    mine = {**claim.detail, "units": claim.units, "expires": claim.expires_at}
                holders = {**others, impairment_id: mine} if mine["units"] else others
                version = int(item.get("version", 0))
                writes.append(
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": _to_attribute_values(
                                {
                                    "pk": claim.key,
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
                )
            if exceeded:
                return exceeded
            if not writes:
                return []
            client = self._client = self._client or aws.client("dynamodb")
            try:
                client.transact_write_items(TransactItems=writes)
                return []
            except Exception as exc:
                if not _is_condition_failure(exc):
                    raise classify_client_error(exc, "dynamodb:TransactWriteItems") from exc
        raise TransientError("budgets are contended: retry", operation="dynamodb:TransactWriteItems")

    def release_budget(self, key: str, impairment_id: str) -> None:
        """Give back a budget's units before they expire (a concurrency slot at the end of a
        recovery); windowed budgets (rates, blast radius) are left to expire."""
        try:
            self.table.update_item(
                Key={"pk": key, "sk": "BUDGET"},
                UpdateExpression="REMOVE holders.#h SET version = version + :one",
                ConditionExpression="attribute_exists(holders.#h)",
                ExpressionAttributeNames={"#h": impairment_id},
                ExpressionAttributeValues={":one": 1},
            )
        except Exception as exc:
            if not _is_condition_failure(exc):
                raise classify_client_error(exc, "dynamodb:UpdateItem") from exc

    def claim_escalation(self, impairment_id: str, resource_keys: list[str], window_seconds: int) -> bool:
        """Note that these resources were escalated by this impairment; False when every one of
        them was already escalated by another impairment within the window (do not page again:
        a sweep that finds the same deferred instance every minute must not page every minute)."""
        now = int(clock.utc_now().timestamp())
        fresh = not resource_keys
        for key in sorted(set(resource_keys)):
            try:
                self.table.put_item(
                    Item={
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
            except Exception as exc:
                if not _is_condition_failure(exc):
                    raise classify_client_error(exc, "dynamodb:PutItem") from exc
        return fresh

    def budget_holders(self, key: str) -> dict[str, dict[str, Any]]:
        """The live holders of a budget: {impairment id: {"units", "expires"}}."""
        now = int(clock.utc_now().timestamp())
        item = self._get_many([(key, "BUDGET")]).get(key) or {}
        return {h: v for h, v in (item.get("holders") or {}).items() if int(v["expires"]) >= now}

    def _get_many(self, keys: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """Consistent reads of several items by (pk, sk), keyed by pk (BatchGetItem, with its
        unprocessed keys retried)."""
        found: dict[str, dict[str, Any]] = {}
        wanted = [{"pk": pk, "sk": sk} for pk, sk in dict.fromkeys(keys)]
        resource = self.table.meta.client
        for start in range(0, len(wanted), 100):
            request = {self.table_name: {"Keys": wanted[start : start + 100], "ConsistentRead": True}}
            for _ in range(_BUDGET_ATTEMPTS):
                try:
                    response = resource.batch_get_item(RequestItems=request)
                except Exception as exc:
                    raise classify_client_error(exc, "dynamodb:BatchGetItem") from exc
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[item["pk"]] = _from_dynamo(item)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

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
        now = int(clock.utc_now().timestamp())
        signal_epoch = int(signal_time.timestamp())
        wanted = {key: (take_over or {}).get(key) for key in sorted(set(resource_keys))}
        held: dict[str, str] = {}
        for _ in range(_BUDGET_ATTEMPTS):
            if not wanted:
                return held
            try:
                self._put_windows(impairment_id, wanted, now + window_seconds, signal_epoch, now)
                return held
            except _WindowsTaken:
                pass
            for key in list(wanted):
                item = self.table.get_item(Key={"pk": f"LOCK#{key}", "sk": "CORRELATION"}, ConsistentRead=True).get(
                    "Item"
                )
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

    def _put_windows(
        self, impairment_id: str, wanted: dict[str, str | None], expires: int, signal_epoch: int, now: int
    ) -> None:
        """Write this impairment's windows, all or nothing: each only if it is free, expired, already
        this impairment's, or held by the holder it is taken over from. Raises _WindowsTaken."""
        items = [
            self._owned_put(
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
        client = self._client = self._client or aws.client("dynamodb")
        for start in range(0, len(items), 100):  # TransactWriteItems takes at most 100 items
            try:
                client.transact_write_items(TransactItems=items[start : start + 100])
            except Exception as exc:
                if _is_condition_failure(exc):
                    raise _WindowsTaken from exc
                raise classify_client_error(exc, "dynamodb:TransactWriteItems") from exc

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

    # --- region probes: consecutive failed probes of a workload's region -------------------------
    def probe_failed(self, workload: str, region: str, tick: str, error: str, keep_seconds: int) -> dict[str, Any]:
        """Count one failed probe of `workload`'s region and return the probe item as it now is.

        Atomic (an ADD on the item), and counted once per `tick` (the schedule event's id): a
        redelivered or retried tick finds its own id on the item and changes nothing. The first
        failure of a series sets first_failure_at, which stays until the series is reset. The
        item expires `keep_seconds` after its last failure (a probe removed from the configuration
        leaves nothing behind)."""
        now = clock.utc_now()
        key = {"pk": f"PROBE#{workload}", "sk": f"REGION#{region}"}
        try:
            response = self.table.update_item(
                Key=key,
                UpdateExpression=(
                    "ADD failures :one SET first_failure_at = if_not_exists(first_failure_at, :now), "
                    "last_failure_at = :now, last_error = :error, last_tick = :tick, expiration = :expires"
                ),
                ConditionExpression="attribute_not_exists(last_tick) OR last_tick <> :tick",
                ExpressionAttributeValues={
                    ":one": 1,
                    ":now": now.isoformat(),
                    ":error": error[:1024] or "unknown",
                    ":tick": tick,
                    ":expires": int(now.timestamp()) + keep_seconds,
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if not _is_condition_failure(exc):
                raise classify_client_error(exc, "dynamodb:UpdateItem") from exc
            counted = self.get_probe(workload, region)  # this tick was counted already
            if counted is None:  # reset in between: count it as the first of a new series
                return self.probe_failed(workload, region, tick, error, keep_seconds)
            return counted
        return _from_dynamo(response["Attributes"])

    def get_probe(self, workload: str, region: str) -> dict[str, Any] | None:
        """The probe item of a workload's region: None while its probes succeed."""
        try:
            response = self.table.get_item(
                Key={"pk": f"PROBE#{workload}", "sk": f"REGION#{region}"}, ConsistentRead=True
            )
        except Exception as exc:
            raise classify_client_error(exc, "dynamodb:GetItem") from exc
        item = response.get("Item")
        return _from_dynamo(item) if item else None

    def probe_published(self, workload: str, region: str, first_failure_at: str, impairment_id: str) -> None:
        """Note that the impairment of this series of failures is on the bus (it is not published
        again, and a later success clears it). Only for the same series (first_failure_at)."""
        try:
            self.table.update_item(
                Key={"pk": f"PROBE#{workload}", "sk": f"REGION#{region}"},
                UpdateExpression="SET impairment_id = :id, published_at = :now",
                ConditionExpression="first_failure_at = :first",
                ExpressionAttributeValues={
                    ":id": impairment_id,
                    ":now": clock.utc_now().isoformat(),
                    ":first": first_failure_at,
                },
            )
        except Exception as exc:
            if not _is_condition_failure(exc):
                raise classify_client_error(exc, "dynamodb:UpdateItem") from exc

    def reset_probe(self, workload: str, region: str, first_failure_at: str) -> bool:
        """A probe succeeded: forget the series of failures that started at first_failure_at (a
        newer series is left alone). False when there was none left to forget."""
        try:
            self.table.delete_item(
                Key={"pk": f"PROBE#{workload}", "sk": f"REGION#{region}"},
                ConditionExpression="first_failure_at = :first",
                ExpressionAttributeValues={":first": first_failure_at},
            )
            return True
        except Exception as exc:
            if _is_condition_failure(exc):
                return False
            raise classify_client_error(exc, "dynamodb:DeleteItem") from exc

    def _lock_holders(self, resource_keys: list[str]) -> dict[str, str]:
        holders = {}
        for key in resource_keys:
            item = self.table.get_item(Key={"pk": f"LOCK#{key}", "sk": "LOCK"}, ConsistentRead=True).get("Item")
            if item:
                holders[key] = item["owner"]
        return holders


class _WindowsTaken(Exception):
    """Another impairment holds one of the correlation windows being written."""


def _exceeded(claim: Claim, holders: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": claim.name,
        "budget": claim.key,
        "limit": claim.limit,
        "used": sum(int(v["units"]) for v in holders.values()),
        "holders": sorted(holders),
    }


def _retention() -> dict[str, int]:
    """The TTL of an audit record (the table's TTL attribute `expiration`): the function's
    AUDIT_RETENTION_DAYS after it is written; 0 keeps it forever."""
    from core import settings

    days = settings.load().audit_retention_days
    return {"expiration": int(clock.utc_now().timestamp()) + days * 86400} if days else {}


def _sortable(timestamp: str | None) -> str | None:
    """A UTC timestamp that sorts as a string (signals come with different offsets)."""
    if not timestamp:
        return None
    return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_condition_failure(exc: Exception) -> bool:
    """Whether a write failed because its condition was not met (and only that): a conditional
    write's ConditionalCheckFailedException, or a transaction cancelled with a
    ConditionalCheckFailed reason. A transaction cancelled for any other reason (a conflict with
    another transaction, throttling) or for reasons it does not say is not one: it goes to
    core.errors.classify_client_error, which retries conflicts and throttling."""
    from botocore.exceptions import ClientError

    from core.errors import CONDITION_FAILED, TRANSACTION_CANCELLED, cancellation_codes

    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code == TRANSACTION_CANCELLED:
        return CONDITION_FAILED in cancellation_codes(exc.response)
    return False
