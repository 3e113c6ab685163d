"""The shapes of the ARNs a configuration names (a workload's target group and load balancer, a
redirect_traffic step's, a standby's DB cluster), checked when the configuration is validated so that
a typo fails `cdk synth`, not the recovery that needed it.

Each type is a string with a pattern (msgspec's Meta) and a plain description of the shape, which
core/problems.py gives when the pattern does not match ("must be a target group ARN like ...").
A pydantic model may still use them during the move off pydantic (`_Shape` validates for it; it
imports nothing of pydantic until one does).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from msgspec import Meta

_ELB = r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:"
_TARGET_GROUP = _ELB + r"targetgroup/[\w-]+/[0-9a-f]+$"
_LOAD_BALANCER = _ELB + r"loadbalancer/(app|net)/[\w-]+/[0-9a-f]+$"
_LISTENER = _ELB + r"listener/(app|net)/[\w-]+/[0-9a-f]+/[0-9a-f]+$"
_LISTENER_RULE = _ELB + r"listener-rule/(app|net)/[\w-]+/[0-9a-f]+/[0-9a-f]+/[0-9a-f]+$"
_DB_CLUSTER = r"^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:[A-Za-z][A-Za-z0-9-]{0,62}$"

# What each pattern's value must be, said plainly: core/problems.py reads it for a mismatch.
SHAPES: dict[str, str] = {}


class _Shape:
    """pydantic's check of a shaped ARN (an AfterValidator's, with the same message)."""

    def __init__(self, pattern: str, shape: str) -> None:
        self.pattern, self.shape = re.compile(pattern), shape

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def check(value: str) -> str:
            if not self.pattern.match(value):
                raise ValueError(f"must be {self.shape} (got {value!r})")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))


def _shaped(pattern: str, what: str, example: str) -> Any:
    shape = f"{what} like {example}"
    SHAPES[pattern] = shape
    return Annotated[str, Meta(pattern=pattern), _Shape(pattern, shape)]


_PREFIX = "arn:aws:elasticloadbalancing:REGION:ACCOUNT:"
TargetGroupArn = _shaped(_TARGET_GROUP, "a target group ARN", _PREFIX + "targetgroup/NAME/ID")
LoadBalancerArn = _shaped(
    _LOAD_BALANCER, "an Application or Network Load Balancer ARN", _PREFIX + "loadbalancer/app/NAME/ID"
)
ListenerArn = _shaped(_LISTENER, "a listener ARN", _PREFIX + "listener/app/NAME/ID/ID")
ListenerRuleArn = _shaped(_LISTENER_RULE, "a listener rule ARN", _PREFIX + "listener-rule/app/NAME/ID/ID/ID")
DbClusterArn = _shaped(_DB_CLUSTER, "a DB cluster ARN", "arn:aws:rds:REGION:ACCOUNT:cluster:NAME")


def region_of(arn: str) -> str:
    """The region an ARN names (its fourth field)."""
    return arn.split(":")[3]
