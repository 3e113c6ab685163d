"""The recovery table as the repositories share it (core/store.py composes them): one lazily
made client and table, the conversions to and from DynamoDB's types, and one way of reading a
failed call: a condition not met is ConditionFailed, anything else core.errors classifies
(throttling, conflicts, a transaction cancelled for a retryable reason: TransientError)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
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
    """A conditional write's condition was not met (a transaction's, for at least one item)."""


def call(operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    """One DynamoDB call ("dynamodb:Operation"): ConditionFailed when its condition was not met,
    a core.errors RecoveryError for any other failure."""
    try:
        return method(**kwargs)
    except Exception as exc:
        if is_condition_failure(exc):
            raise ConditionFailed(operation) from exc
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
    """The table, its boto3 resource and low-level client made on first use. Pass a boto3
    DynamoDB client to inject a fake."""

    def __init__(self, name: str, client: Any = None) -> None:
        self.name = name
        self._client = client
        self._resource: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    @property
    def resource(self) -> Any:
        if self._resource is None:
            import boto3

            self._resource = boto3.resource("dynamodb", region_name=self.client.meta.region_name).Table(self.name)
        return self._resource

    def query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a query."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.resource.query(**kwargs)
            items.extend(from_dynamo(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_many(self, keys: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """Consistent reads of several items by (pk, sk), keyed by pk (BatchGetItem, with its
        unprocessed keys retried)."""
        found: dict[str, dict[str, Any]] = {}
        wanted = [{"pk": pk, "sk": sk} for pk, sk in dict.fromkeys(keys)]
        resource = self.resource.meta.client
        for start in range(0, len(wanted), 100):
            request = {self.name: {"Keys": wanted[start : start + 100], "ConsistentRead": True}}
            for _ in range(ATTEMPTS):
                response = call("dynamodb:BatchGetItem", resource.batch_get_item, RequestItems=request)
                for item in response.get("Responses", {}).get(self.name, []):
                    found[item["pk"]] = from_dynamo(item)
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
            call(
                "dynamodb:DeleteItem",
                self.resource.delete_item,
                Key={"pk": pk, "sk": sk},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": owner},
            )


def set_expression(fields: dict[str, Any]) -> dict[str, Any]:
    """The UpdateItem arguments that SET every field."""
    return {
        "UpdateExpression": "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
        "ExpressionAttributeNames": {f"#f{i}": k for i, k in enumerate(fields)},
        "ExpressionAttributeValues": to_dynamo({f":v{i}": v for i, v in enumerate(fields.values())}),
    }


def to_dynamo(value: Any) -> Any:
    # DynamoDB wants Decimal, not float; a JSON round trip also turns datetimes into strings.
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def to_attribute_values(item: dict[str, Any]) -> dict[str, Any]:
    """A plain item as the low-level client's attribute values."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in to_dynamo(item).items()}


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
