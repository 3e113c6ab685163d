"""Escalate to a human: record the outcome, release the locks, then publish the whole context on
the escalation topic.

The record and the locks come first: a page that cannot be sent must not leave the impairment
"recovering" with its resources locked. A failed page is recorded, counted and retried. In a
storm, an escalation of a cause already paged is listed in one summary (orchestration/storm.py).
One write of the record says the outcome, what stopped the recovery (noted by CheckGuardrails
on the guardrails item, read with the record) and the storm, decided first; a page sent adds its
fate in a second (issue 16: docs/performance.md).

Design: docs/safety.md#each-guardrail ("Paging")
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from msgspec import Struct

from core import clock, paging
from core import settings as settings_module
from core.entry import lambda_entry
from core.errors import ApprovalRejected, RecoveryError, TransientError, error_text
from core.guardrails import APPROVAL
from core.observability import logger, metrics
from core.store import RecoveryStore
from core.storms import Membership
from orchestration import storm

_IMPAIRMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def reason_of(event: dict[str, Any]) -> str:
    if event.get("return_error"):
        return (
            "recovered, but returning its emergency capacity or time-boxed routing failed: "
            f"{error_text(_mapping(event['return_error']))}"
        )
    if event.get("finalize_error"):
        return f"verified healthy, but recording the recovery failed: {error_text(_mapping(event['finalize_error']))}"
    if event.get("approval_error"):
        return _approval_text(_mapping(event.get("approval_error")), _mapping(event.get("plan")))
    if event.get("rollback_error"):
        return f"rollback failed: {error_text(_mapping(event['rollback_error']))}"
    if event.get("error"):
        return error_text(_mapping(event["error"]))
    verification = _mapping(event.get("verification"))
    if verification and not verification.get("healthy"):
        return f"not healthy after {verification.get('attempt')} verification attempts"
    return "recovery did not complete"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _approval_text(error: dict[str, Any], plan: dict[str, Any]) -> str:
    if error.get("Error") == "States.Timeout":
        return (
            f"approval: plan {plan.get('name')} needs a human's approval and none came within "
            f"{plan.get('approval_timeout_seconds')} s; nothing was changed"
        )
    if error.get("Error") == ApprovalRejected.__name__:
        why = error.get("Cause") or "no reason given"
        return f"approval: plan {plan.get('name')} was rejected ({why}); nothing was changed"
    return f"approval: {error_text(error)}"


class Escalation(Struct, frozen=True):
    """What escalating one execution state does, decided from the state and the impairment's
    record: the record written (`update`; `put` for an input without a valid impairment, or for
    an impairment that has no record: written whole, never a stub of the outcome alone),
    the resources released, the steps ended as failed, the metrics counted, whether a human is
    paged with `message`, and what the task returns."""

    kind: str  # "capacity_not_returned", "unidentified" or "escalated"
    impairment_id: str
    reason: str
    message: dict[str, Any]
    paged: bool
    result: dict[str, Any]
    update: dict[str, Any] | None = None
    put: dict[str, Any] | None = None
    release: list[str] | None = None
    slots: dict[str, str] | None = None  # the budget slots it holds (its record's); None: read them
    fail_started: str | None = None
    metrics: tuple[str, ...] = ()
    storm_key: str | None = None  # paged as part of this storm (orchestration/storm.py); None: on its own


def _unrecorded(impairment: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The record of an impairment the execution names but nothing recorded (its Start or Admit
    did not get that far): the execution's impairment with the escalation's outcome."""
    fields = dict(update)
    return {
        "impairment": {**impairment, "workload": str(impairment.get("workload") or "unknown")},
        "status": fields.pop("status", "escalated"),
        **fields,
    }


def known_id(event: dict[str, Any]) -> str | None:
    """The impairment id of an execution state, when it names a valid one."""
    impairment_id = _mapping(event.get("impairment")).get("impairment_id")
    # A string that is a valid id: None (or a number) is not the id "None" its str() would make
    return impairment_id if isinstance(impairment_id, str) and _IMPAIRMENT_ID.match(impairment_id) else None


