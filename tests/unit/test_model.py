"""core/model.py: the msgspec base of the functions' models keeps what the call sites relied on
from pydantic (validation on construction and from data, one error naming the field path,
dump/copy), and a pydantic model may still hold one as a field."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import pytest

from core.model import Model, ValidationError, json_schema_definitions


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Part(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]


class Order(Model, kw_only=True, forbid_unknown_fields=True):
    order_id: Annotated[str, msgspec.Meta(pattern=r"^o-\d+$")]
    colour: Colour
    placed_at: datetime
    parts: Annotated[list[Part], msgspec.Meta(min_length=1)]
    weights: dict[str, float] = {}
    note: str | None = None

    def _check(self) -> None:
        if self.placed_at.tzinfo is None:
            raise ValueError("placed_at: timestamps must carry a time zone")


class Loose(Model, kw_only=True):
    kind: str = msgspec.field(name="kind-of")
    count: int = 0


def order_data(**changes):
    data = {"order_id": "o-1", "colour": "red", "placed_at": "2026-01-02T03:04:05Z", "parts": [{"name": "a"}]}
    return {**data, **changes}


def test_data_is_converted_to_the_declared_types():
    order = Order.model_validate(order_data(weights={"a": 1}))

    assert order.colour is Colour.RED
    assert order.placed_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert order.parts == [Part(name="a")]
    assert order.weights == {"a": 1.0}
    assert Order.model_validate(order) is order


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        ({"order_id": "x"}, ("order_id",), "matching regex"),
        ({"colour": "green"}, ("colour",), "Invalid enum value 'green'"),
        ({"parts": []}, ("parts",), "length >= 1"),
        ({"parts": [{"name": "a"}, {"name": ""}]}, ("parts", 1, "name"), "length >= 1"),
        ({"parts": [{"name": "a", "size": 2}]}, ("parts", 0), "unknown field `size`"),
        ({"weights": {"a": "heavy"}}, ("weights", "..."), "Expected `float`"),
        ({"placed_at": "2026-01-02T03:04:05"}, (), "placed_at: timestamps must carry a time zone"),
        ({"extra": 1}, (), "unknown field `extra`"),
    ],
)
def test_bad_data_raises_one_error_naming_the_model_the_field_and_the_problem(changes, path, message):
    with pytest.raises(ValidationError) as raised:
        Order.model_validate(order_data(**changes))

    assert raised.value.model == "Order"
    assert raised.value.path == path
    assert message in raised.value.message
    assert str(raised.value).startswith("invalid Order: ")
    # One problem, and errors() has it once, where it is (every problem: tests/unit/test_model_errors.py).
    (error,) = raised.value.errors()
    assert error["loc"][: len(path)] == path if "..." not in path else error["loc"] == ("weights", "a")
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("data", [None, [], "order", 3])
def test_what_is_not_an_object_is_a_validation_error(data):
    with pytest.raises(ValidationError, match="Expected `object`"):
        Order.model_validate(data)


def test_a_constructed_model_is_validated_and_its_values_coerced():
    order = Order(order_id="o-2", colour="blue", placed_at=datetime(2026, 1, 1, tzinfo=UTC), parts=[Part(name="p")])

    assert order.colour is Colour.BLUE
    with pytest.raises(ValidationError, match="order_id"):
        Order(order_id="bad", colour="blue", placed_at=datetime(2026, 1, 1, tzinfo=UTC), parts=[Part(name="p")])
    with pytest.raises(ValidationError, match="time zone"):
        Order(order_id="o-2", colour="blue", placed_at=datetime(2026, 1, 1), parts=[Part(name="p")])
    with pytest.raises(ValidationError, match="name"):
        Part(name="")


def test_a_copy_is_validated_and_the_original_unchanged():
    order = Order.model_validate(order_data())

    copy = order.model_copy(update={"note": "rush", "colour": "blue"})

    assert (copy.note, copy.colour) == ("rush", Colour.BLUE)
    assert (order.note, order.colour) == (None, Colour.RED)
    with pytest.raises(ValidationError, match="order_id"):
        order.model_copy(update={"order_id": "nope"})


def test_dumps_are_json_ready_or_keep_datetimes():
    order = Order.model_validate(order_data())

    assert order.model_dump(mode="json") == {**order_data(), "weights": {}, "note": None}
    assert order.model_dump()["placed_at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert "weights" not in order.model_dump(mode="json", exclude={"weights"})
    assert "note" not in order.model_dump(exclude_none=True)
    assert "note" in order.model_copy(update={"note": "x"}).model_dump(exclude_none=True)
    assert Order.model_validate_json(order.model_dump_json()) == order


def test_an_alias_is_the_name_in_data_and_unknown_fields_are_ignored_unless_forbidden():
    loose = Loose.model_validate({"kind-of": "x", "other": 1})

    assert loose == Loose(kind="x")
    assert loose.model_dump() == {"kind-of": "x", "count": 0}
    assert "kind-of" not in loose.model_dump(exclude={"kind"})


def test_malformed_json_is_a_validation_error():
    with pytest.raises(ValidationError, match="not JSON"):
        Order.model_validate_json(b"{")


def test_frozen_models_are_hashable_and_immutable():
    part = Part(name="a")

    assert {part, Part(name="a")} == {part}
    with pytest.raises(AttributeError):
        part.name = "b"  # type: ignore[misc]


def test_a_pydantic_model_can_hold_one_during_the_migration():
    from pydantic import BaseModel
    from pydantic import ValidationError as PydanticError

    class Holder(BaseModel):
        order: Order

    held = Holder.model_validate({"order": order_data()})

    assert held.order == Order.model_validate(order_data())
    assert held.model_dump(mode="json")["order"]["placed_at"] == "2026-01-02T03:04:05Z"
    assert Holder.model_validate_json(held.model_dump_json()) == held
    with pytest.raises(PydanticError, match="order_id"):
        Holder.model_validate({"order": order_data(order_id="x")})


def test_the_schema_definitions_are_draft_04_as_pydantic_published_them():
    definitions = json_schema_definitions(Order)

    order = definitions["Order"]
    assert order["properties"]["placed_at"] == {"type": "string", "format": "date-time", "title": "Placed At"}
    assert order["properties"]["colour"] == {"$ref": "#/definitions/Colour"}
    assert "default" not in order["properties"]["weights"]
    assert order["additionalProperties"] is False
    assert definitions["Colour"]["enum"] == ["red", "blue"]
    assert definitions["Colour"]["type"] == "string"
    assert definitions["Part"]["properties"]["name"]["minLength"] == 1


# The handlers moved off pydantic (issue 16, cold start): importing them must not import it.
PYDANTIC_FREE = (
    "detectors.alarm",
    "detectors.ec2_state",
    "detectors.ecs",
    "detectors.eks",
    "detectors.health",
    "detectors.rds",
    "detectors.spot",
    "detectors.sweeps",
    "detectors.region_probe",
    "orchestration.start",
    "orchestration.storm",
    "orchestration.verify",
    "orchestration.finalize",
    "orchestration.escalate",
    "orchestration.execution_ended",
    "orchestration.prepare_rollback",
    "orchestration.request_approval",
    "notify.notifier",
)


@pytest.mark.parametrize("module", PYDANTIC_FREE)
def test_the_handlers_moved_to_msgspec_import_no_pydantic(module):
    import os
    import subprocess
    import sys
    from pathlib import Path

    functions = Path(__file__).resolve().parents[2] / "functions"
    probe = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pydantic')))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=functions,
        env={**os.environ, "PYTHONPATH": str(functions), "AWS_DEFAULT_REGION": "us-east-1"},
        check=True,
    )
    assert done.stdout.strip() == "[]"
