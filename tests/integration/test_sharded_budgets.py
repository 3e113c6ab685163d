"""Sharded budgets (core/budgets.py, core/shards.py): a rate or blast-radius budget spread over
shard items stays exact under racing takers, a holding may be split across shards and is found
again wherever it is, every shard holding is given back, the healthy floor is serialized, and a
storm of impaired instances writes each shard only its share of times."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from actions.fleet import Fleet
from core import guardrails, shards
from core.budgets import MAX_SHARDS, Claim
from core.errors import TransientError
from orchestration.check_guardrails import _blast_claim, _GroupDecision

FAR = 4102444800
RATE = "BUDGET#rate#plan#replace"


def _rate(limit: int, units: int = 1) -> Claim:
    return Claim(guardrails.RATE_LIMIT, RATE, limit, units, FAR)


@pytest.fixture
def atomic(monkeypatch) -> Counter:
    """moto applying each call atomically, as DynamoDB does; counts each item's successful puts
    of a transaction (the writes a hot item would take)."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    written: Counter = Counter()
    for name in ("transact_write_items", "batch_get_item", "update_item", "get_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            with lock:
                result = _original(self, *args, **kwargs)
                if _name == "transact_write_items":
                    for item in args[0] if args else kwargs.get("transact_items", []):
                        put = item.get("Put")
                        if put:
                            written[put["Item"]["pk"]["S"]] += 1
                return result

        monkeypatch.setattr(DynamoDBBackend, name, locked)
    return written


def _race(takers: list[str], take: Callable[[str], Any]) -> dict[str, Any]:
    """Every taker at once, each retrying a transient error (as the state machine would)."""
    outcomes: dict[str, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(takers), timeout=30)

    def run(taker: str) -> None:
        try:
            start.wait()
            while True:
                try:
                    outcomes[taker] = take(taker)
                    return
                except TransientError:
                    continue
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in takers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]
    return outcomes


def _shard_units(store, key: str, n: int) -> list[int]:
    items = store._db.get_many([(shards.shard_key(key, i), "BUDGET") for i in range(n)])
    return [shards.used(shards.live(items.get(shards.shard_key(key, i)), 0)) for i in range(n)]


@pytest.mark.parametrize(("limit", "units", "takers"), [(36, 1, 44), (5, 2, 5)])
def test_racing_takers_never_exceed_the_limit_across_shards(store, atomic, limit, units, takers):
    # Given more takers than the limit allows, racing (36 over 32 shards: four of two units and
    # 28 of one; or units of two over five shards of one: every holding split across two)
    ids = [f"web-api-{n:02d}" for n in range(takers)]

    outcomes = _race(ids, lambda taker: store.take_budgets(taker, [_rate(limit, units)]))

    # Then exactly as many as fit were given their units, never more, each shard within its cap
    granted = [t for t, o in outcomes.items() if not o.exceeded]
    assert len(outcomes) == takers
    assert len(granted) == limit // units
    n = min(limit, MAX_SHARDS)
    per_shard = _shard_units(store, RATE, n)
    assert sum(per_shard) == len(granted) * units
    assert all(u <= cap for u, cap in zip(per_shard, shards.caps(limit, n), strict=True))
    holders = store.budget_holders(RATE)
    assert sorted(holders) == sorted(granted)
    assert all(h["units"] == units for h in holders.values())


def test_units_are_split_across_shards_and_a_retry_keeps_its_holding(store, dynamodb_calls):
    # Given a limit of three (three shards of one unit)
    first = store.take_budgets("web-api-1", [_rate(3, units=2)])

    # Then two units are held in two shards, as one holding
    assert first.exceeded == [] and len(first.held[RATE]) == 2
    assert store.budget_holders(RATE)["web-api-1"]["units"] == 2

    # When it is retried, it keeps them where they are, writing nothing
    dynamodb_calls.clear()
    again = store.take_budgets("web-api-1", [_rate(3, units=2)])
    assert again.exceeded == [] and again.held == first.held
    assert "TransactWriteItems" not in dynamodb_calls

    # And another's two units no longer fit (one is left), one does
    over = store.take_budgets("web-api-2", [_rate(3, units=2)])
    assert over.exceeded == [{"name": "rate_limit", "budget": RATE, "limit": 3, "used": 2, "holders": ["web-api-1"]}]
    assert store.take_budgets("web-api-3", [_rate(3)]).exceeded == []


def _held_now(store, limit: int, holders: int, expires: int) -> None:
    """`holders` takers of the rate budget, each one unit until `expires`."""
    for n in range(holders):
        assert store.take_budgets(f"earlier-{n:02d}", [Claim(guardrails.RATE_LIMIT, RATE, limit, 1, expires)]).held


