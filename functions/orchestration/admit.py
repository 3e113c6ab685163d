"""Admit: validate the impairment, record it, and lock its resources (one recovery per resource
at a time). The record is written whatever the outcome. While automatic recovery is paused (the
kill switch), the impairment is recorded as skipped and escalated, and nothing is acted on."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from core import clock
from core import settings as settings_module
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.errors import InvalidInput, RecoveryInProgress, RecoveryPaused
from core.guardrails import PAUSED
from core.observability import logger, metrics
from core.store import RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    try:
        impairment = ImpairmentDetected.model_validate((event or {}).get("impairment"))
    except (ValidationError, AttributeError) as exc:
        logger.error("refused an impairment that does not validate", error=str(exc))
        raise InvalidInput("the execution input is not a valid impairment") from exc

    settings = settings_module.load("table_name")
    store = store or RecoveryStore(settings.table_name)
    lock_keys = [r.key for r in impairment.affected_resources]
    given = event.get("input") if isinstance(event.get("input"), dict) else {}
    supersedes = [s for s in given.get("supersedes") or [] if isinstance(s, str)]
    admitted = {"status": "admitted", "lock_keys": lock_keys, "execution_arn": event.get("execution", "")}
    # One call when StartRecovery recorded it, nothing is paused and the resources are free.
    if not store.admit(impairment.impairment_id, lock_keys, settings.lock_ttl_seconds, supersedes, **admitted):
        _admit_step_by_step(store, impairment, event, lock_keys, settings.lock_ttl_seconds, supersedes)
    return {"admitted_at": clock.utc_now().isoformat(), "lock_keys": lock_keys}


def _admit_step_by_step(
    store: RecoveryStore,
    impairment: ImpairmentDetected,
    event: dict[str, Any],
    lock_keys: list[str],
    ttl: int,
    supersedes: list[str],
) -> None:
    """Record, check the kill switch, lock and record again, one call each: what says which
    went wrong (no record yet, paused, a lock another's) and does what each calls for."""
    record = impairment.model_dump(mode="json")
    created = store.put_impairment(
        record,
        status="admitting",
        execution_arn=event.get("execution", ""),
        mttd_seconds=impairment.mttd_seconds,
    )
    if not created:  # written at detection (or by a retried Admit): keep its MTTD and links
        store.update_impairment(impairment.impairment_id, status="admitting", execution_arn=event.get("execution", ""))
    _skip_if_paused(store, impairment.impairment_id)
    _lock(store, impairment.impairment_id, lock_keys, ttl, supersedes)
    store.update_impairment(impairment.impairment_id, status="admitted", lock_keys=lock_keys)


def _skip_if_paused(store: RecoveryStore, impairment_id: str) -> None:
    """The kill switch: recorded as skipped, and RecoveryPaused raised (the workflow escalates)."""
    switches = store.get_switches()
    if switches.get("paused"):
        reason = f"automatic recovery is paused: {switches.get('pause_reason') or 'no reason given'}"
        store.update_impairment(
            impairment_id, status="skipped", outcome="skipped", reason=reason, guardrails_tripped=[PAUSED]
        )
        metrics.add_metric(name="RecoveriesSkipped", unit="Count", value=1)
        logger.warning("skipped: automatic recovery is paused", reason=reason)
        raise RecoveryPaused(reason)


def _lock(store: RecoveryStore, impairment_id: str, lock_keys: list[str], ttl: int, supersedes: list[str]) -> None:
    """Lock the resources; when another recovery holds one, record this one as skipped and raise
    RecoveryInProgress."""
    try:
        store.acquire_locks(impairment_id, lock_keys, ttl, take_over=supersedes)
    except RecoveryInProgress as exc:
        store.update_impairment(
            impairment_id,
            status="skipped",
            outcome="skipped",
            reason=str(exc),
            resolved_at=clock.utc_now().isoformat(),
        )
        # Skipped: its correlation windows close, so the next signal about these resources (once
        # the other recovery is over) is a new impairment, not folded into this skipped one.
        store.release_locks(impairment_id, lock_keys, concurrency=False)
        metrics.add_metric(name="RecoveriesSkipped", unit="Count", value=1)
        logger.warning("skipped: another recovery holds a lock", holders=exc.details.get("holders"))
        raise