def decide(event: dict[str, Any], record: dict[str, Any], now: str) -> Escalation:
    """The escalation of an execution state, given the impairment's record with what
    CheckGuardrails noted of it laid over it (store.get_impairment_checked; {} when there is no
    record): no I/O."""
    impairment = _mapping(event.get("impairment"))
    known = known_id(event) is not None
    impairment_id = impairment["impairment_id"] if known else "unknown"
    reason = reason_of(event)
    tripped = list(record.get("guardrails_tripped") or [])
    if event.get("approval_error") and APPROVAL not in tripped:
        tripped.append(APPROVAL)
    error_name = _mapping(event.get("error")).get("Error")
    rolled_back = (
        [r for r in event.get("rollbacks") or [] if isinstance(r, dict)]
        if isinstance(event.get("rollbacks"), list)
        else []
    )
    message = {
        "summary": f"Automatic recovery of {impairment.get('workload')} needs a human: {reason}",
        "impairment_id": impairment_id,
        "reason": reason,
        # the page links to it (core/paging.py): named by the state, else by what Admit or the record saw
        "execution": event.get("execution")
        or _mapping(event.get("admission")).get("execution_arn")
        or record.get("execution_arn"),
        "impairment": impairment,
        "plan": _mapping(event.get("plan")).get("name"),
        "actions": event.get("actions"),
        "verification": event.get("verification"),
        "rollbacks": rolled_back,
        "guardrails_tripped": tripped,
        "guardrail_evidence": record.get("guardrail_trips"),
        "next_steps": f"recoveryctl show {impairment_id}",
    }
    if known and event.get("return_error"):
        # The recovery stands (it verified); what it still holds out is a human's to return.
        result = {
            **_outcome(impairment_id, reason, now, True, tripped),
            "outcome": record.get("outcome") or "recovered",
        }
        update = {"capacity_returned": False, "capacity_note": reason}
        # A page of its own (the impairment itself recovered, and its resolve may be sent): a human returns it.
        message = {**message, "dedup_key": f"{impairment_id}-capacity"}
        put = None if record else _unrecorded(impairment, update)
        return Escalation("capacity_not_returned", impairment_id, reason, message, True, result, update, put)
    if not known:
        # Recorded under an id of its own (from the input), with the input, for the audit trail.
        raw = json.dumps(event, default=str, sort_keys=True)
        impairment_id = f"unidentified-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"
        put = {
            "impairment": {"impairment_id": impairment_id, "workload": "unidentified", "detected_at": now},
            "status": "escalated",
            "outcome": "escalated",
            "reason": reason,
            "escalated_at": record.get("escalated_at") or now,
            "paged": False,
            "page_status": "pending",
            "execution_input": raw[:20_000],
        }
        result = _outcome(impairment_id, reason, now, True, [])
        return Escalation("unidentified", impairment_id, reason, message, True, result, put=put)
    # A guardrail that tripped again on resources already escalated within its window (the sweep
    # finds the same deferred instance every minute) is recorded, not paged again.
    paged = record.get("page", True) is not False
    update = {
        "status": "escalated" if paged else "skipped",
        "outcome": "skipped" if error_name == "RecoveryPaused" or not paged else "escalated",
        "reason": reason if paged else f"{reason} (already escalated within the guardrail's window: not paged again)",
        "escalated_at": record.get("escalated_at") or now,
        "paged": False,
        "page_status": "pending" if paged else "not_needed",
        "rolled_back": bool(rolled_back),
        "guardrails_tripped": tripped,
        # what CheckGuardrails noted of the trip (its guardrails item) goes on the record here,
        # in the outcome's one write (issue 16: it was a write of the record of its own)
        **({"guardrail_trips": record["guardrail_trips"]} if record.get("guardrail_trips") else {}),
    }
    failure = _mapping(event.get("rollback_error")) or _mapping(event.get("error"))
    counted: list[str] = []
    if record.get("page_status") is None:  # counted once, not on a retried escalation
        counted.append("RecoveriesEscalated")
        if "rollback_steps" in event or event.get("rollback_error"):
            # It acted and did not recover (an action failed, or verification did): the
            # workflow's self-alarm counts escalations apart from these.
            counted.append("RecoveriesFailed")
        if rolled_back:
            counted.append("RecoveriesRolledBack")
    return Escalation(
        "escalated",
        impairment_id,
        reason,
        message,
        paged,
        _outcome(impairment_id, reason, now, paged, tripped),
        update=update,
        put=None if record else _unrecorded(impairment, update),
        release=release_keys(event, record),
        slots=held_slots(event, record),
        # a step whose retries ran out never recorded its end
        fail_started=error_text(failure) if failure else None,
        metrics=tuple(counted),
        storm_key=storm.storm_key(event, record, str(impairment.get("workload"))) if paged else None,
    )


