"""Recovery actions by name. A plan names actions from here; the infra builds one Lambda per
action phase and each action's role from the permissions it declares."""

from __future__ import annotations

from actions import failover, provision_backup, redirect_traffic, replace_instance, restart_service, scale_out
from actions.base import ActionSpec

ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        replace_instance.SPEC,
        scale_out.SPEC,
        provision_backup.SPEC,
        redirect_traffic.SPEC,
        failover.SPEC,
        restart_service.SPEC,
    )
}


def get(name: str) -> ActionSpec:
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; known actions: {', '.join(sorted(ACTIONS))}") from None
