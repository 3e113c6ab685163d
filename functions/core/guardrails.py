"""Guardrails: what stops an automatic recovery from making an outage worse.

Each guardrail is configuration (validated at synth, read at run time) and a pure decision over
facts gathered by the CheckGuardrails task (orchestration/check_guardrails.py): blast radius,
fail open, rate limits, flapping, maintenance windows and blocked dates. The kill switch is
checked earlier, by Admit, and plan approval by its own state.

Design: docs/safety.md#each-guardrail
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Annotated, Any

from msgspec import Meta, field

from core.blocking import Blocking
from core.model import Model

# The names a drill report and the impairment record use for what stopped a recovery.
BLAST_RADIUS = "blast_radius"
FAIL_OPEN = "fail_open"
RATE_LIMIT = "rate_limit"
CONCURRENCY = "concurrency"
FLAPPING = "flapping"
MAINTENANCE = "maintenance_window"
PAUSED = "paused"
APPROVAL = "approval"
BLOCKED = "blocked"


class BlastRadius(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_share: Annotated[
        float, Meta(gt=0, le=1, description="share of a group's instances acted on within the window")
    ] = 1 / 3
    window_seconds: Annotated[
        int,
        Meta(
            ge=60,
            le=7 * 86400,
            description="the longest an instance acted on counts against its group: a recovery that verified gives "
            "its instances back at once (their replacements are healthy); one that did not keeps them counted this "
            "long",
        ),
    ] = 600


class FailOpen(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Most of a fleet impaired at once is likelier a shared cause (a dependency, a bad health
    check) than that many independent failures: act on none of it. A share means little in a small
    fleet (one instance of one is 100 %), so the share applies from `min_fleet` instances on; a
    count (`max_impaired`) bounds large fleets whatever their share."""

    impaired_share: Annotated[
        float, Meta(gt=0, le=1, description="more than this share of a fleet impaired at once: act on none of it")
    ] = 0.5
    min_fleet: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="the share applies to fleets of at least this many instances (smaller ones are recovered)",
        ),
    ] = 4
    max_impaired: Annotated[
        Annotated[int, Meta(ge=1, le=100_000)] | None,
        Meta(description="more than this many instances impaired at once: act on none"),
    ] = None