@lambda_entry
def handler(event: Any, context: Any, store: Any = None, sns: Any = None) -> dict[str, Any]:
    # The last resort of every failure path: whatever it is given, a human is paged.
    settings = settings_module.load("table_name", "escalation_topic_arn")
    store = store or RecoveryStore(settings.table_name)
    event = event if isinstance(event, dict) else {"input": event}
    impairment_id = known_id(event)
    # the record with what CheckGuardrails noted (the trip, the slots), in one read
    record = (store.get_impairment_checked(impairment_id) if impairment_id else None) or {}
    escalation = decide(event, record, clock.utc_now().isoformat())
    return apply(escalation, store, str(_mapping(event.get("impairment")).get("workload", "?")), settings, sns)


def apply(
    escalation: Escalation, store: RecoveryStore, workload: str, settings: Any, sns: Any = None
) -> dict[str, Any]:
    """Carry an escalation out: the record and the locks first, the page last (see above).
    The storm is decided before the record is written, so that the record says in one write
    what happened and which storm carries it (an aggregated one is then done); a page sent
    records its fate in a second write. Returns the task's result (with its storm, when it is
    part of one)."""
    impairment_id, reason = escalation.impairment_id, escalation.reason
    if escalation.kind == "capacity_not_returned":
        _record(store, escalation)
        send_page(store, impairment_id, workload, reason, escalation.message, settings, sns)
        logger.warning("capacity not returned", reason=reason)
        return escalation.result
    membership = _enter_storm(escalation, store, workload)
    _record(store, escalation, _storm_fields(membership, reason))
    _release(escalation, store)
    result = escalation.result
    if membership is not None:
        result = {**result, "storm": membership.as_state()}
    if membership is not None and membership.role == "member":
        metrics.add_metric(name="PagesAggregated", unit="Count", value=1)
        result = {**result, "paged": False}
    elif escalation.paged:
        message = escalation.message if membership is None else {**escalation.message, "storm": storm.note(membership)}
        send_page(store, impairment_id, workload, reason, message, settings, sns)
    logger.warning("escalated", reason=reason, paged=escalation.paged, storm=result.get("storm"))
    return result


def _enter_storm(escalation: Escalation, store: RecoveryStore, workload: str) -> Membership | None:
    """Page now (None: alone), lead or join its storm. Entering is decided before the record is
    written; when it cannot be (the storm contended past its retries), the record and the locks
    are still done first, then the error is raised and the task's retry enters it again."""
    if not (escalation.paged and escalation.storm_key):
        return None
    try:
        return storm.enter(store, escalation.storm_key, escalation.impairment_id, workload, escalation.reason)
    except Exception:
        _record(store, escalation)
        _release(escalation, store)
        raise


def _storm_fields(membership: Membership | None, reason: str) -> dict[str, Any]:
    """What the record says of its storm: the storm it leads or joined; a member's page is the
    leader's summary (aggregated)."""
    if membership is None:
        return {}
    if membership.role == "member":
        return {"storm": membership.as_state(), "page_status": "aggregated", "page_reason": reason}
    return {"storm": membership.as_state()}


