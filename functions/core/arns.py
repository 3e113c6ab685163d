"""The shapes of the ARNs a configuration names (a workload's target group and load balancer, a
redirect_traffic step's, a standby's DB cluster), checked when the configuration is validated so that
a typo fails `cdk synth`, not the recovery that needed it."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_ELB = r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:"
_TARGET_GROUP = re.compile(_ELB + r"targetgroup/[\w-]+/[0-9a-f]+$")
_LOAD_BALANCER = re.compile(_ELB + r"loadbalancer/(app|net)/[\w-]+/[0-9a-f]+$")
_LISTENER = re.compile(_ELB + r"listener/(app|net)/[\w-]+/[0-9a-f]+/[0-9a-f]+$")
_LISTENER_RULE = re.compile(_ELB + r"listener-rule/(app|net)/[\w-]+/[0-9a-f]+/[0-9a-f]+/[0-9a-f]+$")


def _shaped(pattern: re.Pattern[str], what: str, example: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"must be {what} like {example} (got {value!r})")
        return value

    return AfterValidator(check)


_PREFIX = "arn:aws:elasticloadbalancing:REGION:ACCOUNT:"
TargetGroupArn = Annotated[str, _shaped(_TARGET_GROUP, "a target group ARN", _PREFIX + "targetgroup/NAME/ID")]
LoadBalancerArn = Annotated[
    str, _shaped(_LOAD_BALANCER, "an Application or Network Load Balancer ARN", _PREFIX + "loadbalancer/app/NAME/ID")
]
ListenerArn = Annotated[str, _shaped(_LISTENER, "a listener ARN", _PREFIX + "listener/app/NAME/ID/ID")]
ListenerRuleArn = Annotated[
    str, _shaped(_LISTENER_RULE, "a listener rule ARN", _PREFIX + "listener-rule/app/NAME/ID/ID/ID")
]

_DB_CLUSTER = re.compile(r"^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:[A-Za-z][A-Za-z0-9-]{0,62}$")
DbClusterArn = Annotated[str, _shaped(_DB_CLUSTER, "a DB cluster ARN", "arn:aws:rds:REGION:ACCOUNT:cluster:NAME")]


def region_of(arn: str) -> str:
    """The region an ARN names (its fourth field)."""
    return arn.split(":")[3]
