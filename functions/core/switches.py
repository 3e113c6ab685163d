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

    def admissible_item(self, plan: str | None = None) -> dict[str, Any]:
        """A transaction's check that automatic recovery is not paused and, when `plan` is named,
        that the plan is not disabled: the switches read inside the transaction that acts on them
        (Admit's), not by a GetItem before it. One check for both: a transaction may name an
        item once."""
        condition = "(attribute_not_exists(paused) OR paused = :no)"
        values: dict[str, Any] = {":no": False}
        if plan:
            condition += " AND (attribute_not_exists(disabled_plans) OR NOT contains(disabled_plans, :p))"
            values[":p"] = plan
        return self.table.write("ConditionCheck", _KEY, ConditionExpression=condition, ExpressionAttributeValues=values)

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
