"""core/problems.py: an error of either validator (pydantic's, or core.model's records of the same
form) said in the configuration author's terms, an ARN's mismatch by the shape it must have."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from core import arns
from core.model import Model
from core.problems import describe, from_validation

TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123abcd"


def test_an_arn_that_does_not_match_is_said_by_its_shape_whatever_the_field_is_named():
    pattern = next(p for p, shape in arns.SHAPES.items() if shape.startswith("a target group ARN"))
    error = {"type": "string_pattern_mismatch", "loc": ("serving",), "msg": "", "ctx": {"pattern": pattern}}

    assert describe({**error, "input": "nope"}) == (
        "must be a target group ARN like arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID (got 'nope')"
    )
    # a record without the value given says no "(got null)"
    assert describe(error).endswith("targetgroup/NAME/ID")


def test_a_pattern_of_no_known_shape_is_said_by_the_field_name():
    error = {"type": "string_pattern_mismatch", "loc": ("region",), "msg": "", "ctx": {"pattern": "^x$"}, "input": "e"}

    assert describe(error) == "must be a region name like us-east-1 (got 'e')"


class Standby(Model, kw_only=True, forbid_unknown_fields=True):
    target_group_arn: arns.TargetGroupArn
    size: Annotated[int, msgspec.Meta(ge=1)] = 1


def test_the_arn_types_validate_in_a_model_and_its_errors_become_problems_with_their_path():
    assert Standby.model_validate({"target_group_arn": TARGET_GROUP}).target_group_arn == TARGET_GROUP
    with pytest.raises(ValueError) as raised:
        Standby.model_validate({"target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web"})

    problems = from_validation(raised.value, "workloads", 0, "standby")

    assert [p.path for p in problems] == ["workloads.0.standby.target_group_arn"]


def test_a_pydantic_model_using_an_arn_type_says_its_shape():
    from pydantic import BaseModel, ValidationError

    class Params(BaseModel):
        target_group_arn: arns.TargetGroupArn | None = None

    assert Params(target_group_arn=TARGET_GROUP).target_group_arn == TARGET_GROUP
    with pytest.raises(ValidationError) as raised:
        Params(target_group_arn="tg-1")

    (problem,) = from_validation(raised.value)
    assert problem.path == "target_group_arn"
    assert problem.message.startswith("must be a target group ARN like ") and problem.message.endswith("(got 'tg-1')")


def test_a_models_arn_mismatch_is_said_by_its_shape():
    with pytest.raises(ValueError) as raised:
        Standby.model_validate({"target_group_arn": "tg-1", "size": 0})

    assert [str(p) for p in from_validation(raised.value)] == [
        "target_group_arn: must be a target group ARN like "
        "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID (got 'tg-1')",
        "size: must be at least 1 (got 0)",
    ]
