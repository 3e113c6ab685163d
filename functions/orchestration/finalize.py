"""Finalize a recovery that verified: record resolution and MTTR, release the locks, and give back
the share of each group's blast radius it held (its replacements are healthy: the capacity it
took out is back, so the next failure of the group need not wait for the window to pass)."""

from __future__ import annotations

from typing import Any

from actions import registry
from core import clock, history, paging, state
from core import settings as settings_module
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.guardrails import Flapping, blast_key
from core.observability import emit, logger, metrics
from core.store import CONCURRENCY_BUDGET, RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    execution = state.parse(event, "Finalize")
    impairment = execution.impairment
    settings = settings_module.load("table_name")
    store = store or RecoveryStore(settings.table_name)
    resolved_at = clock.utc_now()
    mttr = max(0.0, (resolved_at - impairment.detected_at).total_seconds())
    outcome = "dry_run" if (event.get("plan") or {}).get("dry_run") else "recovered"
    checked = execution.guardrails or {}
    store.finish(
        impairment.impairment_id,
        execution.admission.lock_keys,
        _blast_items(checked),
        slots=checked.get("slots"),
        noted=_history(store, impairment, resolved_at, checked) if outcome == "recovered" else (),
        status=outcome,
        outcome=outcome,
        resolved_at=resolved_at.isoformat(),
        mttr_seconds=mttr,
        **_objective(execution, outcome, mttr),
    )
    _count(impairment, outcome, mttr)
    # The one page a recovery that verified can have sent is its approval request (the state has
    # `approval`): resolved now. A page about instances the blast radius deferred stays open: they
    # may still be impaired (their own recovery, or a cleared signal, resolves it).
    if event.get("approval") and not checked.get("deferred"):
        paging.resolve_if_paged(store, impairment.impairment_id, outcome, settings.escalation_topic_arn)
    logger.info(outcome, mttr_seconds=mttr, drill=impairment.drill)
    return {
        "return_capacity_after_seconds": _return_capacity_after(event) if outcome == "recovered" else 0,
        "outcome": outcome,
        "resolved_at": resolved_at.isoformat(),
        "mttr_seconds": mttr,
        "mttd_seconds": impairment.mttd_seconds,
    }


def _blast_items(checked: dict[str, Any]) -> list[str]:
    """The blast-radius items CheckGuardrails took units of (its summary's); for an execution it
    checked before they were sharded, its groups' single items (LEGACY)."""
    items = checked.get("blast_items")
    if isinstance(items, list):
        return [str(k) for k in items]
    return [blast_key(group) for group in checked.get("groups") or []]


def _objective(execution: state.ExecutionState, outcome: str, mttr: float) -> dict[str, Any]:
    """The workload's recovery time objective (Admit put it in the state with the plan), judged: recorded
    on the impairment, and for a real recovery (never a drill's) counted by workload as
    RecoveryTimeObjectiveMissed 1 or 0, which the workload's RTO alarm watches."""
    rto = execution.plan.rto_seconds if execution.plan else None
    if rto is None or outcome != "recovered":
        return {}
    impairment = execution.impairment
    within = mttr <= rto
    if not impairment.drill:
        emit("RecoveryTimeObjectiveMissed", "Count", 0 if within else 1, workload=impairment.workload)
        emit("WorkloadMTTR", "Seconds", mttr, workload=impairment.workload)
    if not within:
        logger.warning("recovered beyond the recovery time objective", mttr_seconds=mttr, rto_seconds=rto)
    return {"rto_seconds": rto, "within_rto": within}


def _history(
    store: RecoveryStore, impairment: ImpairmentDetected, resolved_at: Any, checked: dict[str, Any]
) -> list[dict[str, Any]]:
    """The recovery noted in the history the flapping guardrail reads (core/history.py): its
    resources' and the shard of its group's of the concurrency slot it holds, kept a window, with
    what CheckGuardrails found outside it removed."""
    noted = checked.get("history") or {}
    keep = int(noted.get("keep_seconds") or Flapping().window_seconds)
    slot = (checked.get("slots") or {}).get(CONCURRENCY_BUDGET)
    keys = history.noted_keys(impairment.model_dump(mode="json"), slot)
    return store.history.recovered_items(keys, impairment.impairment_id, resolved_at, keep, noted.get("stale"))


def _count(impairment: ImpairmentDetected, outcome: str, mttr: float) -> None:
    """A recovery that verified: counted in total and by impairment type, with its MTTR. A
    practice drill's MTTR is DrillMTTR, so drills never skew the MTTR of real impairments."""
    if outcome != "recovered":
        metrics.add_metric(name="DryRuns", unit="Count", value=1)
        return
    metrics.add_metric(name="RecoveriesSucceeded", unit="Count", value=1)
    metrics.add_metric(name="DrillMTTR" if impairment.drill else "MTTR", unit="Seconds", value=mttr)
    emit("RecoveriesSucceeded", "Count", 1, impairment_type=impairment.impairment_type.value)


def _return_capacity_after(event: dict[str, Any]) -> int:
    """How long the workflow waits before it hands back what this recovery's steps changed, as
    their actions declare it (their HandBack, actions/registry.py): the emergency capacity of its
    scale-outs (unless the plan keeps it), the traffic weights it shifted (their expires_in). The
    earliest wins: everything is handed back then. 0: nothing to hand back."""
    steps = {s["index"]: s for s in (event.get("plan") or {}).get("steps", [])}
    waits = []
    for result in event.get("actions") or []:
        step = steps.get(result.get("step_index")) if isinstance(result, dict) else None
        spec = registry.ACTIONS.get(step["action"]) if step else None
        if spec is None or result.get("result") != "changed":
            continue
        wait = spec.hand_back_after(step.get("params"))
        if wait:
            waits.append(wait)
    return min(waits, default=0)
