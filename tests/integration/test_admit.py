"""Admit under moto: one recovery per resource at a time, with locks that expire and re-entry,
and the plan chosen and recorded in the same transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import InvalidInput, RecoveryInProgress
from orchestration import admit
from tests.builders import SIGNAL_TIME, get_item, impairment, use_runtime_config

INSTANCE = "i-0abc123def4567890"
OTHER_INSTANCE = "i-0fedcba9876543210"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:recovery:"


def admit_event(model, execution_suffix: str = "") -> dict:
    return {
        "impairment": model.model_dump(mode="json"),
        "execution": EXECUTION + model.impairment_id + execution_suffix,
    }


def lock_owner(resource_key: str) -> str | None:
    item = get_item(f"LOCK#{resource_key}", "LOCK")
    return item["owner"] if item else None


def first_impairment(**kwargs):
    return impairment(instances=[INSTANCE], **kwargs)


def second_impairment(**kwargs):
    # Another alarm firing a minute later about the same instance: a different impairment
    return impairment(instances=[INSTANCE], signal_id="arn:aws:cloudwatch:us-east-1:123456789012:alarm:cpu", **kwargs)


# Longer than the plan may hold the locks: they are held for the TTL (a longer plan's hold is
# tested in tests/integration/test_admit_plan.py).
TTL = 86400
PLAN = {
    "name": "replace-failed-instance",
    "match": {"impairment_types": ["instance_failure"]},
    "steps": [{"action": "replace_instance"}],
}


@pytest.fixture(autouse=True)
def locks_and_plans(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCK_TTL_SECONDS", str(TTL))
    use_runtime_config(monkeypatch, tmp_path, plans=[PLAN])


def test_admit_records_the_impairment_and_locks_its_resources(store, lambda_context, frozen_clock):
    # Given a new impairment of one instance
    model = first_impairment()

    # When it is admitted
    result = admit.handler(admit_event(model), lambda_context)

    # Then its instance is locked by it, with an expiry, and its record says admitted, with MTTD
    assert result["admission"]["lock_keys"] == [f"ec2:instance/{INSTANCE}"]
    assert lock_owner(f"ec2:instance/{INSTANCE}") == model.impairment_id
    lock = get_item(f"LOCK#ec2:instance/{INSTANCE}", "LOCK")
    assert int(lock["expiration"]) == int(frozen_clock.now.timestamp()) + TTL
    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "recovering" and record["plan"] == "replace-failed-instance"
    assert record["lock_keys"] == [f"ec2:instance/{INSTANCE}"]
    assert record["mttd_seconds"] == model.mttd_seconds
    assert record["execution_arn"].endswith(model.impairment_id)


def test_a_second_impairment_of_a_locked_instance_is_skipped_and_recorded(store, lambda_context, frozen_clock):
    # Given one impairment holds the lock on the instance
    first = first_impairment()
    admit.handler(admit_event(first), lambda_context)

    # When a different impairment of the same instance is admitted
    second = second_impairment()
    assert second.impairment_id != first.impairment_id
    with pytest.raises(RecoveryInProgress) as caught:
        admit.handler(admit_event(second), lambda_context)

    # Then it is refused, naming the holder; its record says skipped; the first keeps the lock
    assert caught.value.details["holders"] == {f"ec2:instance/{INSTANCE}": first.impairment_id}
    record = store.get_impairment(second.impairment_id)
    assert record["status"] == "skipped"
    assert record["outcome"] == "skipped"
    assert first.impairment_id in record["reason"]
    assert lock_owner(f"ec2:instance/{INSTANCE}") == first.impairment_id
    assert store.get_impairment(first.impairment_id)["status"] == "recovering"


def test_locks_are_all_or_nothing(store, lambda_context, frozen_clock):
    # Given one impairment holds the first instance
    admit.handler(admit_event(first_impairment()), lambda_context)

    # When an impairment of both instances is refused
    both = impairment(instances=[INSTANCE, OTHER_INSTANCE], signal_id="arn:aws:cloudwatch:us-east-1:1:alarm:both")
    with pytest.raises(RecoveryInProgress):
        admit.handler(admit_event(both), lambda_context)

    # Then it did not keep a lock on the other instance either
    assert lock_owner(f"ec2:instance/{OTHER_INSTANCE}") is None


def test_an_expired_lock_is_taken_over(store, lambda_context, frozen_clock):
    # Given a recovery locked the instance and then vanished without releasing the lock
    first = first_impairment()
    admit.handler(admit_event(first), lambda_context)

    # When a new impairment of the instance arrives after the lock's TTL
    frozen_clock.advance(TTL + 1)
    second = second_impairment(detected_at=SIGNAL_TIME + timedelta(seconds=TTL + 1))
    admit.handler(admit_event(second), lambda_context)

    # Then it takes the lock over and is admitted
    assert lock_owner(f"ec2:instance/{INSTANCE}") == second.impairment_id
    assert store.get_impairment(second.impairment_id)["status"] == "recovering"


def test_a_lock_within_its_ttl_still_holds(store, lambda_context, frozen_clock):
    first = first_impairment()
    admit.handler(admit_event(first), lambda_context)

    frozen_clock.advance(TTL - 1)
    with pytest.raises(RecoveryInProgress):
        admit.handler(admit_event(second_impairment()), lambda_context)

    assert lock_owner(f"ec2:instance/{INSTANCE}") == first.impairment_id


def test_the_same_impairment_admitted_again_is_fine(store, lambda_context, frozen_clock):
    # Given an impairment was admitted (and its lock is held by itself)
    model = first_impairment()
    first = admit.handler(admit_event(model), lambda_context)

    # When the Admit task is retried
    frozen_clock.advance(30)
    again = admit.handler(admit_event(model), lambda_context)

    # Then it succeeds, still holds the lock, with the expiry pushed out, and stays recovering
    assert again["admission"]["lock_keys"] == first["admission"]["lock_keys"]
    assert again["plan"]["name"] == first["plan"]["name"]
    assert lock_owner(f"ec2:instance/{INSTANCE}") == model.impairment_id
    lock = get_item(f"LOCK#ec2:instance/{INSTANCE}", "LOCK")
    assert int(lock["expiration"]) == int(frozen_clock.now.timestamp()) + TTL
    assert store.get_impairment(model.impairment_id)["status"] == "recovering"


def test_a_recorded_impairment_is_admitted_with_its_plan_in_one_call(store, lambda_context, dynamodb_calls):
    # Given StartRecovery recorded the impairment at detection, and another plan disabled
    model = first_impairment()
    store.put_impairment(model.model_dump(mode="json"), status="detected", mttd_seconds=model.mttd_seconds)
    store.set_plan_enabled("some-other-plan", False, actor="oncall")
    dynamodb_calls.clear()

    # When it is admitted: one transaction checks the kill switch and the plan's switch, locks
    # and records the admission and the plan (the switches are not read before it)
    state = admit.handler(admit_event(model), lambda_context)

    assert dynamodb_calls == ["TransactWriteItems"]
    assert lock_owner(f"ec2:instance/{INSTANCE}") == model.impairment_id
    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "recovering"
    assert record["lock_keys"] == [f"ec2:instance/{INSTANCE}"]
    assert record["execution_arn"].endswith(model.impairment_id)
    assert record["plan"] == "replace-failed-instance" and record["dry_run"] is False
    assert record["plan_state"] == state["plan"]
    assert record["mttd_seconds"] == model.mttd_seconds  # StartRecovery's fields kept


def test_paused_after_detection_the_recorded_impairment_is_skipped_and_locks_nothing(store, lambda_context):
    from core.errors import RecoveryPaused

    # Given an impairment recorded at detection, then the kill switch turned on before Admit ran
    model = first_impairment()
    store.put_impairment(model.model_dump(mode="json"), status="detected", mttd_seconds=model.mttd_seconds)
    store.set_paused(True, "change freeze", "oncall")

    # When it is admitted, Then it is skipped with the reason, and its instance is not locked
    with pytest.raises(RecoveryPaused, match="change freeze"):
        admit.handler(admit_event(model), lambda_context)
    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "skipped" and "plan" not in record
    assert lock_owner(f"ec2:instance/{INSTANCE}") is None


@pytest.mark.parametrize("event", [{}, {"impairment": {"impairment_id": "x"}}, {"impairment": None}, []])
def test_an_invalid_impairment_is_refused_and_locks_nothing(store, lambda_context, event):
    with pytest.raises(InvalidInput):
        admit.handler(event, lambda_context)

    assert store.table.scan()["Items"] == []


def test_while_paused_an_impairment_is_recorded_as_skipped_and_nothing_is_locked(store, lambda_context):
    from core.errors import RecoveryPaused

    # Given the kill switch is on
    store.set_paused(True, "change freeze", "oncall")
    model = impairment()

    # When an impairment is admitted, Then it is refused, recorded as skipped, with the reason
    with pytest.raises(RecoveryPaused, match="change freeze"):
        admit.handler({"impairment": model.model_dump(mode="json")}, lambda_context)
    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "skipped"
    assert "paused" in record["reason"]
    assert get_item(f"LOCK#{model.affected_resources[0].key}", "LOCK") is None

    # And once resumed, the same impairment is admitted
    store.set_paused(False, actor="oncall")
    assert admit.handler({"impairment": model.model_dump(mode="json")}, lambda_context)["admission"]["lock_keys"]
