"""The concurrency cap as slots (core/budgets.py): exact under racing takers, each slot written
only by its taker and its holder, released slots taken again, and a cap above BatchGetItem's 100
keys read in pages."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from core.budgets import CONCURRENCY_BUDGET, Claim, slot_key
from core.errors import TransientError
from tests.builders import impairment

FAR = 4102444800


def _claim(limit: int) -> Claim:
    return Claim("concurrency", CONCURRENCY_BUDGET, limit, 1, FAR, slotted=True)


def _recorded(store, n: int) -> list[str]:
    ids = []
    for i in range(n):
        model = impairment(instances=[f"i-{i:017x}"], signal_id=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:a{i}")
        store.put_impairment(model.model_dump(mode="json"), status="admitted")
        ids.append(model.impairment_id)
    return ids


def _live_slots(store) -> dict[str, str]:
    items = store.table.scan()["Items"]
    return {i["pk"]: i["owner"] for i in items if str(i["pk"]).startswith(f"{CONCURRENCY_BUDGET}#")}


def test_racing_takers_never_hold_more_slots_than_the_cap_and_released_slots_are_taken_again(store, monkeypatch):
    from moto.dynamodb.models import DynamoDBBackend

    # Given twelve recoveries racing for a cap of three, each taking, holding, releasing, three
    # times over (DynamoDB applies each write atomically; moto is made to as well)
    cap, rounds = 3, 3
    ids = _recorded(store, 12)
    atomic = threading.RLock()
    for name in ("transact_write_items", "delete_item", "batch_get_item", "update_item", "scan"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with atomic:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)
    most_held = [0]
    taken: Counter = Counter()
    errors: list[BaseException] = []

    def recover(impairment_id: str) -> None:
        try:
            for _ in range(rounds):
                while True:
                    try:
                        result = store.take_budgets(impairment_id, [_claim(cap)])
                    except TransientError:
                        continue  # lost the race too often: the state machine would retry
                    if not result.exceeded:
                        break
                    time.sleep(0.001)
                held = _live_slots(store)
                most_held[0] = max(most_held[0], len(held))
                assert held.get(result.slots[CONCURRENCY_BUDGET]) == impairment_id
                taken[result.slots[CONCURRENCY_BUDGET]] += 1
                store.release_locks(impairment_id, [], slots=result.slots)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    # When they all run at once
    threads = [threading.Thread(target=recover, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then no more than the cap ever held a slot, every round got one, and nothing is left held
    assert not errors, errors[0]
    assert 1 <= most_held[0] <= cap
    assert sum(taken.values()) == len(ids) * rounds
    assert set(taken) <= {slot_key(CONCURRENCY_BUDGET, i) for i in range(cap)}
    assert len(taken) == cap, "every slot was taken, and taken again once released"
    assert _live_slots(store) == {}


def test_a_full_budget_is_exceeded_and_a_retried_take_keeps_its_own_slot(store, dynamodb_calls):
    # Given a cap of two, held by two recoveries
    first, second, third = _recorded(store, 3)
    held = store.take_budgets(first, [_claim(2)]).slots
    store.take_budgets(second, [_claim(2)])
    dynamodb_calls.clear()

    # When the first is retried and a third asks
    again = store.take_budgets(first, [_claim(2)])
    over = store.take_budgets(third, [_claim(2)])

    # Then the first keeps its slot without writing, and the third is told who holds the cap
    assert again.slots == held and again.exceeded == []
    assert "TransactWriteItems" not in dynamodb_calls
    assert over.exceeded == [
        {"name": "concurrency", "budget": CONCURRENCY_BUDGET, "limit": 2, "used": 2, "holders": sorted([first, second])}
    ]
    assert over.slots == {}


def test_an_expired_slot_is_free_again(store, frozen_clock):
    # Given a slot whose holder's time ran out (its execution died and nothing released it)
    first, second = _recorded(store, 2)
    expires = int(frozen_clock.now.timestamp()) + 60
    store.take_budgets(first, [Claim("concurrency", CONCURRENCY_BUDGET, 1, 1, expires, slotted=True)])
    frozen_clock.advance(61)

    # When another recovery takes the only slot, it gets it
    result = store.take_budgets(second, [_claim(1)])

    assert result.exceeded == []
    assert _live_slots(store) == {slot_key(CONCURRENCY_BUDGET, 0): second}


def test_a_cap_above_one_batch_get_is_read_in_pages(store, dynamodb_calls):
    # Given a cap of 250 slots (BatchGetItem reads at most 100 keys)
    (only,) = _recorded(store, 1)
    dynamodb_calls.clear()

    result = store.take_budgets(only, [_claim(250)])

    assert result.exceeded == []
    assert dynamodb_calls.count("BatchGetItem") == 3
    assert store.budget_holders(CONCURRENCY_BUDGET, slots=250).keys() == {only}


def test_a_recovery_ends_by_giving_back_the_slot_its_record_names(store):
    # Given a recovery holding a slot, released by an end path that has only its id (its record
    # names the slot)
    first, second = _recorded(store, 2)
    store.take_budgets(first, [_claim(1)])
    assert store.take_budgets(second, [_claim(1)]).exceeded

    store.release_locks(first, [])

    assert store.take_budgets(second, [_claim(1)]).exceeded == []


def test_a_slotted_claim_is_one_unit_undecided():
    with pytest.raises(ValueError, match="one unit"):
        Claim("concurrency", CONCURRENCY_BUDGET, 5, 2, FAR, slotted=True)


def test_a_take_starts_from_the_callers_read_and_a_stale_read_only_costs_a_lost_race(store, dynamodb_calls):
    # Given two recoveries and a cap of one; the first read the budget while it was free
    first, second = _recorded(store, 2)
    claims = [_claim(1)]
    read = store.read_items([k for c in claims for k in c.items_read()])
    # and the second took the only slot meanwhile
    assert not store.take_budgets(second, claims).exceeded

    # When the first takes from its stale read
    dynamodb_calls.clear()
    taken = store.take_budgets(first, claims, read)

    # Then its write on the stale read lost (the slot was not free), it read again and was refused:
    # never two holders of one slot
    assert [e["holders"] for e in taken.exceeded] == [[second]]
    assert [c for c in dynamodb_calls if c in ("BatchGetItem", "TransactWriteItems")] == [
        "TransactWriteItems",
        "BatchGetItem",
    ]
    assert _live_slots(store) == {slot_key(CONCURRENCY_BUDGET, 0): second}


def test_a_take_from_a_fresh_read_makes_no_read_of_its_own(store, dynamodb_calls):
    (only,) = _recorded(store, 1)
    claims = [_claim(2)]
    read = store.read_items([k for c in claims for k in c.items_read()])
    dynamodb_calls.clear()
    assert not store.take_budgets(only, claims, read).exceeded
    assert "BatchGetItem" not in dynamodb_calls


def test_a_stale_read_of_the_last_free_slots_of_a_burst_is_read_again_and_writes_nothing_once_taken(
    store, frozen_clock, dynamodb_calls, item_writes
):
    # Given a cap of 25 of which a burst took 22 slots just now, and a recovery that read them
    # then (CheckGuardrails' first read: 3 free as it saw them)
    now = int(frozen_clock.now.timestamp())
    claim = Claim("concurrency", CONCURRENCY_BUDGET, 25, 1, now + 900, slotted=True)
    for n in range(22):
        assert store.take_budgets(f"earlier-{n:02d}", [claim]).exceeded == []
    read = store.read_items(claim.items_read())
    # and the burst's next three took the rest since
    for n in range(3):
        assert store.take_budgets(f"racer-{n}", [claim], read=read).exceeded == []
    dynamodb_calls.clear()
    item_writes.clear()

    # When it takes with that read
    taken = store.take_budgets("late", [claim], read=read)

    # Then the slots are read again right before writing: none free, so nothing is written
    assert taken.exceeded and taken.exceeded[0]["used"] == 25
    assert dynamodb_calls == ["BatchGetItem"]
    assert not item_writes
