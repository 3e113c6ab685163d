"""provision_warm_pool: raise the group's desired capacity by up to `count`, no more than its warm
pool holds warmed instances, never above MaxSize; rollback restores the desired capacity recorded
before (actions/provision_capacity.py). (`provision_backup` with kind "warm_pool", its default,
is this action: actions/registry.py, ALIASES.)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from actions import provision_capacity as capacity
from actions.base import Action, ActionParams, handlers

NAME = "provision_warm_pool"


class Params(ActionParams):
    kind: Literal["warm_pool"] = "warm_pool"
    count: int = Field(default=1, ge=1, le=100, description="instances to bring into service")
    group: str | None = Field(default=None, description="default: the impaired workload's Auto Scaling group")


ACTION = Action(NAME, Params, capacity.raise_desired, capacity.rollback)
apply_handler, rollback_handler = handlers(ACTION)
