"""provision_warm_pool: raise the group's desired capacity by up to `count`, no more than its warm
pool holds warmed instances, never above MaxSize; rollback restores the desired capacity recorded
before (actions/provision_capacity.py). (`provision_backup` with kind "warm_pool", its default,
is this action: actions/registry.py, ALIASES.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from actions import provision_capacity as capacity
from actions.base import Action, ActionParams, handlers

NAME = "provision_warm_pool"


class Params(ActionParams, kw_only=True):
    kind: Literal["warm_pool"] = "warm_pool"
    count: Annotated[int, Meta(ge=1, le=100, description="instances to bring into service")] = 1
    group: Annotated[str, Meta(description="default: the impaired workload's Auto Scaling group")] | None = None


ACTION = Action(NAME, Params, capacity.raise_desired, capacity.rollback)
apply_handler, rollback_handler = handlers(ACTION)
