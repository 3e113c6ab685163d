"""The recovery table under contention: a transaction DynamoDB cancels because another one holds
an item is retried, never read as a condition failure nor escalated."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from core.errors import RecoveryInProgress, TransientError
from core.store import Claim, RecoveryStore
from tests.builders import REGION, TABLE_NAME
from tests.wire import error_of


def cancelled(*reasons: str) -> Exception:
    """TransactionCanceledException as botocore raises it, with DynamoDB's reasons in item order."""
    message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(reasons)}]"
    return error_of(
        "dynamodb",
        "TransactionCanceledException",
        400,
        Message=message,
        CancellationReasons=[{"Code": r} for r in reasons],
    )[1]


class CancelledTransactions:
    """The table's client, except that TransactWriteItems is cancelled with `error`, as DynamoDB
    cancels it when a concurrent transaction writes the same item."""

    def __init__(self, error: Exception) -> None:
        self._client = boto3.client("dynamodb", region_name=REGION)
        self.error = error
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **_: Any) -> Any:
        self.transactions += 1
        raise self.error


def budget(limit: int = 10) -> Claim:
    return Claim(name="rate_limit", key="BUDGET#workload#web-api", limit=limit, units=1, expires_at=4102444800)


def test_a_budget_transaction_cancelled_for_a_conflict_is_retried_not_escalated(store):
    # Given another recovery's transaction holds the budget item (a storm of recoveries)
    client = CancelledTransactions(cancelled("TransactionConflict"))
    contended = RecoveryStore(TABLE_NAME, client=client)

    # When this recovery takes its budget
    with pytest.raises(TransientError) as caught:
        contended.take_budgets("web-api-1", [budget()])

    # Then the task fails with a retryable error (the state machine retries it with backoff),
    # where before it was permanent and the healthy recovery was escalated
    assert caught.value.details["code"] == "TransactionCanceledException"
    assert caught.value.details["cancellation_reasons"] == ["TransactionConflict"]
    assert client.transactions == 1


def test_a_lock_transaction_cancelled_for_a_conflict_is_not_read_as_a_lock_held(store):
    # Given the lock transaction is cancelled because another transaction touches the lock item
    contended = RecoveryStore(TABLE_NAME, client=CancelledTransactions(cancelled("None", "TransactionConflict")))

    # When the recovery locks its resources, it is told to retry, not that someone holds them
    with pytest.raises(TransientError):
        contended.acquire_locks("web-api-1", ["ec2:instance:i-0abc123def4567890", "autoscaling:group:web-api-asg"], 600)


def test_a_lock_transaction_cancelled_by_its_condition_is_a_lock_held(store):
    # Another recovery holds one of the resources: the condition failed, which is the real answer
    store.acquire_locks("web-api-0", ["autoscaling:group:web-api-asg"], 600)
    contended = RecoveryStore(TABLE_NAME, client=CancelledTransactions(cancelled("ConditionalCheckFailed", "None")))

    with pytest.raises(RecoveryInProgress):
        contended.acquire_locks("web-api-1", ["autoscaling:group:web-api-asg", "ec2:instance:i-0abc123def4567890"], 600)


class Throttled:
    """The table's client, except that the named operations are throttled, as DynamoDB answers
    when a table's throughput is exceeded."""

    def __init__(self, *operations: str) -> None:
        self._client = boto3.client("dynamodb", region_name=REGION)
        self.operations = set(operations)
        self.throttled: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self.operations:
            return getattr(self._client, name)

        def throttle(**_: Any) -> Any:
            self.throttled.append(name)
            raise error_of("dynamodb", "ProvisionedThroughputExceededException", 400)[1]

        return throttle


def _recorded(store: RecoveryStore) -> None:
    """An impairment with one action step, a lock, a budget and a probe, as the workflow leaves them."""
    store.put_impairment(
        {"impairment_id": "web-api-1", "workload": "web-api", "detected_at": "2026-01-01T00:00:00+00:00"},
        status="detected",
    )
    store.put_action("web-api-1", 0, "apply", {"status": "started"})


# Every read the store makes, and each operation it is made with.
READS = {
    "get_impairment": ("get_item", lambda s: s.get_impairment("web-api-1")),
    "get_action": ("get_item", lambda s: s.get_action("web-api-1", 0, "apply")),
    "get_switches": ("get_item", lambda s: s.get_switches()),
    "get_probe": ("get_item", lambda s: s.get_probe("web-api", "us-east-1")),
    "lock holders": ("get_item", lambda s: s._lock_holders(["autoscaling:group:web-api-asg"])),
    "budget_holders": ("batch_get_item", lambda s: s.budget_holders("BUDGET#workload#web-api")),
    "list_impairments (query)": ("query", lambda s: s.list_impairments("web-api")),
    "list_actions (query)": ("query", lambda s: s.list_actions("web-api-1")),
}


@pytest.mark.parametrize("read", sorted(READS))
def test_a_throttled_read_is_transient(store: RecoveryStore, read: str) -> None:
    # Given the table is throttled for this read
    operation, do = READS[read]
    _recorded(store)
    client = Throttled(operation)
    throttled = RecoveryStore(TABLE_NAME, client=client)

    # When the store reads, the task fails with a retryable error naming the call and the code
    # (the state machine retries it), not botocore's ClientError (which it would escalate)
    with pytest.raises(TransientError) as caught:
        do(throttled)
    assert client.throttled == [operation]
    assert caught.value.details["code"] == "ProvisionedThroughputExceededException"
    assert caught.value.details["operation"].startswith("dynamodb:")


# The writes that used to escape classification, and others on the same path.
WRITES = {
    "link_signal (append)": (
        "update_item",
        lambda s: s.link_signal("web-api-1", {"signal": {"signal_time": "2026-01-01T00:00:00+00:00"}}),
    ),
    "set_paused (switches)": ("update_item", lambda s: s.set_paused(True, "freeze", "ops")),
    "set_plan_enabled (switches)": ("get_item", lambda s: s.set_plan_enabled("replace_instance", False, "ops")),
    "update_impairment": ("update_item", lambda s: s.update_impairment("web-api-1", status="admitted")),
    "put_action": ("put_item", lambda s: s.put_action("web-api-1", 1, "apply", {"status": "started"})),
    "release_locks": ("delete_item", lambda s: s.release_locks("web-api-1", ["x"], concurrency=False)),
    "claim_escalation": ("put_item", lambda s: s.claim_escalation("web-api-1", ["x"], 600)),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_throttled_write_is_transient(store: RecoveryStore, write: str) -> None:
    operation, do = WRITES[write]
    _recorded(store)
    client = Throttled(operation)

    with pytest.raises(TransientError) as caught:
        do(RecoveryStore(TABLE_NAME, client=client))
    assert client.throttled == [operation]
    assert caught.value.details["code"] == "ProvisionedThroughputExceededException"


def test_a_read_denied_is_permanent(store: RecoveryStore) -> None:
    # Not every failure is retried: AccessDenied (a role without dynamodb:Query) is permanent,
    # classified like the transactions' failures.
    from core.errors import PermanentError

    class Denied(Throttled):
        def __getattr__(self, name: str) -> Any:
            if name != "query":
                return getattr(self._client, name)

            def deny(**_: Any) -> Any:
                raise error_of("dynamodb", "AccessDeniedException", 400)[1]

            return deny

    with pytest.raises(PermanentError) as caught:
        RecoveryStore(TABLE_NAME, client=Denied()).list_actions("web-api-1")
    assert not isinstance(caught.value, TransientError)
    assert caught.value.details == {"operation": "dynamodb:Query", "code": "AccessDeniedException"}