def test_a_stale_read_of_the_last_units_of_a_burst_is_read_again_and_writes_nothing_once_spent(
    store, frozen_clock, dynamodb_calls, item_writes
):
    # Given a rate of 20 of which a burst took 17 just now, and a recovery that read it then
    # (CheckGuardrails' first read: 3 units left as it saw them)
    now = int(frozen_clock.now.timestamp())
    claim = Claim(guardrails.RATE_LIMIT, RATE, 20, 1, now + 3600)
    _held_now(store, 20, 17, now + 3600)
    read = store.read_items(claim.items_read())
    # and the burst's next three took the rest since
    for n in range(3):
        assert store.take_budgets(f"racer-{n}", [claim], read=read).exceeded == []
    assert sum(_shard_units(store, RATE, 20)) == 20
    dynamodb_calls.clear()
    item_writes.clear()

    # When it takes with that read
    taken = store.take_budgets("late", [claim], read=read)

    # Then the budget is read again right before writing: spent, so nothing is written (no
    # transaction on a stale view, which would cost a shard a write)
    assert taken.exceeded and taken.exceeded[0]["used"] == 20
    assert dynamodb_calls == ["BatchGetItem"]
    assert not item_writes


def test_a_calm_budget_is_taken_from_the_callers_read_without_reading_again(store, frozen_clock, dynamodb_calls):
    # Given a rate of 20 of which 17 were taken ten minutes ago, and a recovery that read it
    now = int(frozen_clock.now.timestamp())
    _held_now(store, 20, 17, now + 3000)
    claim = Claim(guardrails.RATE_LIMIT, RATE, 20, 1, now + 3600)
    read = store.read_items(claim.items_read())
    dynamodb_calls.clear()

    # When it takes with that read, it writes at once (no burst: no call more than before)
    assert store.take_budgets("calm", [claim], read=read).exceeded == []
    assert dynamodb_calls == ["TransactWriteItems"]


def test_racers_for_the_last_units_with_stale_reads_never_exceed_the_limit(store, atomic, frozen_clock):
    # Given a rate of 20 of which a burst took 15 just now, and 12 recoveries that each read it
    # before racing for the last 5 (as CheckGuardrails reads before the fleet)
    now = int(frozen_clock.now.timestamp())
    claim = Claim(guardrails.RATE_LIMIT, RATE, 20, 1, now + 3600)
    _held_now(store, 20, 15, now + 3600)
    ids = [f"web-api-{n:02d}" for n in range(12)]
    reads = {taker: store.read_items(claim.items_read()) for taker in ids}

    outcomes = _race(ids, lambda taker: store.take_budgets(taker, [claim], read=reads[taker]))

    # Then exactly 5 were given a unit, each shard within its cap of one
    granted = sorted(t for t, o in outcomes.items() if not o.exceeded)
    assert len(granted) == 5
    assert _shard_units(store, RATE, 20) == [1] * 20
    assert sorted(h for h in store.budget_holders(RATE) if not h.startswith("earlier-")) == granted


def test_a_limit_of_500_reads_its_32_shards_in_one_batch_get(store, dynamodb_calls):
    claim = _rate(500)
    assert len(claim.shard_keys()) == MAX_SHARDS
    assert sum(shards.caps(500, MAX_SHARDS)) == 500

    taken = store.take_budgets("web-api-1", [claim])

    assert taken.exceeded == []
    assert dynamodb_calls == ["BatchGetItem", "TransactWriteItems"]


def test_the_previous_versions_single_item_counts_until_it_expires(store, frozen_clock):
    # Given the budget's item as the version before shards left it: three live holders of five
    now = int(frozen_clock.now.timestamp())
    store.table.put_item(
        Item={
            "pk": RATE,
            "sk": "BUDGET",
            "version": 3,
            "holders": {f"old-{n}": {"units": 1, "expires": now + 60} for n in range(3)},
        }
    )

    # Then two more recoveries may take it, not five, and an old holder's retry counts once
    assert [store.take_budgets(f"new-{n}", [_rate(5)]).exceeded == [] for n in range(3)] == [True, True, False]
    assert store.take_budgets("old-0", [_rate(5)]).exceeded == []

    # When the old holdings expire, their units are free again
    frozen_clock.advance(61)
    assert store.take_budgets("new-2", [_rate(5)]).exceeded == []


# --- the blast radius -------------------------------------------------------------------------


def _fleet(size: int, min_size: int, impaired: int = 0) -> Fleet:
    instances = [
        {"InstanceId": f"i-{n:04d}", "LifecycleState": "InService", "HealthStatus": "Healthy"} for n in range(size)
    ]
    group = {"AutoScalingGroupName": "web", "Instances": instances, "MinSize": min_size, "DesiredCapacity": size}
    return Fleet(group, {f"i-{n:04d}": "stopped" for n in range(impaired)})


