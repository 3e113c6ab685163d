"""The audit trail of a drill's recovery, as the e2e tests of the regional drills read it."""

from __future__ import annotations

from typing import Any

from recoveryctl import drill


def actions_by_step(run: drill.Drill, region: str, impairment_id: str) -> dict[str, dict[str, Any]]:
    """The action records the stack in `region` wrote for the impairment, by "<action>#<phase>"."""
    assert run.emulator is not None
    actions = run.emulator.peer(region).store().list_actions(impairment_id)
    return {f"{a['action']}#{a['phase']}": a for a in actions}
