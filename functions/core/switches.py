"""The runtime switches (CONTROL / SWITCHES): pause every automatic action (the kill switch) or
disable plans, without a redeploy."""

from __future__ import annotations

from typing import Any

from core import clock
from core.dynamo import Table, set_expression

_KEY = {"pk": "CONTROL", "sk": "SWITCHES"}


class Switches:
    def __init__(self, table: Table) -> None:
        self.table = table

    def get(self) -> dict[str, Any]:
        """The runtime switches: {"paused": bool, "disabled_plans": [...], ...}."""
        return self.table.get(_KEY) or {"paused": False, "disabled_plans": []}

    def set_paused(self, paused: bool, reason: str = "", actor: str = "") -> None:
        """The kill switch: pause (or resume) every automatic action, without a redeploy."""
        self._set({"paused": paused, "pause_reason": reason, "changed_by": actor})

    def set_plan_enabled(self, plan: str, enabled: bool, actor: str = "") -> None:
        disabled = set(self.get().get("disabled_plans", []))
        disabled = disabled - {plan} if enabled else disabled | {plan}
        self._set({"disabled_plans": sorted(disabled), "changed_by": actor})

    def _set(self, fields: dict[str, Any]) -> None:
        fields = {**fields, "changed_at": clock.utc_now().isoformat()}
        self.table.update(_KEY, **set_expression(fields))
