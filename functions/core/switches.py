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

    def not_paused_item(self) -> dict[str, Any]:
        """A transaction's check that automatic recovery is not paused: the switches read inside
        the transaction that acts on them (Admit's lock), not by a GetItem before it."""
        return self.table.write(
            "ConditionCheck",
            _KEY,
            ConditionExpression="attribute_not_exists(paused) OR paused = :no",
            ExpressionAttributeValues={":no": False},
        )

    def plan_enabled_item(self, plan: str) -> dict[str, Any]:
        """A transaction's check that `plan` is not disabled (SelectPlan's record of its choice)."""
        return self.table.write(
            "ConditionCheck",
            _KEY,
            ConditionExpression="attribute_not_exists(disabled_plans) OR NOT contains(disabled_plans, :p)",
            ExpressionAttributeValues={":p": plan},
        )

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
