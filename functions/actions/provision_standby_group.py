"""provision_standby_group: scale a separate standby group up to `desired_capacity` (both default
to the impairment's scope: a region impairment seen from the standby region names the workload's
standby there), and by default wait for that capacity in service; rollback restores its desired
capacity recorded before (actions/provision_capacity.py). (`provision_backup` with kind
"standby_group" is this action: actions/registry.py, ALIASES.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from actions import provision_capacity as capacity
from actions.base import Action, ActionParams, handlers

NAME = "provision_standby_group"


class Params(ActionParams, kw_only=True):
    kind: Literal["standby_group"] = "standby_group"
    standby_group: Annotated[str, Meta(description="the standby Auto Scaling group to scale up")] | None = None
    desired_capacity: Annotated[int, Meta(ge=1, description="the standby group's desired capacity")] | None = None
    wait_until_in_service: Annotated[
        bool, Meta(description="end the step only when that capacity is healthy in service")
    ] = True


ACTION = Action(NAME, Params, capacity.raise_desired, capacity.rollback)
apply_handler, rollback_handler = handlers(ACTION)
