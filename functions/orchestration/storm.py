"""One page per storm, not one per impairment. In a storm (a zone lost under a fleet) one cause
escalates many impairments at once: the per-plan rate limit alone can stop hundreds. Paging each
buries the on-call; paging the first and listing the rest is what they can act on.

Escalations with the same storm key (storm_key: the cause, scoped to the workload unless the
cause is a budget shared by workloads) within the deployment's storm window
(STORM_WINDOW_SECONDS) are one storm (core/storms.py). The first pages at once, saying a
summary follows; the others are recorded "aggregated" with the storm's id and page nobody; at
the window's end the first's execution waits no more (its record and locks are done) and
SummarizeStorm (handler, below) pages one summary listing them, or nothing when none joined.
Never aggregated: approval escalations (a human decided, or must), capacity not returned, an
input without an impairment. A storm window of 0 pages every escalation at once."""

from __future__ import annotations

from typing import Any

from core import clock, paging
from core import settings as settings_module
from core.entry import lambda_entry
from core.errors import InvalidInput, RecoveryError, TransientError
from core.observability import logger, metrics
from core.store import RecoveryStore
from core.storms import LISTED, Membership, Roster

_KEY_LIMIT = 512


def storm_key(event: dict[str, Any], record: dict[str, Any], workload: str) -> str | None:
    """No I/O: the storm an escalation belongs to, None when it is never aggregated. A guardrail's
    budget that ran out is its own scope (the per-plan rate limit and the concurrency cap stop
    every workload alike: one storm); any other cause (a guardrail, an error's name, a failed
    rollback or verification) is the workload's."""
    if event.get("approval_error") or event.get("return_error"):
        return None
    budgets = sorted(
        {
            str(trip["evidence"]["budget"]).removeprefix("BUDGET#")
            for trip in record.get("guardrail_trips") or []
            if isinstance(trip, dict) and isinstance(trip.get("evidence"), dict) and trip["evidence"].get("budget")
        }
    )
    if budgets:
        return "+".join(budgets)[:_KEY_LIMIT]
    error = event.get("error") if isinstance(event.get("error"), dict) else {}
    verification = event.get("verification") if isinstance(event.get("verification"), dict) else {}
    if record.get("guardrails_tripped"):
        cause = "+".join(sorted(record["guardrails_tripped"]))
    elif event.get("rollback_error"):
        cause = "rollback_failed"
    elif error.get("Error"):
        cause = str(error["Error"])
    elif verification and not verification.get("healthy"):
        cause = "not_healthy"
    else:
        cause = "not_completed"
    return f"{workload}#{cause}"[:_KEY_LIMIT]


def enter(store: RecoveryStore, key: str, impairment_id: str, workload: str, reason: str) -> Membership | None:
    """Join or open the key's storm (None: storms are off, STORM_WINDOW_SECONDS 0)."""
    window = settings_module.load().storm_window_seconds
    if window <= 0:
        return None
    return store.storms.enter(key, impairment_id, {"workload": workload, "reason": reason[:500]}, window)


def note(membership: Membership) -> dict[str, Any]:
    """What the leader's page says about the storm it opened."""
    return {
        **membership.as_state(),
        "note": f"further escalations for the same cause ({membership.key}) until {membership.summary_at} are not "
        "paged one by one: one summary then lists them (nothing is sent if there are none)",
    }


def summary_message(storm: dict[str, Any], roster: Roster) -> dict[str, Any]:
    """No I/O: the summary page of a closed storm: the impairments its roster lists (in the order
    they escalated, with workload and reason) and how many more it only counted."""
    listed = roster.listed
    count = roster.count
    not_listed = count - len(listed)
    leader = (storm.get("leader_entry") or {}).get("workload") or "?"
    workloads = sorted({str(m.get("workload")) for m in listed} | {leader})
    more = f" (and {not_listed} more, not listed past {LISTED}: their records name this storm)" if not_listed else ""
    return {
        "summary": f"{count} more escalation(s) for the same cause ({storm['key']}) since the page about "
        f"{storm['leader']}, in {', '.join(workloads)}: listed below{more}",
        "storm_id": storm["storm_id"],
        # its own incident: not resolved by any one impairment it lists (docs/operations.md#paging)
        "dedup_key": f"storm-{storm['storm_id']}",
        "storm_key": storm["key"],
        "leader_impairment_id": storm["leader"],
        "opened_at": storm.get("opened_at"),
        "closed_at": storm.get("closed_at"),
        "count": count,
        "not_listed": not_listed,
        "workloads": workloads,
        "impairments": listed,
        "next_steps": "recoveryctl show <impairment id>, for each one listed",
    }


def summarize(store: RecoveryStore, key: str, storm_id: str, topic_arn: str, sns: Any = None) -> dict[str, Any]:
    """Close the storm and page its summary, once. A page that fails is recorded on the storm,
    counted (PagesFailed) and raised as transient: the state machine asks again, and the
    members it claimed are still the storm's to list."""
    storm = store.storms.close(key, storm_id)
    if storm.get("summary_status") in ("sent", "not_needed"):
        return {"storm_id": storm_id, "summary_status": storm["summary_status"]}
    message = summary_message(storm, store.storms.roster(key, storm_id))
    if not message["count"]:
        store.storms.summarized(key, storm_id, "not_needed")
        return {"storm_id": storm_id, "summary_status": "not_needed", "count": 0}
    workload = (storm.get("leader_entry") or {}).get("workload") or "?"
    try:
        paging.page(topic_arn, workload, f"storm: {message['count']} more escalation(s) ({key})", message, sns=sns)
    except RecoveryError as exc:
        store.storms.summarized(key, storm_id, "failed", page_error=str(exc)[:1000])
        metrics.add_metric(name="PagesFailed", unit="Count", value=1)
        logger.error("the storm's summary could not be sent", storm_id=storm_id, error=str(exc))
        raise TransientError(f"the storm's summary could not be sent: {exc}", **exc.details) from exc
    store.storms.summarized(key, storm_id, "sent", summary_sent_at=clock.utc_now().isoformat(), count=message["count"])
    logger.warning("storm summarized", storm_id=storm_id, count=message["count"])
    return {"storm_id": storm_id, "summary_status": "sent", "count": message["count"]}


@lambda_entry
def handler(event: Any, context: Any, store: Any = None, sns: Any = None) -> dict[str, Any]:
    """SummarizeStorm: after the leader's Wait, the storm's summary ({"storm": Escalate's storm})."""
    storm = event.get("storm") if isinstance(event, dict) else None
    if not isinstance(storm, dict) or not storm.get("key") or not storm.get("storm_id"):
        raise InvalidInput("SummarizeStorm needs the storm Escalate returned (its key and storm_id)")
    settings = settings_module.load("table_name", "escalation_topic_arn")
    store = store or RecoveryStore(settings.table_name)
    return summarize(store, str(storm["key"]), str(storm["storm_id"]), settings.escalation_topic_arn, sns)
