"""RDS detector: RDS and Aurora events about a protected DB instance or DB cluster.

Failovers, shutdowns, recoveries, storage exhaustion and failures become a `database_issue`; the
completion of one clears the impairment its start raised. Which event leads to what is a table
in the design page.

Design: docs/detectors.md#rds
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from msgspec import Meta, Struct

from core import aws, clock
from core.contract import (
    AffectedResource,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    Signal,
    make_impairment_id,
)
from core.entry import lambda_entry
from core.errors import PermanentError, classify_client_error
from core.model import AwareDatetime, Model
from core.observability import logger
from core.reads import tags
from detectors.common import Envelope, Findings, load_settings, parse, publish
from detectors.resolve import Owner, owner_from_tags

SOURCE = "aws.rds"
DETAIL_TYPES = ("RDS DB Instance Event", "RDS DB Cluster Event")
CLEARING_LOOKBACK = timedelta(hours=6)  # a Multi-AZ failover takes minutes; a recovery can take hours
_SOURCE_ARN = re.compile(r"^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:(db|cluster):([A-Za-z][A-Za-z0-9-]{0,62})$")

# --- what each event means ----------------------------------------------------------------------

Episode = Literal["failover", "availability", "recovery"]


class Meaning(Struct, frozen=True):
    """What an RDS event means here: an impairment that starts (detect), the end of one (clear),
    or nothing; `episode` pairs a start with its end."""

    outcome: Literal["detect", "clear", "nothing"]
    what: str
    severity: Severity | None = None
    episode: Episode | None = None


_HIGH, _CRITICAL = Severity.HIGH, Severity.CRITICAL
_FAILOVER_STARTED = Meaning("detect", "failover started", _HIGH, "failover")
_FAILOVER_DONE = Meaning("clear", "failover completed", episode="failover")
_SHUTDOWN = Meaning("detect", "DB instance shut down", _HIGH, "availability")
_RESTARTED = Meaning("clear", "DB instance restarted", episode="availability")
_RECOVERY_STARTED = Meaning("detect", "recovery of the DB instance started", _HIGH, "recovery")
_RECOVERY_DONE = Meaning("clear", "recovery of the DB instance complete", episode="recovery")
_SERVES = Meaning("nothing", "a misconfigured feature; the database itself serves")

BY_EVENT_ID: dict[str, Meaning] = {
    "RDS-EVENT-0013": _FAILOVER_STARTED,
    "RDS-EVENT-0015": _FAILOVER_DONE,
    "RDS-EVENT-0049": _FAILOVER_DONE,
    "RDS-EVENT-0065": _FAILOVER_DONE,
    "RDS-EVENT-0072": _FAILOVER_STARTED,
    "RDS-EVENT-0073": _FAILOVER_STARTED,
    "RDS-EVENT-0071": _FAILOVER_DONE,
    "RDS-EVENT-0069": Meaning("detect", "cluster failover failed", _CRITICAL),
    "RDS-EVENT-0034": Meaning("nothing", "failover not attempted: one happened recently"),
    "RDS-EVENT-0050": Meaning("nothing", "Multi-AZ activation started after a recovery"),
    "RDS-EVENT-0051": Meaning("nothing", "Multi-AZ activation complete"),
    "RDS-EVENT-0004": _SHUTDOWN,
    "RDS-EVENT-0006": _RESTARTED,
    "RDS-EVENT-0020": _RECOVERY_STARTED,
    "RDS-EVENT-0052": _RECOVERY_STARTED,
    "RDS-EVENT-0021": _RECOVERY_DONE,
    "RDS-EVENT-0053": _RECOVERY_DONE,
    "RDS-EVENT-0007": Meaning("detect", "allocated storage exhausted", _CRITICAL),
    "RDS-EVENT-0058": _SERVES,
    "RDS-EVENT-0079": _SERVES,
    "RDS-EVENT-0080": _SERVES,
    "RDS-EVENT-0081": _SERVES,
}

# Messages of the paired events, for an event without an EventID and to find a start again in
# DescribeEvents (whose events carry no EventID).
_STARTS: dict[Episode, re.Pattern[str]] = {
    "failover": re.compile(r"failover.*\bstarted\b|\bstarted\b.*failover", re.IGNORECASE),
    "availability": re.compile(r"\bshutdown\b", re.IGNORECASE),
    "recovery": re.compile(r"recovery of the .* has started", re.IGNORECASE),
}
_ENDS: dict[Episode, re.Pattern[str]] = {
    "failover": re.compile(
        r"failover.*\bcomplete(d)?\b|\bcompleted failover\b|recovered from a partial failover", re.I
    ),
    "availability": re.compile(r"\brestarted\b", re.IGNORECASE),
    "recovery": re.compile(r"recovery of the .* (is )?complete", re.IGNORECASE),
}
_BY_CATEGORY = {"failure": _CRITICAL, "low storage": _HIGH, "failover": _HIGH, "availability": _HIGH}


def meaning(event_id: str | None, categories: list[str], message: str) -> Meaning:
    """What this event means (see the module's table)."""
    if event_id and event_id in BY_EVENT_ID:
        return BY_EVENT_ID[event_id]
    lowered = {c.lower() for c in categories}
    if not event_id:
        for episode in ("failover", "availability", "recovery"):
            if episode in lowered and _ENDS[episode].search(message):
                return Meaning("clear", message[:120], episode=episode)  # type: ignore[arg-type]
            if episode in lowered and _STARTS[episode].search(message):
                return Meaning("detect", message[:120], _HIGH, episode)  # type: ignore[arg-type]
    found = [(_BY_CATEGORY[c], c) for c in lowered if c in _BY_CATEGORY]
    if not found:
        return Meaning("nothing", f"{', '.join(sorted(lowered)) or 'uncategorized'} event")
    severity, category = max(found, key=lambda pair: pair[0].rank)
    return Meaning("detect", f"{category} event", severity)


# --- the event -------------------------------------------------------------------------------


class RdsEventDetail(Model, kw_only=True):
    EventCategories: list[str] = []
    SourceType: str | None = None
    SourceArn: Annotated[str, Meta(min_length=1)]
    Date: AwareDatetime
    Message: str = ""
    SourceIdentifier: str | None = None
    EventID: str | None = None
    Tags: dict[str, str] | None = None


class RdsEvent(Envelope, kw_only=True):
    detail: RdsEventDetail


# --- what the detector needs to know about the world ------------------------------------------


class Inventory(Protocol):
    def database_owner(self, source_arn: str, identifier: str) -> Owner | None: ...

    def events(self, kind: str, identifier: str, category: str, since: datetime, until: datetime) -> list[dict]: ...


class AwsInventory:
    """The database's tags and recent events over the real APIs."""

    def __init__(self, managed_tag: tuple[str, str], client: Any = None, account: str | None = None) -> None:
        self.managed_tag = managed_tag
        self._client = client
        self.account = account  # the member account the signal came from (None: this one)

    def _rds(self) -> Any:
        return self._client or aws.client("rds", account=self.account)

    def database_owner(self, source_arn: str, identifier: str) -> Owner | None:
        try:
            found = tags.of_rds(self._rds(), source_arn)
        except PermanentError as error:
            if error.details.get("code") in ("DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault"):
                return None  # deleted since: nothing left to recover
            raise
        return owner_from_tags(found, managed_tag=self.managed_tag, fallback_name=identifier)

    def events(self, kind: str, identifier: str, category: str, since: datetime, until: datetime) -> list[dict]:
        """DescribeEvents of one DB instance or cluster in [since, until], in one category."""
        found: list[dict] = []
        try:
            for page in (
                self._rds()
                .get_paginator("describe_events")
                .paginate(
                    SourceIdentifier=identifier,
                    SourceType="db-cluster" if kind == "cluster" else "db-instance",
                    StartTime=since,
                    EndTime=until,
                    EventCategories=[category],
                )
            ):
                found.extend(page.get("Events", []))
        except Exception as exc:
            raise classify_client_error(exc, "rds:DescribeEvents") from exc
        return found


# --- classification (pure but for the inventory) ----------------------------------------------


def classify(event: RdsEvent, inventory: Inventory, managed_tag: tuple[str, str], now: datetime) -> Findings:
    detail = event.detail
    found = meaning(detail.EventID, detail.EventCategories, detail.Message)
    label = f"{detail.EventID or 'RDS event'}: {found.what}"
    if found.outcome == "nothing":
        return Findings.nothing(f"{label} is not an impairment")
    match = _SOURCE_ARN.match(detail.SourceArn)
    if not match:
        return Findings.nothing(f"{detail.SourceArn} is neither a DB instance nor a DB cluster")
    kind, identifier = match.groups()

    if detail.Tags is not None:  # RDS puts the resource's tags in the event: no look-up needed
        owner = owner_from_tags(detail.Tags, managed_tag=managed_tag, fallback_name=identifier)
    else:
        owner = inventory.database_owner(detail.SourceArn, identifier)
    if owner is None:
        return Findings.nothing(f"{kind} {identifier} is not managed (or no longer exists)")

    if found.outcome == "clear" and found.episode:
        return _clearing(event, inventory, owner, kind, identifier, found.episode, label)

    resource_type, scope_key = ("rds:cluster", "db_cluster") if kind == "cluster" else ("rds:db", "db_instance")
    impairment = ImpairmentDetected(
        impairment_id=make_impairment_id(owner.workload, SOURCE, detail.SourceArn, detail.Date),
        impairment_type=ImpairmentType.DATABASE_ISSUE,
        severity=found.severity or Severity.HIGH,
        workload=owner.workload,
        affected_resources=[AffectedResource(resource_type=resource_type, resource_id=identifier)],
        signal=Signal(source=SOURCE, id=detail.SourceArn, signal_time=detail.Date, name=detail.EventID),
        detected_at=max(now, detail.Date),
        description=f"{identifier}: {detail.Message or found.what}"[:2048],
        scope={scope_key: identifier},
    )
    return Findings([impairment], [], label)


def _clearing(
    event: RdsEvent, inventory: Inventory, owner: Owner, kind: str, identifier: str, episode: Episode, label: str
) -> Findings:
    """The impairment the start of this episode raised, cleared; nothing if no start is found."""
    detail = event.detail
    # The episodes are named after the RDS category their events are in.
    candidates = inventory.events(kind, identifier, episode, detail.Date - CLEARING_LOOKBACK, detail.Date)
    starts = [
        e
        for e in candidates
        if isinstance(e.get("Date"), datetime)
        and e["Date"] <= detail.Date
        and e.get("SourceArn", detail.SourceArn) == detail.SourceArn
        and _STARTS[episode].search(str(e.get("Message", "")))
        and not _ENDS[episode].search(str(e.get("Message", "")))
    ]
    if not starts:
        return Findings.nothing(f"{label}: no {episode} start of {identifier} to clear")
    opened: datetime = max(e["Date"] for e in starts)
    cleared = ImpairmentCleared(
        impairment_id=make_impairment_id(owner.workload, SOURCE, detail.SourceArn, opened),
        workload=owner.workload,
        signal=Signal(source=SOURCE, id=detail.SourceArn, signal_time=opened, name=detail.EventID),
        cleared_at=detail.Date,
        description=f"{identifier}: {detail.Message or label}"[:2048],
    )
    return Findings([], [cleared], label)


# --- the handler -----------------------------------------------------------------------------


@lambda_entry
def handler(event: Any, context: Any, inventory: Inventory | None = None, publisher: Any = None) -> dict[str, Any]:
    """Entry point. Bad input is logged as a structured error and emits nothing; it is not
    raised, so an event that can never parse is not retried forever."""
    parsed, account, stop = parse(event, RdsEvent, SOURCE, tuple(DETAIL_TYPES), "RDS event")
    if stop is not None:
        return stop

    settings = load_settings("event_bus_name")
    detail = parsed.detail
    logger.append_keys(source_arn=detail.SourceArn, rds_event_id=detail.EventID, categories=detail.EventCategories)
    inventory = inventory or AwsInventory(settings.managed_tag, account=account)
    findings = classify(parsed, inventory, settings.managed_tag, clock.utc_now())
    return publish(findings, publisher, settings.event_bus_name, account)
