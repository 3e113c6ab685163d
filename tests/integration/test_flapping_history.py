"""The recovery history the flapping guardrail reads (core/history.py): noted by Finalize in the
transaction that ends a recovery that verified, pruned of what CheckGuardrails found outside the
window, and read back by CheckGuardrails' flapping check."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import guardrails, history
from core.errors import GuardrailTripped
from core.guardrails import Flapping
from core.store import CONCURRENCY_BUDGET
from orchestration import admit, check_guardrails, finalize
from tests.builders import build_workload, capture_topic, impairment

INSTANCE = "i-0abc123def4567890"
GROUP = {"auto_scaling_group": "web-api-asg"}

pytestmark = pytest.mark.usefixtures("any_plan")  # Admit chooses a plan


def _finalized(store, lambda_context, model, checked: dict, plan: dict | None = None) -> None:
    state = admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, lambda_context)
    admission = state["admission"]
    event = {"impairment": model.model_dump(mode="json"), "admission": admission, "guardrails": checked}
    if plan:
        event["plan"] = plan
    finalize.handler(event, lambda_context)


def test_a_recovery_that_verified_is_noted_in_its_history_in_the_same_transaction(
    store, lambda_context, frozen_clock, dynamodb_calls
):
    # Given a group's history naming a recovery resolved two hours ago (outside the window when
    # this one was checked) in its shard 0 (the item the version before the shards wrote), and
    # a recovery holding concurrency slot 3, whose shard is 0
    model = impairment(instances=[INSTANCE], detected_at=frozen_clock.now, scope=GROUP)
    slots = {CONCURRENCY_BUDGET: f"{CONCURRENCY_BUDGET}#3"}
    keys = history.noted_keys(model.model_dump(mode="json"), slots[CONCURRENCY_BUDGET])
    old = (frozen_clock.now - timedelta(hours=2)).isoformat()
    store.table.put_item(Item={"pk": keys[-1], "sk": "HISTORY", "recovered#old": old, "expiration": 1})
    store.table.put_item(Item={"pk": slots[CONCURRENCY_BUDGET], "sk": "BUDGET", "owner": model.impairment_id})
    stale = {keys[-1]: ["recovered#old"]}
    checked = {"groups": [], "slots": slots, "history": {"keep_seconds": 1800, "stale": stale}}
    dynamodb_calls.clear()

    # When it is finalized
    admission = admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, lambda_context)
    store.correlate(model.impairment_id, [f"ec2:instance/{INSTANCE}"], 300, frozen_clock.now)
    dynamodb_calls.clear()
    finalize.handler(
        {"impairment": model.model_dump(mode="json"), "admission": admission, "guardrails": checked}, lambda_context
    )

    # Then one call ended it and noted it in its instance's and its group's history, the stale one gone
    assert dynamodb_calls == ["TransactWriteItems"]
    assert keys == [f"FLAP#ec2:instance/{INSTANCE}", f"FLAP#group#web-api-asg#{model.impairment_type.value}"]
    assert store.history.read(history.keys(model.model_dump(mode="json"))).keys() == set(keys)
    items = store.history.read(keys)
    for key in keys:
        assert items[key][f"recovered#{model.impairment_id}"] == frozen_clock.now.isoformat()
        assert items[key]["expiration"] == int(frozen_clock.now.timestamp()) + 1800
    assert "recovered#old" not in items[keys[-1]]


def test_a_dry_run_is_not_a_recovery_and_is_not_noted(store, lambda_context, frozen_clock):
    model = impairment(instances=[INSTANCE], detected_at=frozen_clock.now, scope=GROUP)

    _finalized(store, lambda_context, model, {}, plan={"name": "p", "steps": [], "dry_run": True})

    assert store.history.read(history.keys(model.model_dump(mode="json"))) == {}


def test_the_fourth_recovery_of_a_group_within_the_window_flaps(store, lambda_context, frozen_clock):
    # Given three recoveries of instances of one group that verified, ten minutes apart (no
    # guardrails summary: the history is kept the default window)
    for n in range(3):
        model = impairment(
            instances=[f"i-{n:017x}"], signal_id=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:a{n}", scope=GROUP
        )
        _finalized(store, lambda_context, model, {})
        frozen_clock.advance(600)

    # When a fourth instance of the group fails, its check reads one history item per key
    fourth = impairment(
        instances=["i-0000000000000000f"], signal_id="arn:aws:cloudwatch:us-east-1:123456789012:alarm:f", scope=GROUP
    )
    record = fourth.model_dump(mode="json")
    items = store.history.read(history.keys(record))
    trip = guardrails.flapping(record, history.recoveries(items.values()), Flapping(), frozen_clock.now)

    # Then it flaps; an hour after the first, only two count
    assert trip is not None and len(trip.evidence["previous_recoveries"]) == 3
    later = frozen_clock.now + timedelta(minutes=31)
    assert guardrails.flapping(record, history.recoveries(items.values()), Flapping(), later) is None


def test_a_groups_history_spread_over_its_shards_still_flaps_at_the_check(
    store, lambda_context, frozen_clock, monkeypatch, tmp_path, dynamodb_calls
):
    # Given three recoveries of instances of one group that verified, each holding another
    # concurrency slot, so each noted in another shard of the group's history
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", capture_topic()[0])
    workload = build_workload(desired=6, max_size=8)
    ids = workload.instance_ids()
    written = set()
    for n, instance in enumerate(ids[:3]):
        model = workload.impairment_of(instance, signal_id=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:a{n}")
        slot = f"{CONCURRENCY_BUDGET}#{n}"
        store.table.put_item(Item={"pk": slot, "sk": "BUDGET", "owner": model.impairment_id})
        _finalized(store, lambda_context, model, {"slots": {CONCURRENCY_BUDGET: slot}})
        written.update(k for k in history.noted_keys(model.model_dump(mode="json"), slot) if "group" in k)
        frozen_clock.advance(60)
    assert len(written) == 3  # three shards, none holding more than one of them

    # When a fourth instance of the group fails and is checked
    fourth = workload.impairment_of(ids[3], signal_id="arn:aws:cloudwatch:us-east-1:123456789012:alarm:d")
    store.put_impairment(fourth.model_dump(mode="json"), status="admitted")
    state = {
        "impairment": fourth.model_dump(mode="json"),
        "plan": {"name": "replace", "steps": [{"index": 0, "action": "replace_instance", "params": {}}]},
        "admission": {"lock_keys": [r.key for r in fourth.affected_resources]},
    }
    dynamodb_calls.clear()
    with pytest.raises(GuardrailTripped) as caught:
        check_guardrails.handler(state, lambda_context, store=store)

    # Then the group's history is the union of its shards, read in the check's one BatchGetItem:
    # three recoveries, the limit, so it flaps
    assert "flapping" in str(caught.value)
    assert dynamodb_calls.count("BatchGetItem") == 1
    checked = store.get_impairment_checked(fourth.impairment_id)
    assert checked["guardrails_tripped"] == ["flapping"]
    assert len(checked["guardrail_trips"][0]["evidence"]["previous_recoveries"]) == 3
