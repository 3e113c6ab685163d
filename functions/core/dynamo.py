"""The recovery table as the repositories share it (core/store.py composes them): one lazily
made client and table, the conversions to and from DynamoDB's types, and one way of reading a
failed call: a condition not met is ConditionFailed, anything else core.errors classifies
(throttling, conflicts, a transaction cancelled for a retryable reason: TransientError)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core import aws, clock
from core.errors import classify_client_error

GSI1 = "gsi1"
# How many times a repository reads and writes again after losing a race (or reads keys
# BatchGetItem left unprocessed) before the error is transient.
ATTEMPTS = 5


class ConditionFailed(Exception):
    """A conditional write's condition was not met (a transaction's, for at least one item).
    `item`: the item as it was, when the write asked for it (ReturnValuesOnConditionCheckFailure
    ALL_OLD), else None. `items`: of a transaction, the same for each of its items in order (None
    for an item whose condition held or that did not ask)."""

    def __init__(
        self, operation: str, item: dict[str, Any] | None = None, items: list[dict[str, Any] | None] | None = None
    ) -> None:
        super().__init__(operation)
        self.item = item
        self.items = items or []


def call(operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    """One DynamoDB call ("dynamodb:Operation"): ConditionFailed when its condition was not met,
    a core.errors RecoveryError for any other failure."""
    try:
        return method(**kwargs)
    except Exception as exc:
        if is_condition_failure(exc):
            response = getattr(exc, "response", {})
            old = response.get("Item")
            reasons = response.get("CancellationReasons") or []
            items = [
                from_attribute_values(r["Item"]) if isinstance(r, dict) and r.get("Item") else None for r in reasons
            ]
            raise ConditionFailed(operation, from_attribute_values(old) if old else None, items) from exc
        raise classify_client_error(exc, operation) from exc


def is_condition_failure(exc: Exception) -> bool:
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


class Table:
    """The table and the one low-level client every repository calls it with, made on first use
    (aws.client, or `session`'s client when a session is given). Pass a boto3 DynamoDB client to
    inject one (a fake, or recoveryctl's client of a profile): every read and write goes through
    it, and through `call`, so each failure is classified the same way."""

    def __init__(self, name: str, client: Any = None, session: Any = None) -> None:
        self.name = name
        self._client = client
        self._session = session
        self._resource: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._session.client("dynamodb") if self._session is not None else aws.client("dynamodb")
        return self._client

    @property
    def resource(self) -> Any:
        """A boto3 Table resource (of `session` when given) for callers outside the repositories
        (recoveryctl's scan, tests); the repositories use `client`."""
        if self._resource is None:
            import boto3

            maker = self._session if self._session is not None else boto3
            self._resource = maker.resource("dynamodb", region_name=self.client.meta.region_name).Table(self.name)
        return self._resource

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """A consistent read of one item (GetItem); None when there is none."""
        response = call(
            "dynamodb:GetItem",
            self.client.get_item,
            TableName=self.name,
            Key=to_attribute_values(key),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return from_attribute_values(item) if item else None

    def put(self, item: dict[str, Any], **expression: Any) -> None:
        """PutItem of a plain item; `expression`: its ConditionExpression and the names and (plain)
        values it uses. ConditionFailed when the condition was not met."""
        call(
            "dynamodb:PutItem",
            self.client.put_item,
            TableName=self.name,
            Item=to_attribute_values(item),
            **_typed(expression),
        )

    def update(self, key: dict[str, Any], **expression: Any) -> dict[str, Any]:
        """UpdateItem; `expression`: UpdateExpression, ConditionExpression, the names and (plain)
        values they use, ReturnValues. Returns the attributes it asked for ({} for none)."""
        response = call(
            "dynamodb:UpdateItem",
            self.client.update_item,
            TableName=self.name,
            Key=to_attribute_values(key),
            **_typed(expression),
        )
        return from_attribute_values(response.get("Attributes") or {})

    def delete(self, key: dict[str, Any], **expression: Any) -> None:
        """DeleteItem; `expression`: its ConditionExpression and what it uses."""
        call(
            "dynamodb:DeleteItem",
            self.client.delete_item,
            TableName=self.name,
            Key=to_attribute_values(key),
            **_typed(expression),
        )

    def query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a query; `kwargs`: KeyConditionExpression and the (plain) values it uses,
        IndexName, ConsistentRead."""
        return list(self.query_each(**kwargs))

    def query_each(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """query_all an item at a time, a page (`Limit` items, at most 1 MB) read when the last
        one's are used up: a long query is never all in memory."""
        kwargs = {"TableName": self.name, **_typed(kwargs)}
        while True:
            page = call("dynamodb:Query", self.client.query, **kwargs)
            yield from (from_attribute_values(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_many(self, keys: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """Consistent reads of several items by (pk, sk), keyed by pk (BatchGetItem, with its
        unprocessed keys retried): for keys of one item per partition."""
        return {pk: item for (pk, _), item in self.get_keyed(keys).items()}

    def get_keyed(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """get_many keyed by (pk, sk): for several items of one partition (an impairment's record
        and its guardrails' item, read in one call)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        wanted = [to_attribute_values({"pk": pk, "sk": sk}) for pk, sk in dict.fromkeys(keys)]
        for start in range(0, len(wanted), 100):
            request = {self.name: {"Keys": wanted[start : start + 100], "ConsistentRead": True}}
            for _ in range(ATTEMPTS):
                response = call("dynamodb:BatchGetItem", self.client.batch_get_item, RequestItems=request)
                for item in response.get("Responses", {}).get(self.name, []):
                    plain = from_attribute_values(item)
                    found[(plain["pk"], plain["sk"])] = plain
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def transact(self, items: list[dict[str, Any]]) -> None:
        """TransactWriteItems, 100 items at a time (its limit): ConditionFailed when a condition
        was not met."""
        for start in range(0, len(items), 100):
            call(
                "dynamodb:TransactWriteItems",
                self.client.transact_write_items,
                TransactItems=items[start : start + 100],
            )

    def write(self, kind: str, key: dict[str, Any], **expression: Any) -> dict[str, Any]:
        """One item of a transaction (TransactWriteItems): `kind` "Update", "Delete" or
        "ConditionCheck" of the item at `key`, with its expressions (plain values, typed here).
        Folding several writes (and the check of an item read for a decision) into one call is
        what keeps a recovery's calls few (issue 16)."""
        return {kind: {"TableName": self.name, "Key": to_attribute_values(key), **_typed(expression)}}

    def delete_owned_item(self, pk: str, sk: str, owner: str) -> dict[str, Any]:
        """delete_owned as a transaction's Delete (its condition failing cancels the transaction)."""
        return self.write(
            "Delete",
            {"pk": pk, "sk": sk},
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":me": owner},
        )

    def owned_put(
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
                "TableName": self.name,
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

    def delete_owned(self, pk: str, sk: str, owner: str) -> None:
        """Delete an item if `owner` holds it (another's is left alone)."""
        with contextlib.suppress(ConditionFailed):
            self.delete(
                {"pk": pk, "sk": sk},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": owner},
            )


def set_expression(fields: dict[str, Any]) -> dict[str, Any]:
    """The UpdateItem arguments that SET every field (plain values: Table.update types them)."""
    return {
        "UpdateExpression": "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
        "ExpressionAttributeNames": {f"#f{i}": k for i, k in enumerate(fields)},
        "ExpressionAttributeValues": {f":v{i}": v for i, v in enumerate(fields.values())},
    }


def _typed(arguments: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments with their ExpressionAttributeValues as attribute values."""
    values = arguments.get("ExpressionAttributeValues")
    return {**arguments, "ExpressionAttributeValues": to_attribute_values(values)} if values else arguments


def to_dynamo(value: Any) -> Any:
    # DynamoDB wants Decimal, not float; a JSON round trip also turns datetimes into strings.
    return json.loads(json.dumps(value, default=_plain), parse_float=Decimal)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):  # already converted: kept a number
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def to_attribute_values(item: dict[str, Any]) -> dict[str, Any]:
    """A plain item (or ExpressionAttributeValues) as the low-level client's attribute values."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in to_dynamo(item).items()}


def from_attribute_values(item: dict[str, Any]) -> dict[str, Any]:
    """The low-level client's attribute values as a plain item (numbers as int or float)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return from_dynamo({k: deserializer.deserialize(v) for k, v in item.items()})


def from_dynamo(value: Any) -> Any:
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def now_epoch() -> int:
    return int(clock.utc_now().timestamp())


def sortable(timestamp: str | None) -> str | None:
    """A UTC timestamp that sorts as a string (signals come with different offsets)."""
    if not timestamp:
        return None
    return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