def _blast(fleet: Fleet, wanted: list[str]) -> tuple[Claim, _GroupDecision]:
    group = _GroupDecision(fleet, wanted, guardrails.BlastRadius())
    limit = guardrails.blast_radius_limit(len(fleet.group["Instances"]), 1 / 3)
    return _blast_claim("web", limit, FAR, group.decide), group


def test_racing_takers_of_healthy_instances_never_break_the_floor(store, atomic):
    # Given a group of 30 that must keep 26 healthy (the share alone would allow ten), and eight
    # recoveries each acting on a different healthy instance at once
    fleet = _fleet(30, min_size=26)
    wanted = {f"web-api-{n}": f"i-{n:04d}" for n in range(8)}

    def take(taker: str) -> list[str]:
        claim, group = _blast(fleet, [wanted[taker]])
        assert store.take_budgets(taker, [claim]).exceeded == []
        return group.allowed

    outcomes = _race(list(wanted), take)

    # Then four are acted on, never five: the healthy item serialized them
    acted = sorted(i for allowed in outcomes.values() for i in allowed)
    assert len(acted) == 30 - 26
    healthy = store._db.get_many([(guardrails.blast_healthy_key("web"), "BUDGET")])
    held = shards.merged([shards.live(healthy.get(guardrails.blast_healthy_key("web")), 0)])
    assert sorted(i for h in held.values() for i in h["instances"]) == acted


def test_a_storm_of_impaired_instances_writes_each_shard_its_share_and_never_the_healthy_item(store, atomic):
    # Given a group of 150 (a third: 50 at once) and 60 recoveries of its impaired instances, racing
    fleet = _fleet(150, min_size=100, impaired=60)
    ids = {f"web-api-{n:02d}": f"i-{n:04d}" for n in range(60)}

    def take(taker: str) -> list[str]:
        claim, group = _blast(fleet, [ids[taker]])
        store.take_budgets(taker, [claim])
        return group.allowed

    outcomes = _race(list(ids), take)

    # Then 50 are acted on, each shard was written at most its share of times (no lost race
    # writes anything), and the healthy floor's item was never written: impaired instances take
    # no healthy capacity
    assert sum(len(a) for a in outcomes.values()) == 50
    share = math.ceil(50 / MAX_SHARDS)
    assert max(atomic.values()) <= share
    assert guardrails.blast_healthy_key("web") not in atomic
    assert set(atomic) <= {shards.shard_key(guardrails.blast_key("web"), i) for i in range(MAX_SHARDS)}


def test_every_shard_holding_and_the_healthy_item_are_given_back(store):
    # Given a recovery acting on three instances of a group of nine (limit 3: three shards of
    # one), one of them healthy: its holding split over three shards and the healthy item
    fleet = _fleet(9, min_size=0, impaired=2)
    claim, group = _blast(fleet, ["i-0000", "i-0001", "i-0005"])
    taken = store.take_budgets("web-api-1", [claim])
    held = taken.held[guardrails.blast_key("web")]
    assert group.allowed == ["i-0000", "i-0001", "i-0005"]
    assert len(held) == 4 and guardrails.blast_healthy_key("web") in held
    store.put_impairment({"impairment_id": "web-api-1", "workload": "web-api"}, status="admitted")

    # When it verifies (finalize gives back what its summary names)
    store.finish("web-api-1", [], held, slots={}, status="recovered")

    # Then nothing of the group is held, and another may act on three at once
    assert store.budget_holders(guardrails.blast_key("web")) == {}
    again, other = _blast(fleet, ["i-0006", "i-0007", "i-0008"])
    assert store.take_budgets("web-api-2", [again]).exceeded == [] and len(other.allowed) == 3


def test_a_group_that_shrank_still_counts_what_its_shards_hold(store):
    # Given four instances of a group of twelve acted on (its limit then), in four shards
    big = _fleet(12, min_size=0, impaired=6)
    claim, _ = _blast(big, ["i-0000", "i-0001", "i-0002", "i-0003"])
    store.take_budgets("web-api-1", [claim])

    # When the group is read at six instances (limit two) and another instance fails
    small = Fleet({**big.group, "Instances": big.group["Instances"][:6], "DesiredCapacity": 6}, big.failing)
    claim, group = _blast(small, ["i-0004"])
    taken = store.take_budgets("web-api-2", [claim])

    # Then it is deferred: the holdings in shards past the smaller limit's count still
    assert taken.exceeded == [] and group.allowed == [] and group.deferred == ["i-0004"]
    assert group.trip is not None and group.trip.evidence["already_acted"] == ["i-0000", "i-0001", "i-0002", "i-0003"]
