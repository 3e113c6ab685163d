"""Hand back what a recovery changed for a while (resource lifecycle cleanup): once its wait is over
(Finalize computed it), run the rollback of each step whose action declares a hand-back
(HandBack, actions/registry.py). Emergency capacity (scale_out's, unless the plan keeps it) goes
back only if the workload is still healthy (a workload that is not keeps it, and the record says
why); shifted traffic weights (redirect_traffic's, after their `expires_in`) are put back whatever
the health."""

from __future__ import annotations

from typing import Any, NamedTuple

from actions import base, registry
from actions.specs import ActionSpec
from core import clock, state
from core import settings as settings_module
from core.entry import lambda_entry
from core.observability import logger, metrics
from core.store import RecoveryStore
from orchestration import verify


class _Due(NamedTuple):
    """A step whose change is handed back now: its plan step, its apply result, its action, and
    whether only to a workload that is healthy."""

    step: dict[str, Any]
    result: dict[str, Any]
    spec: ActionSpec
    only_if_healthy: bool


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    impairment = state.parse(event, "ReturnCapacity", plan=True).impairment
    settings = settings_module.load("table_name")
    store = store or RecoveryStore(settings.table_name)
    managed_tag = (settings.managed_tag_key, settings.managed_tag_value)
    due = _due(event)
    to_return = [d for d in due if d.only_if_healthy]
    expired = [_hand_back(event, d, store, managed_tag) for d in due if not d.only_if_healthy]
    if expired:
        logger.info("time-boxed weights restored", restored=expired)
    if not to_return:
        return {"returned": [], "kept": [], "weights_restored": expired, "checks": []}
    checks = verify.check(impairment, [d.step for d in to_return], results=[d.result for d in to_return])
    if not all(c["passed"] for c in checks):
        reason = "the workload is not healthy: the emergency capacity stays"
        store.update_impairment(impairment.impairment_id, capacity_returned=False, capacity_note=reason)
        logger.warning(reason, checks=checks)
        kept = [d.result["targets"] for d in to_return]
        return {"returned": [], "kept": kept, "weights_restored": expired, "reason": reason, "checks": checks}
    returned = [_hand_back(event, d, store, managed_tag) for d in to_return]
    store.update_impairment(
        impairment.impairment_id, capacity_returned=True, capacity_returned_at=clock.utc_now().isoformat()
    )
    metrics.add_metric(name="EmergencyCapacityReturned", unit="Count", value=len(returned))
    logger.info("emergency capacity returned", returned=returned)
    return {"returned": returned, "kept": [], "weights_restored": expired, "checks": checks}


def _due(event: dict[str, Any]) -> list[_Due]:
    """The steps that changed something their action hands back (in the order they ran)."""
    steps = {s["index"]: s for s in event["plan"].get("steps", [])}
    due = []
    for result in event.get("actions") or []:
        step = steps.get(result.get("step_index")) if isinstance(result, dict) else None
        spec = registry.ACTIONS.get(step["action"]) if step else None
        if spec is None or spec.hand_back is None or result.get("result") != "changed":
            continue
        if spec.hand_back_after(step.get("params")):
            due.append(_Due(step, result, spec, spec.hand_back.only_if_healthy))
    return due


def _hand_back(event: dict[str, Any], due: _Due, store: Any, managed_tag: tuple[str, str]) -> dict[str, Any]:
    """Run the step's rollback, as the workflow's rollback would (recorded, idempotent)."""
    outcome = base.run(
        due.spec.implementation(),
        "rollback",
        {"impairment": event["impairment"], "step": due.step, "applied": due.result, "plan": event["plan"]["name"]},
        store,
        managed_tag,
    )
    return {"step_index": due.step["index"], "result": outcome["result"], "message": outcome["message"]}
