"""Return emergency capacity and end time-boxed routing: after a recovery, once the workload has
stayed healthy for the plan's `return_after_seconds`, undo its scale-outs (resource lifecycle
cleanup; a workload that is not healthy keeps the capacity, and the record says why), and put
back the traffic weights it shifted when their `expires_in` is over."""

from __future__ import annotations

from typing import Any

from actions import base, redirect_traffic, scale_out
from core import clock, state
from core import settings as settings_module
from core.entry import lambda_entry
from core.observability import logger, metrics
from core.store import RecoveryStore
from orchestration import verify


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    impairment = state.parse(event, "ReturnCapacity", plan=True).impairment
    settings = settings_module.load("table_name")
    store = store or RecoveryStore(settings.table_name)
    steps = {s["index"]: s for s in event["plan"].get("steps", [])}
    to_return = [
        (steps[r["step_index"]], r)
        for r in event.get("actions") or []
        if isinstance(r, dict)
        and r.get("action") == scale_out.NAME
        and r.get("result") == "changed"
        and not (steps.get(r.get("step_index"), {}).get("params") or {}).get("keep")
    ]
    expired = _expire_weights(event, steps, store, (settings.managed_tag_key, settings.managed_tag_value))
    if not to_return:
        return {"returned": [], "kept": [], "weights_restored": expired, "checks": []}
    checks = verify.check(impairment, frozenset({scale_out.NAME}))
    if not all(c["passed"] for c in checks):
        reason = "the workload is not healthy: the emergency capacity stays"
        store.update_impairment(impairment.impairment_id, capacity_returned=False, capacity_note=reason)
        logger.warning(reason, checks=checks)
        return {
            "returned": [],
            "kept": [r["targets"] for _, r in to_return],
            "weights_restored": expired,
            "reason": reason,
            "checks": checks,
        }
    returned = []
    for step, result in to_return:
        outcome = base.run(
            scale_out.SPEC,
            "rollback",
            {"impairment": event["impairment"], "step": step, "applied": result, "plan": event["plan"]["name"]},
            store,
            (settings.managed_tag_key, settings.managed_tag_value),
        )
        returned.append({"step_index": step["index"], "result": outcome["result"], "message": outcome["message"]})
    store.update_impairment(
        impairment.impairment_id, capacity_returned=True, capacity_returned_at=clock.utc_now().isoformat()
    )
    metrics.add_metric(name="EmergencyCapacityReturned", unit="Count", value=len(returned))
    logger.info("emergency capacity returned", returned=returned)
    return {"returned": returned, "kept": [], "weights_restored": expired, "checks": checks}


def _expire_weights(
    event: dict[str, Any], steps: dict[int, dict[str, Any]], store: Any, managed_tag: tuple[str, str]
) -> list[dict[str, Any]]:
    """Put back the traffic weights this recovery shifted: their time-box is over. Unlike the
    capacity, whatever the workload's health (as a zonal shift expires in ARC): a routing change
    nobody renewed does not outlive its time-box."""
    restored = []
    for result in event.get("actions") or []:
        step = steps.get(result.get("step_index")) if isinstance(result, dict) else None
        if not step or step["action"] != redirect_traffic.NAME or result.get("result") != "changed":
            continue
        if not redirect_traffic.expiry_seconds(step.get("params") or {}):
            continue
        outcome = base.run(
            redirect_traffic.SPEC,
            "rollback",
            {"impairment": event["impairment"], "step": step, "applied": result, "plan": event["plan"]["name"]},
            store,
            managed_tag,
        )
        restored.append({"step_index": step["index"], "result": outcome["result"], "message": outcome["message"]})
    if restored:
        logger.info("time-boxed weights restored", restored=restored)
    return restored
