"""Hypothesis strategies: arbitrary JSON, and real sample events mutated the ways bad input
arrives (a key dropped, a value of the wrong type or a wrong value, huge strings, unicode, nulls)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

Path = tuple[Any, ...]

# Values that break parsers: empty, huge, unicode (astral, combining, RTL, NUL), numbers at the edges.
NASTY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "x" * 10_000,
        "\u0000",
        "ünïcødé-𝔘𝔫𝔦𝔠𝔬𝔡𝔢-🔥",
        "\u202ertl\u202c",
        "e\u0301",
        "null",
        "None",
        "{}",
        "[]",
        "NaN",
        "-1",
        "1e309",
        "2026-13-45T99:99:99Z",
        "2026-11-20T09:14:31",  # no time zone
        "arn:aws:ec2:us-east-1:123456789012:instance/",
        "i-",
        "../../etc/passwd",
        "'; DROP TABLE x; --",
        "${AWS::AccountId}",
        "\ud7ff\ue000",
    ]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    NASTY_STRINGS,
)

JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), NASTY_STRINGS), children, max_size=4),
    ),
    max_leaves=12,
)


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path to a value inside a JSON document (the root excluded)."""
    found: list[Path] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found.extend(paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*prefix, index))
            found.extend(paths(child, (*prefix, index)))
    return found


def _parent(document: Any, path: Path) -> Any:
    for part in path[:-1]:
        document = document[part]
    return document


def _retyped(value: Any) -> Any:
    """The same value with another JSON type (what a careless producer sends)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return 0


@st.composite
def mutated(draw: st.DrawFn, seeds: list[dict[str, Any]], max_mutations: int = 4) -> Any:
    """A seed event with up to `max_mutations` mutations (zero: the valid seed itself)."""
    event: Any = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=0, max_value=max_mutations))):
        candidates = paths(event)
        operation = draw(st.sampled_from(["drop", "null", "retype", "replace", "nasty", "add", "root"]))
        if operation == "root" or not candidates:
            event = draw(JSON)
            continue
        path = draw(st.sampled_from(candidates))
        parent = _parent(event, path)
        key = path[-1]
        if operation == "drop":
            del parent[key]
        elif operation == "null":
            parent[key] = None
        elif operation == "retype":
            parent[key] = _retyped(parent[key])
        elif operation == "replace":
            parent[key] = draw(JSON)
        elif operation == "nasty":
            parent[key] = draw(NASTY_STRINGS)
        elif isinstance(parent, dict):  # add: an unexpected key next to this one
            parent[draw(st.text(min_size=1, max_size=12))] = draw(JSON)
        else:
            parent.append(draw(JSON))
    return event


def events(seeds: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Mostly mutated seeds, some arbitrary JSON (a list, a string, null at the top)."""
    return st.one_of(mutated(seeds), mutated(seeds, max_mutations=1), JSON)
