"""Starts the recovery of a detected impairment (the target of the bus rule), after correlating
its signal resource by resource with the open impairments: a resource another holds is that
one's, a broader impairment supersedes a narrower one, and a signal about a group as a whole is
explained by an open recovery of one of its members (docs/safety.md, "Correlation"). The
execution is named after the impairment id: Step Functions refuses a second one. "Impairment
Cleared" events are recorded."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from msgspec import Struct

from core import aws, paging
from core import settings as settings_module
from core.contract import (
    CLEARED,
    DETECTED,
    AffectedResource,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
)
from core.entry import lambda_entry
from core.envelope import Envelope
from core.errors import classify_client_error
from core.model import ValidationError
from core.observability import logger, metrics
from core.store import RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, sfn: Any = None, store: Any = None) -> dict[str, Any]:
    impairment = _parse(event)
    if impairment is None:
        return {"status": "rejected"}
    settings = settings_module.load("state_machine_arn", "table_name")
    logger.set_correlation_id(impairment.impairment_id)
    store = store or RecoveryStore(settings.table_name)
    if isinstance(impairment, ImpairmentCleared):
        return _clear(store, impairment)
    record = impairment.model_dump(mode="json")
    opened = _open(store, impairment, record, settings.correlation_window_seconds)
    if opened is None:
        logger.info("a redelivery of an impairment whose recovery already started; not starting another")
        metrics.add_metric(name="DuplicateImpairments", unit="Count", value=1)
        return {"status": "duplicate", "impairment_id": impairment.impairment_id}
    held, superseded = opened
    decision = decide(impairment, held)
    _link(store, impairment, record, decision.linked)
    if decision.status == "correlated":
        # Every resource is an open impairment's: one fault, its recovery.
        store.update_impairment(
            impairment.impairment_id,
            status="correlated",
            outcome="correlated",
            linked_to=decision.linked_to,
            linked=decision.linked,
        )
        metrics.add_metric(name="SignalsCorrelated", unit="Count", value=1)
        logger.info("correlated with open impairments; no new recovery", linked=decision.linked)
        return {"status": "correlated", "impairment_id": decision.linked_to}
    if decision.status == "partly_correlated":
        # The resources others recover are theirs: this recovery acts on the rest.
        impairment = impairment.model_copy(update={"affected_resources": decision.remaining})
        store.update_impairment(
            impairment.impairment_id, impairment=impairment.model_dump(mode="json"), linked=decision.linked
        )
        metrics.add_metric(name="SignalsCorrelated", unit="Count", value=1)
        logger.info("partly correlated: recovering the resources no open impairment holds", linked=decision.linked)
    return _start_execution(store, sfn or aws.client("stepfunctions"), settings, impairment, superseded)


def _open(
    store: RecoveryStore, impairment: ImpairmentDetected, record: dict[str, Any], window: int
) -> tuple[dict[str, str], set[str]] | None:
    """Record the impairment and open its correlation windows: the resources open impairments
    hold, and the impairments it supersedes. One call on a first delivery about resources nobody
    holds, and one on its redelivery (refused: the refusal carries the record, so it is neither
    put again nor read); None for a redelivery whose execution already started (Admit recorded
    it)."""
    keys = [r.key for r in impairment.affected_resources]
    existing = None
    if not member_groups(impairment):
        opened = store.open_impairment(
            record, keys, window, impairment.signal.signal_time, "detected", mttd_seconds=impairment.mttd_seconds
        )
        if opened is True:
            return {}, set()
        existing = opened or None  # the record, as the refusal handed it back: a redelivery
    if existing is None:
        new = store.put_impairment(record, status="detected", mttd_seconds=impairment.mttd_seconds)
        existing = {} if new else store.get_impairment(impairment.impairment_id) or {}
    if existing.get("execution_arn"):
        return None
    # A redelivery after a first delivery that died before starting the execution: what it
    # superseded then (its windows are this impairment's now) is still superseded.
    superseded = set(existing.get("supersedes") or [])
    held, broader = _correlate(store, impairment, window)
    return held, superseded | broader


def _parse(event: Any) -> ImpairmentDetected | ImpairmentCleared | None:
    """The impairment event on the bus; None (logged and counted) when it is not a valid one."""
    try:
        envelope = Envelope.model_validate(event)
        if envelope.detail_type == DETECTED:
            return ImpairmentDetected.model_validate(envelope.detail)
        if envelope.detail_type == CLEARED:
            return ImpairmentCleared.model_validate(envelope.detail)
        raise ValueError(f"unexpected detail-type {envelope.detail_type!r}")
    except (ValidationError, ValueError) as exc:
        errors = exc.errors(include_url=False, include_input=False) if isinstance(exc, ValidationError) else str(exc)
        logger.error(
            "rejected an event that is not a valid impairment event",
            errors=errors,
            event_id=event.get("id") if isinstance(event, dict) else None,
        )
        metrics.add_metric(name="ImpairmentEventsRejected", unit="Count", value=1)
        return None


def _clear(store: RecoveryStore, impairment: ImpairmentCleared) -> dict[str, Any]:
    """ "Impairment Cleared" is recorded on the impairment's record, if it has one."""
    record = store.get_impairment(impairment.impairment_id)
    if record is None:
        logger.info("cleared an impairment with no recovery record")
        return {"status": "cleared", "recorded": False}
    store.update_impairment(impairment.impairment_id, cleared_at=impairment.cleared_at.isoformat())
    # Its page, if it paged and its recovery has ended (a running one's Finalize or Escalate decides).
    resolved = record.get("outcome") in paging.ENDED and paging.resolve_if_paged(
        store, impairment.impairment_id, "cleared", settings_module.load().escalation_topic_arn, record
    )
    return {"status": "cleared", "recorded": True, "page_resolved": resolved}


