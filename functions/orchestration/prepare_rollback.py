"""Prepare the rollback: the steps that started changing something, newest first, each with
the state recorded before it changed (read from the audit trail, so a step that failed half way
is rolled back too). A step still "started" will not finish (its retries ran out): its record
ends "failed", with the last error."""

from __future__ import annotations

from typing import Any

from core import settings as settings_module
from core import state
from core.entry import lambda_entry
from core.errors import error_text
from core.observability import logger
from core.store import RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> list[dict[str, Any]]:
    impairment_id = state.parse(event, "PrepareRollback").impairment.impairment_id
    settings = settings_module.load("table_name")
    store = store or RecoveryStore(settings.table_name)
    steps = {s["index"]: s for s in (event.get("plan") or {}).get("steps", [])}
    if isinstance(event.get("error"), dict):
        store.fail_started_actions(impairment_id, error_text(event["error"]))
    records = [r for r in store.list_actions(impairment_id) if r.get("phase") == "apply" and r.get("before")]
    rollback = []
    for record in sorted(records, key=lambda r: r["step_index"], reverse=True):
        step = steps.get(record["step_index"])
        if step is None:
            continue
        applied = record.get("result") or {"before": record["before"], "after": {}}
        rollback.append({"step": step, "applied": applied})
    store.update_impairment(impairment_id, status="rolling_back")
    logger.info("rollback prepared", steps=[r["step"]["action"] for r in rollback])
    return rollback
