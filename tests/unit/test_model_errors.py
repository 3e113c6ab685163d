"""core/model_errors.py: an input that does not validate is reported with EVERY problem, each
with its field path and in the terms core/problems.py words for a person (what pydantic's
errors() gave `recoveryctl config validate` and synth), though msgspec stops at the first."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec
import pytest

from core.model import Model, ValidationError
from core.problems import from_validation


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


class Step(Model, kw_only=True, forbid_unknown_fields=True):
    percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 10
    note: str = ""

    def _check(self) -> None:
        if self.note == "forbidden":
            raise ValueError("note must not say forbidden")


class Plan(Model, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]*$", min_length=1, max_length=20)]
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}-[a-z]+-\d$")] = "us-east-1"
    mode: Mode = Mode.SAFE
    phase: Literal["apply", "rollback"] = "apply"
    steps: Annotated[list[Step], msgspec.Meta(min_length=1, max_length=2)]
    by_group: dict[str, Step] = {}
    fallback: Step | None = None
    retries: int = 0


def problems(data, model=Plan):
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [str(p) for p in from_validation(caught.value, "plans", 0)]


def test_every_problem_is_reported_with_its_path_not_only_the_first():
    found = problems(
        {
            "name": "Bad Name",
            "region": "mars",
            "mode": "reckless",
            "phase": "undo",
            "steps": [{"percent": 101}, {"note": "forbidden"}, {"percnt": 5}],
            "by_group": {"web": {"percent": "ten"}},
            "fallback": {"percent": -1},
            "retries": "3",
            "colour": "red",
        }
    )
    assert found == [
        "plans.0.colour: is not a field here (check its spelling and where it is nested)",
        "plans.0.name: must be a name: lowercase letters, digits and hyphens (got 'Bad Name')",
        "plans.0.region: must be a region name like us-east-1 (got 'mars')",
        "plans.0.mode: must be one of 'fast' or 'safe' (got 'reckless')",
        "plans.0.phase: must be one of 'apply' or 'rollback' (got 'undo')",
        "plans.0.steps: must have at most 2 items",
        "plans.0.steps.0.percent: must be at most 100 (got 101)",
        "plans.0.steps.1: note must not say forbidden",
        "plans.0.steps.2.percnt: is not a field here (check its spelling and where it is nested)",
        "plans.0.by_group.web.percent: must be a whole number (got 'ten')",
        "plans.0.fallback.percent: must be at least 0 (got -1)",
        "plans.0.retries: must be a whole number (got '3')",
    ]


def test_missing_fields_empty_lists_and_wrong_shapes():
    assert problems({"steps": []}) == ["plans.0.name: is required", "plans.0.steps: must not be empty"]
    assert problems({"name": "ok", "steps": "all"}) == ["plans.0.steps: must be a list (got 'all')"]
    assert problems({"name": "ok", "steps": [5]}) == ["plans.0.steps.0: must be an object (got 5)"]
    assert problems("plan") == ["plans.0: must be an object (got 'plan')"]


def test_a_models_own_check_is_reported_once_its_fields_are_valid():
    assert problems({"percent": 5, "note": "forbidden"}, Step) == ["plans.0: note must not say forbidden"]


def test_the_error_keeps_the_first_problem_in_its_message_and_counts_the_rest():
    with pytest.raises(ValidationError) as caught:
        Plan.model_validate({"name": "ok", "steps": [{"percent": 101}], "retries": "x"})
    assert str(caught.value) == "invalid Plan: steps.0.percent: Expected `int` <= 100 (and 1 more)"
    assert [e["loc"] for e in caught.value.errors()] == [("steps", 0, "percent"), ("retries",)]


def test_a_constructor_and_json_report_every_problem_too():
    with pytest.raises(ValidationError) as caught:
        Step(percent=500, note=3)
    assert [e["type"] for e in caught.value.errors()] == ["less_than_equal", "string_type"]
    with pytest.raises(ValidationError) as caught:
        Plan.model_validate_json(b'{"name": "ok", "steps": [{"percent": -5}], "mode": 1}')
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [
        (("mode",), "enum"),
        (("steps", 0, "percent"), "greater_than_equal"),
    ]
    assert str(from_validation(caught.value)[0]) == "mode: must be one of 'fast' or 'safe' (got 1)"


def test_valid_input_is_not_walked():
    plan = Plan.model_validate({"name": "ok", "steps": [{}], "by_group": {"a": {"percent": 1}}})
    assert plan.steps[0].percent == 10 and plan.by_group["a"].percent == 1


def _distinct(tags: list[str]) -> None:
    if len(set(tags)) != len(tags):
        raise ValueError("a tag is named twice")


class Tagged(Model, kw_only=True, forbid_unknown_fields=True):
    tags: list[str] = []
    start: int = 0
    end: int = 1

    _field_checks = {"tags": _distinct}

    def _check(self) -> None:
        if self.end <= self.start:
            raise ValueError("end: must be after start")


def test_a_fields_own_check_is_judged_even_when_another_field_is_invalid():
    assert problems({"tags": ["a", "a"], "start": "x"}, Tagged) == [
        "plans.0.tags: a tag is named twice",
        "plans.0.start: must be a whole number (got 'x')",
    ]
    with pytest.raises(ValidationError, match="tags: a tag is named twice"):
        Tagged(tags=["b", "b"])
    assert Tagged(tags=["a", "b"]).tags == ["a", "b"]


def test_a_models_check_naming_a_field_first_is_that_fields_problem():
    assert problems({"start": 2, "end": 1}, Tagged) == ["plans.0.end: must be after start"]
    # a check naming no field stays the model's
    assert problems({"percent": 5, "note": "forbidden"}, Step) == ["plans.0: note must not say forbidden"]


def test_a_pydantic_model_holding_models_lists_every_problem_under_its_fields_path():
    from pydantic import BaseModel
    from pydantic import ValidationError as PydanticError

    class Config(BaseModel):
        plans: list[Plan]
        tagged: Tagged

    with pytest.raises(PydanticError) as caught:
        Config.model_validate(
            {"plans": [{"name": "ok", "steps": [{"percent": 101}]}, {"name": "Bad"}], "tagged": {"tags": ["a", "a"]}}
        )

    assert [str(p) for p in from_validation(caught.value)] == [
        "plans.0.steps.0.percent: must be at most 100 (got 101)",
        "plans.1.name: must be a plan name: lowercase letters, digits and hyphens, starting with a letter or digit "
        "(63 at most) (got 'Bad')",
        "plans.1.steps: is required",
        "tagged.tags: a tag is named twice",
    ]