def _correlate(store: RecoveryStore, impairment: ImpairmentDetected, window: int) -> tuple[dict[str, str], set[str]]:
    """Open this impairment's correlation windows: returns the resources open impairments hold
    ({resource key: holder id}) and the narrower impairments this one supersedes (their windows
    taken over, and each marked superseded_by this one)."""
    keys = [r.key for r in impairment.affected_resources]
    signal_time = impairment.signal.signal_time
    groups = member_groups(impairment)
    records = (
        store.list_impairments(impairment.workload, since=signal_time - timedelta(seconds=window)) if groups else []
    )
    explained_by = open_recovery_of_a_member(impairment, groups, records)
    if explained_by:
        held = {key: explained_by for key in keys}
    else:
        held = store.correlate(impairment.impairment_id, keys, window, signal_time)
    holders = {} if explained_by else {owner: store.get_impairment(owner) or {} for owner in sorted(set(held.values()))}
    broader = broader_than(impairment, holders)  # not broader than what explains it: checked
    if broader:
        taken = {key: owner for key, owner in held.items() if owner in broader}
        kept = {key: owner for key, owner in held.items() if owner not in broader}
        held = {**kept, **store.correlate(impairment.impairment_id, list(taken), window, signal_time, take_over=taken)}
        for owner in broader:
            store.update_impairment(owner, superseded_by=impairment.impairment_id)
    return held, broader


class Correlated(Struct, frozen=True):
    """What a detected impairment becomes, given the resources open impairments hold:
    "correlated" (every resource is theirs: no recovery of its own; linked_to the first),
    "partly_correlated" (a recovery of the `remaining` resources) or "own" (a recovery of all).
    `linked`: {open impairment id: [the resource keys it holds]}."""

    status: str
    linked: dict[str, list[str]]
    remaining: list[AffectedResource]
    linked_to: str | None = None


def decide(impairment: ImpairmentDetected, held: dict[str, str]) -> Correlated:
    """No I/O: the decision once the windows are open."""
    linked: dict[str, list[str]] = {}
    for key, owner in sorted(held.items()):
        linked.setdefault(owner, []).append(key)
    if len(held) == len({r.key for r in impairment.affected_resources}):
        return Correlated("correlated", linked, [], sorted(linked)[0])
    remaining = [r for r in impairment.affected_resources if r.key not in held]
    return Correlated("partly_correlated" if held else "own", linked, remaining)


