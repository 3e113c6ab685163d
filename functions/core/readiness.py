"""READINESS#<plan> / LATEST: the last readiness check of a plan (readiness/handler.py), read by
`recoveryctl readiness --deployed`. It expires a day after it was written (a plan removed from
the configuration leaves nothing behind; a check that stopped running shows as missing)."""

from __future__ import annotations

from typing import Any

from core.dynamo import Table

KEEP_SECONDS = 86400


def _key(plan: str) -> dict[str, str]:
    return {"pk": f"READINESS#{plan}", "sk": "LATEST"}


class ReadinessResults:
    def __init__(self, table: Table) -> None:
        self.table = table

    def put(self, result: dict[str, Any], checked_epoch: int) -> None:
        """Record one plan's result ({plan, ready, checked_at, workloads}), replacing the last."""
        self.table.put({**_key(result["plan"]), **result, "expiration": checked_epoch + KEEP_SECONDS})

    def get_many(self, plans: list[str]) -> list[dict[str, Any]]:
        """The last results of these plans (those that have one), in the order given."""
        found = self.table.get_many([(f"READINESS#{p}", "LATEST") for p in plans]) if plans else {}
        by_plan = {item.get("plan"): item for item in found.values()}
        return [
            {k: v for k, v in by_plan[p].items() if k not in ("pk", "sk", "expiration")} for p in plans if p in by_plan
        ]
