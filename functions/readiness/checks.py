"""Whether a plan could act now, decided step by step on facts read once (readiness/world.py
reads them): each decision is a pure function of what AWS answered and of the step's params.

Design: docs/operations.md#readiness
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import RecoveryError
from core.runtime_config import ReadinessTarget


@dataclass(frozen=True)
class Check:
    """One thing a plan needs, judged: `evidence` says what was seen (and, failing, why it fails)."""

    name: str
    ok: bool
    evidence: str
    lacking: bool = False  # the workload declares nothing this step acts on

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "evidence": self.evidence}


class World(Protocol):
    """What the checks read, each at most once per run (the reader caches)."""

    def assume(self, account: str) -> None: ...

    def group(self, account: str | None, name: str) -> dict[str, Any] | None: ...

    def warm_pool(self, account: str | None, name: str) -> tuple[bool, list[str]]: ...

    def record_sets(self, account: str | None, zone: str, name: str, record_type: str) -> list[dict[str, Any]]: ...

    def health_check_exists(self, account: str | None, health_check_id: str) -> bool: ...


# --- the decisions (pure) ----------------------------------------------------------------------


def headroom(group: dict[str, Any] | None, name: str, increment: int, ceiling: int | None = None) -> Check:
    """scale_out: MaxSize (or the step's own ceiling, if lower) leaves room for its increment."""
    if group is None:
        return Check("scale_out headroom", False, f"Auto Scaling group {name} does not exist")
    maximum, desired = int(group["MaxSize"]), int(group["DesiredCapacity"])
    limit = min(maximum, ceiling) if ceiling else maximum
    room = limit - desired
    if room >= increment:
        return Check("scale_out headroom", True, f"{name}: room for {room} (MaxSize {maximum}, desired {desired})")
    if room <= 0:
        said = f"MaxSize {maximum} = desired {desired}" if limit == maximum else f"max_desired_capacity {limit}"
        return Check("scale_out headroom", False, f"{name}: no headroom: {said}")
    return Check("scale_out headroom", False, f"{name}: room for {room} < increment {increment} (MaxSize {maximum})")


def surge_room(group: dict[str, Any] | None, name: str) -> Check:
    """replace_instance: the group exists, and at its minimum it can launch the replacement first."""
    if group is None:
        return Check("replace_instance group", False, f"Auto Scaling group {name} does not exist")
    minimum, maximum, desired = int(group["MinSize"]), int(group["MaxSize"]), int(group["DesiredCapacity"])
    if desired <= minimum and maximum <= desired:
        return Check(
            "replace_instance group",
            False,
            f"{name}: no room to surge at its minimum: MinSize {minimum} = desired {desired} = MaxSize {maximum}",
        )
    return Check("replace_instance group", True, f"{name}: MinSize {minimum}, desired {desired}, MaxSize {maximum}")


def warm_pool_depth(configured: bool, warmed: list[str], name: str, needed: int) -> Check:
    """provision_warm_pool: the warm pool holds at least the instances the step brings in."""
    if not configured:
        return Check("warm pool depth", False, f"{name} has no warm pool")
    ok = len(warmed) >= needed
    return Check("warm pool depth", ok, f"{name}: {len(warmed)} warmed instance(s), the step needs {needed}")


def standby_capacity(group: dict[str, Any] | None, name: str, desired: int | None) -> Check:
    """provision_standby_group: the standby group exists and may grow to the desired capacity."""
    if group is None:
        return Check("standby group", False, f"standby group {name} does not exist")
    maximum = int(group["MaxSize"])
    if desired is not None and maximum < desired:
        return Check("standby group", False, f"{name}: MaxSize {maximum} < desired capacity {desired}")
    return Check("standby group", True, f"{name}: MaxSize {maximum}, desired capacity {desired or 'unset'}")


def _normal(name: str) -> str:
    return name.lower().rstrip(".")


def dns_records(records: list[dict[str, Any]], name: str, record_type: str, identifiers: tuple[str, ...]) -> Check:
    """failover_dns: the primary and secondary records are in the hosted zone."""
    present = {
        r.get("SetIdentifier")
        for r in records
        if _normal(r.get("Name", "")) == _normal(name) and r.get("Type") == record_type
    }
    missing = [i for i in identifiers if i not in present]
    if missing:
        return Check("dns records", False, f"{name} {record_type}: no record {', '.join(missing)}")
    return Check("dns records", True, f"{name} {record_type}: {', '.join(identifiers)} present")


def health_checks(found: dict[str, bool]) -> Check:
    """failover_dns: the health checks the records use exist."""
    missing = sorted(i for i, ok in found.items() if not ok)
    if missing:
        return Check("health checks", False, f"no health check {', '.join(missing)}")
    return Check("health checks", True, f"{len(found)} present")


# --- a step's checks, read through the world ---------------------------------------------------


def _guarded(name: str, decide: Callable[[], Check | list[Check]]) -> list[Check]:
    """A check whose read failed fails with the error as its evidence."""
    try:
        decided = decide()
    except RecoveryError as exc:
        return [Check(name, False, f"could not read: {exc}")]
    return decided if isinstance(decided, list) else [decided]


def _dns(world: World, target: ReadinessTarget, params: dict[str, Any]) -> list[Check]:
    dns = target.dns
    zone = params.get("hosted_zone_id") or (dns.hosted_zone_id if dns else None)
    name = params.get("record_name") or (dns.record_name if dns else None)
    record_type = params.get("record_type") or (dns.record_type if dns else "A")
    ids = (
        params.get("primary_set_identifier") or (dns.primary_set_identifier if dns else None),
        params.get("secondary_set_identifier") or (dns.secondary_set_identifier if dns else None),
    )
    if not zone or not name or not all(ids):
        return [Check("dns records", False, f"{target.workload} declares no dns records and the step names none", True)]
    account = target.account_id
    zone = zone.rsplit("/", 1)[-1]
    found = _guarded(
        "dns records",
        lambda: dns_records(world.record_sets(account, zone, name, record_type), name, record_type, ids),  # type: ignore[arg-type]
    )
    if dns and dns.health_check_ids:
        found += _guarded(
            "health checks",
            lambda: health_checks({i: world.health_check_exists(account, i) for i in dns.health_check_ids}),
        )
    return found


def step_checks(
    world: World, target: ReadinessTarget, action: str, params: dict[str, Any], named: bool = True
) -> list[Check] | None:
    """The checks of one step (its action resolved); None: nothing of this action is checked, or
    (`named` False: the plan matches every workload) the workload lacks what the step acts on, so
    the plan can never act on it that way."""
    found = _step_checks(world, target, action, params)
    if not named and found and any(c.lacking for c in found):
        return None
    return found


def _step_checks(world: World, target: ReadinessTarget, action: str, params: dict[str, Any]) -> list[Check] | None:
    account, group_name = target.account_id, params.get("group") or target.auto_scaling_group
    if action in ("scale_out", "replace_instance", "provision_warm_pool") and not group_name:
        return [Check(f"{action} group", False, f"{target.workload} declares no auto_scaling_group", True)]
    if action == "scale_out":
        ceiling = params.get("max_desired_capacity")
        increment = int(params.get("increment", 1))
        return _guarded(
            "scale_out headroom", lambda: headroom(world.group(account, group_name), group_name, increment, ceiling)
        )  # type: ignore[arg-type]
    if action == "replace_instance":
        return _guarded("replace_instance group", lambda: surge_room(world.group(account, group_name), group_name))  # type: ignore[arg-type]
    if action == "provision_warm_pool":
        count = int(params.get("count", 1))
        return _guarded(
            "warm pool depth", lambda: warm_pool_depth(*world.warm_pool(account, group_name), group_name, count)
        )  # type: ignore[arg-type]
    if action == "provision_standby_group":
        name = params.get("standby_group") or target.standby_group
        desired = params.get("desired_capacity") or target.standby_desired_capacity
        if not name:
            return [Check("standby group", False, "no standby_group in the step or the workload's standby", True)]
        return _guarded("standby group", lambda: standby_capacity(world.group(account, name), name, desired))
    if action == "failover_dns":
        return _dns(world, target, params)
    return None