def _start_execution(
    store: RecoveryStore, client: Any, settings: Any, impairment: ImpairmentDetected, superseded: set[str]
) -> dict[str, Any]:
    """Start the recovery's execution, named after the impairment (a second one is refused)."""
    execution_input: dict[str, Any] = {"impairment": impairment.model_dump(mode="json")}
    if superseded:
        execution_input["supersedes"] = sorted(superseded)  # Admit takes over their locks
        store.update_impairment(impairment.impairment_id, supersedes=sorted(superseded))
        logger.info("supersedes narrower impairments", supersedes=sorted(superseded))
    try:
        response = client.start_execution(
            stateMachineArn=settings.state_machine_arn,
            name=impairment.impairment_id,
            input=json.dumps(execution_input),
        )
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code == "ExecutionAlreadyExists":
            logger.info("this impairment already has an execution; not starting another")
            metrics.add_metric(name="DuplicateImpairments", unit="Count", value=1)
            return {"status": "duplicate", "impairment_id": impairment.impairment_id}
        raise classify_client_error(exc, "states:StartExecution") from exc
    metrics.add_metric(name="RecoveriesStarted", unit="Count", value=1)
    logger.info("recovery started", execution_arn=response["executionArn"])
    return {"status": "started", "execution_arn": response["executionArn"]}


# One member of a group: what a signal about the group as a whole may be explained by.
_MEMBER_TYPES = frozenset({"ec2:instance", "elasticloadbalancing:target"})
_OPEN = frozenset({"detected", "admitting", "admitted", "recovering", "awaiting_approval", "rolling_back"})


def member_groups(impairment: ImpairmentDetected) -> set[str]:
    """The Auto Scaling groups a signal about a group as a whole names (none when it names an
    instance or a target: it is about a member)."""
    if any(r.resource_type in _MEMBER_TYPES for r in impairment.affected_resources):
        return set()
    groups = {r.resource_id for r in impairment.affected_resources if r.resource_type == "autoscaling:group"}
    if impairment.scope.get("auto_scaling_group"):
        groups.add(impairment.scope["auto_scaling_group"])
    return groups


def open_recovery_of_a_member(
    impairment: ImpairmentDetected, groups: set[str], records: list[dict[str, Any]]
) -> str | None:
    """A signal about a group as a whole (say an unhealthy-hosts alarm that fires a minute after
    the status-check alarm, when the failed instance is already being replaced and no target is
    unhealthy any more) is explained by an open recovery of one of that group's members (among
    `records`: the workload's detected within the correlation window), unless it is broader
    (scope, then severity). Returns that recovery's id, or None: a group-level signal of its own."""
    if not groups:
        return None
    mine = _rank(impairment.model_dump(mode="json"))
    for record in records:
        other = record.get("impairment") or {}
        if (
            record.get("impairment_id") == impairment.impairment_id
            or record.get("status") not in _OPEN
            or record.get("outcome")
            or other.get("account_id") != impairment.account_id
            or (other.get("scope") or {}).get("auto_scaling_group") not in groups
            or not any(r.get("resource_type") in _MEMBER_TYPES for r in other.get("affected_resources") or [])
        ):
            continue
        theirs = _rank(record)
        if mine is not None and theirs is not None and mine <= theirs:
            return str(record["impairment_id"])
    return None


# A broader scope supersedes a narrower one: a region over a zone over anything else.
_SCOPE_RANK = {ImpairmentType.REGION_IMPAIRMENT: 2, ImpairmentType.AZ_IMPAIRMENT: 1}


def broader_than(impairment: ImpairmentDetected, holders: dict[str, dict[str, Any]]) -> set[str]:
    """The open impairments holding some of these resources ({id: record}) that this one is
    broader than (its scope's rank, then its severity): it supersedes them instead of being
    folded under them."""
    mine = _rank(impairment.model_dump(mode="json"))
    broader = set()
    for owner, other in holders.items():
        theirs = _rank(other)
        if mine is not None and theirs is not None and mine > theirs:
            broader.add(owner)
    return broader


def _rank(record: dict[str, Any]) -> tuple[int, int] | None:
    """How broad an impairment (record) is: its scope (region over zone over the rest), then its
    severity; None for a record that names neither as the contract does."""
    try:
        kind = ImpairmentType(record.get("impairment_type"))
        severity = Severity(record.get("severity"))
    except ValueError:
        return None
    return (_SCOPE_RANK.get(kind, 0), severity.rank)


def _link(
    store: RecoveryStore, impairment: ImpairmentDetected, record: dict[str, Any], linked: dict[str, list[str]]
) -> None:
    """Link this signal to each open impairment holding some of its resources, for those
    resources ({impairment id: [resource keys]})."""
    for owner, resources in linked.items():
        store.link_signal(
            owner,
            {
                "impairment_id": impairment.impairment_id,
                "impairment_type": impairment.impairment_type.value,
                "severity": impairment.severity.value,
                "signal": record["signal"],
                "detected_at": record["detected_at"],
                "resources": resources,
            },
        )
