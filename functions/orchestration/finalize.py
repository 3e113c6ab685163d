"""Finalize a recovery that verified: record resolution and MTTR, release the locks."""

from __future__ import annotations

from typing import Any

from core import clock
from core import settings as settings_module
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.observability import logger, metrics
from core.store import RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    settings = settings_module.load("table_name")
    store = store or RecoveryStore(settings.table_name)
    impairment = ImpairmentDetected.model_validate(event["impairment"])
    resolved_at = clock.utc_now()
    mttr = max(0.0, (resolved_at - impairment.detected_at).total_seconds())
    outcome = "dry_run" if (event.get("plan") or {}).get("dry_run") else "recovered"
    store.update_impairment(
        impairment.impairment_id,
        status=outcome,
        outcome=outcome,
        resolved_at=resolved_at.isoformat(),
        mttr_seconds=mttr,
    )
    store.release_locks(impairment.impairment_id, (event.get("admission") or {}).get("lock_keys", []))
    metrics.add_dimension(name="impairment_type", value=impairment.impairment_type.value)
    if outcome == "recovered":
        metrics.add_metric(name="RecoveriesSucceeded", unit="Count", value=1)
        metrics.add_metric(name="MTTR", unit="Seconds", value=mttr)
    else:
        metrics.add_metric(name="DryRuns", unit="Count", value=1)
    logger.info(outcome, mttr_seconds=mttr)
    return {
        "outcome": outcome,
        "resolved_at": resolved_at.isoformat(),
        "mttr_seconds": mttr,
        "mttd_seconds": impairment.mttd_seconds,
    }
