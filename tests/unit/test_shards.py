"""Where a sharded budget's units go (core/shards.py), without I/O."""

from __future__ import annotations

import pytest

from core import shards
from orchestration.finalize import _blast_items

KEYS = [f"B#{i}" for i in range(4)]


@pytest.mark.parametrize(("limit", "n"), [(1, 1), (10, 10), (36, 32), (500, 32), (3, 32), (0, 4), (-2, 4)])
def test_the_caps_add_up_to_the_limit_and_differ_by_one_at_most(limit, n):
    caps = shards.caps(limit, n)
    assert len(caps) == n and sum(caps) == max(0, limit)
    assert max(caps) - min(caps) <= 1


def test_a_holding_goes_to_shards_with_room_from_its_hash_on_and_splits_when_it_must():
    others = {"B#0": {"x": {"units": 1, "expires": 9}}, "B#2": {"y": {"units": 1, "expires": 9}}}
    # a limit of eight: two a shard; B#0 and B#2 have one left, B#1 and B#3 two
    assert shards.place(KEYS, 8, others, 1, [], start=1).parts == {"B#1": 1}
    assert shards.place(KEYS, 8, others, 1, [], start=6).parts == {"B#2": 1}  # 6 % 4 shards with room
    assert shards.place(KEYS, 8, others, 4, [], start=3).parts == {"B#3": 2, "B#0": 1, "B#1": 1}
    assert shards.place(KEYS, 8, others, 7, [], start=0).parts is None  # six left


def test_a_holding_that_changes_stays_in_the_shards_it_holds_first():
    assert shards.place(KEYS, 4, {}, 2, ["B#3"], start=0).parts == {"B#3": 1, "B#0": 1}
    assert shards.place(KEYS, 4, {}, 0, ["B#3"], start=0).parts == {}


def test_a_split_holding_is_read_back_as_one():
    holding = {"units": 3, "expires": 9, "instances": ["i-1", "i-2", "i-3"]}
    parts = shards.split(holding, {"B#1": 2, "B#3": 1})
    assert parts["B#1"]["instances"] == ["i-1", "i-2"] and parts["B#3"] == {**holding, "units": 1, "instances": ["i-3"]}
    assert shards.merged([{"h": parts["B#1"]}, {"h": parts["B#3"]}, {}]) == {"h": holding}


def test_finalize_gives_back_the_items_checked_or_for_an_older_check_the_groups_single_item():
    assert _blast_items({"groups": ["web"], "blast_items": ["BUDGET#blast_radius#web#3"]}) == [
        "BUDGET#blast_radius#web#3"
    ]
    assert _blast_items({"groups": ["web"]}) == ["BUDGET#blast_radius#web"]
    assert _blast_items({"groups": ["web"], "blast_items": []}) == []