class RateLimits(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    per_workload_per_hour: Annotated[int, Meta(ge=1, le=10_000)] = 10
    per_plan_per_hour: Annotated[int, Meta(ge=1, le=10_000, description="a plan may set its own")] = 20
    max_concurrent: Annotated[int, Meta(ge=1, le=10_000, description="recoveries running at once, in all")] = 25


class Flapping(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_recoveries: Annotated[
        int, Meta(ge=1, le=1000, description="recoveries of the same resource or kind within the window")
    ] = 3
    window_seconds: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600


class Guardrails(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    blast_radius: BlastRadius = field(default_factory=BlastRadius)
    fail_open: FailOpen = field(default_factory=FailOpen)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    flapping: Flapping = field(default_factory=Flapping)
    blocking: Annotated[
        Blocking, Meta(description="when a recovery waits instead of acting: every plan's, unless its own")
    ] = field(default_factory=Blocking)


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_WEEKDAYS = list(Weekday)
# A time of day, "02:00" or "02:00:30" (as written in a configuration; pydantic read both).
TimeOfDay = Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")]


class MaintenanceWindow(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A weekly window, e.g. {"days": ["sun"], "start": "02:00", "end": "04:00"}. A window whose
    end is earlier than its start runs past midnight into the next day."""

    days: Annotated[list[Weekday], Meta(min_length=1)] = field(default_factory=lambda: list(Weekday))
    start: TimeOfDay
    end: TimeOfDay

    def _check(self) -> None:
        if self.starts == self.ends:
            raise ValueError("a maintenance window's start and end must differ")

    @property
    def starts(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def ends(self) -> time:
        return time.fromisoformat(self.end)

    def covers(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        start, end = self.starts, self.ends
        today = _WEEKDAYS[local.weekday()]
        yesterday = _WEEKDAYS[(local.weekday() - 1) % 7]
        if start < end:
            return today in self.days and start <= now < end
        # past midnight: from start on a listed day until end on the day after
        return (today in self.days and now >= start) or (yesterday in self.days and now < end)


def _zone(name: str) -> tzinfo:
    """The IANA zone `name`; zoneinfo (and the tz database's search) only for a zone other than UTC,
    the default, so that a first invocation of a workload without one does not import it."""
    if name == "UTC":
        return UTC
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _known_zone(value: str) -> None:
    if value == "UTC":
        return
    from zoneinfo import ZoneInfoNotFoundError

    try:
        _zone(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from exc


class Maintenance(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """When no automatic action runs for a workload (detections are still recorded and escalated)."""

    timezone: Annotated[str, Meta(description="IANA time zone of the windows and dates")] = "UTC"
    windows: list[MaintenanceWindow] = []
    blocked_dates: Annotated[list[date], Meta(description="whole days, e.g. a release or a sale")] = []

    _field_checks = {"timezone": _known_zone}

    def blocks(self, at: datetime) -> str | None:
        """Why automatic action is blocked at `at`, or None."""
        if not (self.windows or self.blocked_dates):
            return None
        local = at.astimezone(_zone(self.timezone))
        if local.date() in self.blocked_dates:
            return f"{local.date().isoformat()} is a blocked date ({self.timezone})"
        for window in self.windows:
            if window.covers(local):
                days = ",".join(d.value for d in window.days)
                return f"in the maintenance window {days} {window.starts:%H:%M}-{window.ends:%H:%M} ({self.timezone})"
        return None


# --- decisions over gathered facts ------------------------------------------------------------


class Trip(Model, kw_only=True, forbid_unknown_fields=True):
    """A guardrail that stopped (part of) a recovery, with the evidence for the human."""

    guardrail: str
    reason: str
    evidence: dict[str, Any] = {}


def blast_key(group: str) -> str:
    """The budget (store.take_budgets) counting what recoveries act on in a group at once: its
    shards are BUDGET#blast_radius#<group>#<i> (core/budgets.py)."""
    return f"BUDGET#blast_radius#{group}"


def blast_healthy_key(group: str) -> str:
    """The one item of a group's blast radius holding the healthy instances acted on: every
    recovery acting on one writes it (conditioned on its version), so that the healthy floor is
    decided on what the others took, never on a stale read; acting on impaired instances only
    leaves it alone (they take no healthy capacity)."""
    return f"BUDGET#blast_healthy#{group}"


def blast_radius_limit(group_size: int, max_share: float) -> int:
    """How many instances of a group may be acted on within the window: the share, rounded
    down, but at least one (a group of two can still have its failed instance replaced)."""
    return max(1, math.floor(group_size * max_share + 1e-9))


def fail_open(impaired: set[str], fleet: set[str], settings: FailOpen, group: str | None = None) -> Trip | None:
    """Most of the fleet impaired at once: a shared dependency or a bad health check is likelier
    than that many independent failures, and replacing them all would make it worse. The share
    counts from `min_fleet` instances on; `max_impaired`, when set, at any size."""
    if not fleet:
        return None
    count = len(impaired & fleet)
    share = count / len(fleet)
    over_share = len(fleet) >= settings.min_fleet and share > settings.impaired_share
    over_count = settings.max_impaired is not None and count > settings.max_impaired
    if not (over_share or over_count):
        return None
    limit = f"more than {settings.impaired_share:.0%}" if over_share else f"more than {settings.max_impaired} at once"
    where = f" of group {group}" if group else ""
    return Trip(
        guardrail=FAIL_OPEN,
        reason=(
            f"{count} of {len(fleet)} instances{where} look impaired at once ({limit}): acting on none, a human decides"
        ),
        evidence={
            "group": group,
            "impaired": sorted(impaired & fleet),
            "fleet_size": len(fleet),
            "share": round(share, 3),
            "min_fleet": settings.min_fleet,
            "max_impaired": settings.max_impaired,
        },
    )


def blast_radius(
    wanted: list[str],
    already_acted: set[str],
    group: dict[str, Any],
    healthy: set[str],
    settings: BlastRadius,
    used: int | None = None,
) -> tuple[list[str], list[str], Trip | None]:
    """Split the instances this recovery wants to act on into those allowed now and those
    deferred to a human. `already_acted` are the group's instances acted on within the window by
    other recoveries; `healthy` the instances the group counts healthy and in service.

    `used`, when given, is the count the other recoveries hold (the budget's units: each holding
    counts every instance it names, so the count stays exact whichever holding is given back
    first): every instance allowed then takes one, even one another recovery acted on already
    (it takes no healthy capacity). Without it the count is of the instances acted on."""
    size = len(group.get("Instances", [])) or int(group.get("DesiredCapacity", 0))
    limit = blast_radius_limit(size, settings.max_share)
    floor = minimum_healthy(group)
    allowed: list[str] = []
    deferred: list[str] = []
    acted = set(already_acted)
    count = len(acted) if used is None else max(used, len(acted))
    for instance in wanted:
        again = instance in acted
        if again and used is None:  # a retry, or already counted
            allowed.append(instance)
            continue
        healthy_after = len(healthy - acted - {instance})
        if count + 1 > limit or (not again and instance in healthy and healthy_after < floor):
            deferred.append(instance)
            continue
        count += 1
        acted.add(instance)
        allowed.append(instance)
    if not deferred:
        return allowed, deferred, None
    return (
        allowed,
        deferred,
        Trip(
            guardrail=BLAST_RADIUS,
            reason=(
                f"at most {limit} of the {size} instances of group {group.get('AutoScalingGroupName')} may be acted on "
                f"at once, keeping at least {floor} healthy ({len(already_acted)} already acted on): "
                f"{len(deferred)} deferred until that capacity is back"
            ),
            evidence={
                "group": group.get("AutoScalingGroupName"),
                "group_size": size,
                "limit": limit,
                "minimum_healthy": floor,
                "already_acted": sorted(already_acted),
                "allowed": allowed,
                "deferred": deferred,
            },
        ),
    )


def minimum_healthy(group: dict[str, Any]) -> int:
    """The healthy capacity a group must keep: its minimum size, or more when its instance
    maintenance policy asks for a minimum healthy percentage of the desired capacity."""
    policy = group.get("InstanceMaintenancePolicy") or {}
    percentage = policy.get("MinHealthyPercentage")
    floor = int(group.get("MinSize", 0))
    if isinstance(percentage, int) and percentage >= 0:
        floor = max(floor, math.ceil(int(group.get("DesiredCapacity", 0)) * percentage / 100))
    return floor


def flapping(
    impairment: dict[str, Any], recovered: dict[str, datetime], settings: Flapping, now: datetime
) -> Trip | None:
    """Recovered too often: the same resource, or the same kind of impairment of the same group
    (a replaced instance is a new resource: its group is what flaps), within the window.
    `recovered`: {impairment id: resolved at} of the recoveries that verified of its resources and
    of its group for its type (core/history.py)."""
    since = now - timedelta(seconds=settings.window_seconds)
    repeats = sorted(i for i, at in recovered.items() if i != impairment.get("impairment_id") and at >= since)
    if len(repeats) < settings.max_recoveries:
        return None
    group = (impairment.get("scope") or {}).get("auto_scaling_group")
    subject = f"group {group}" if group else ", ".join(sorted(_resource_keys(impairment)))
    return Trip(
        guardrail=FLAPPING,
        reason=(
            f"{subject} was recovered {len(repeats)} times in the last {settings.window_seconds // 60} min "
            f"(limit {settings.max_recoveries}): fixing it again would hide a real problem"
        ),
        evidence={"previous_recoveries": repeats, "window_seconds": settings.window_seconds},
    )


def _resource_keys(impairment: dict[str, Any]) -> set[str]:
    return {f"{r['resource_type']}/{r['resource_id']}" for r in impairment.get("affected_resources") or []}