def _release(escalation: Escalation, store: RecoveryStore) -> None:
    """An escalated recovery gives back what it holds (its locks, windows and concurrency slot)
    and ends the steps it started; counted once."""
    if escalation.kind != "escalated":
        return
    store.release_locks(escalation.impairment_id, escalation.release or [], slots=escalation.slots)
    if escalation.fail_started is not None:
        store.fail_started_actions(escalation.impairment_id, escalation.fail_started)
    for name in escalation.metrics:
        metrics.add_metric(name=name, unit="Count", value=1)


def _record(store: RecoveryStore, escalation: Escalation, extra: dict[str, Any] | None = None) -> None:
    """Write the escalation's record (with `extra`: its storm): an update of the impairment's, or
    a whole record put."""
    update = {**(escalation.update or {}), **(extra or {})}
    if escalation.put is None:
        store.update_impairment(escalation.impairment_id, **update)
        return
    put = {**escalation.put, **(extra or {})}
    recorded = store.put_impairment(put.pop("impairment"), **put)
    if escalation.kind == "unidentified":
        logger.error(
            "escalated an execution state without a valid impairment",
            reason=escalation.reason,
            record=escalation.impairment_id,
        )
        return
    logger.error(
        "escalated an impairment that had no record: recorded it from the execution's input",
        impairment_id=escalation.impairment_id,
        recorded=recorded,
    )
    if not recorded:  # recorded since it was read: the outcome goes on that record
        store.update_impairment(escalation.impairment_id, **update)


def send_page(
    store: RecoveryStore,
    impairment_id: str,
    workload: str,
    reason: str,
    message: dict[str, Any],
    settings: Any,
    sns: Any = None,
) -> None:
    """Page, and record whether the page went out. A failed page is recorded and counted
    (PagesFailed) and raised as transient: the caller's retries page again."""
    try:
        paging.page(settings.escalation_topic_arn, workload, reason, message, sns=sns)
    except RecoveryError as exc:
        store.update_impairment(impairment_id, page_status="failed", page_error=str(exc)[:1000], page_reason=reason)
        metrics.add_metric(name="PagesFailed", unit="Count", value=1)
        logger.error("the page could not be sent", error=str(exc))
        raise TransientError(f"the page could not be sent: {exc}", **exc.details) from exc
    store.update_impairment(impairment_id, paged=True, page_status="sent", paged_at=clock.utc_now().isoformat())


def release_keys(event: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """Every resource key this impairment may hold a lock or a correlation window on: what Admit
    locked, what the impairment names (it may have been stopped before Admit returned: paused, a
    plan missing) and what the record says Admit locked."""
    keys: set[str] = set()
    for lock_keys in (_mapping(event.get("admission")).get("lock_keys"), record.get("lock_keys")):
        if isinstance(lock_keys, list):
            keys.update(k for k in lock_keys if isinstance(k, str))
    for holder in (_mapping(event.get("impairment")), _mapping(record.get("impairment"))):
        for resource in holder.get("affected_resources") or []:
            if isinstance(resource, dict) and resource.get("resource_type") and resource.get("resource_id"):
                keys.add(f"{resource['resource_type']}/{resource['resource_id']}")
    return sorted(keys)


def held_slots(event: dict[str, Any], record: dict[str, Any]) -> dict[str, str] | None:
    """The budget slots this impairment holds: CheckGuardrails' (the state's, then those noted
    when they were taken, on its guardrails item: `record` as store.get_impairment_checked reads
    it); None when there is no record to say (the store reads them)."""
    slots = {**(record.get("budget_slots") or {}), **(_mapping(event.get("guardrails")).get("slots") or {})}
    return slots if (slots or record) else None


def _outcome(impairment_id: str, reason: str, at: str, paged: bool, tripped: list[str]) -> dict[str, Any]:
    return {
        "outcome": "escalated",
        "impairment_id": impairment_id,
        "reason": reason,
        "escalated_at": at,
        "paged": paged,
        "guardrails_tripped": tripped,
    }
