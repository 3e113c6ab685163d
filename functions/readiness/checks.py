"""Whether a plan could act now, decided step by step on facts read once (readiness/world.py
reads them): each decision is a pure function of what AWS answered and of the step's params.

Design: docs/operations.md#readiness
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from msgspec import Struct

from core.errors import RecoveryError, TransientError
from core.runtime_config import ReadinessTarget


class Check(Struct, frozen=True):
    """One thing a plan needs, judged: `evidence` says what was seen (and, failing, why it fails)."""

    name: str
    ok: bool
    evidence: str
    lacking: bool = False  # the workload declares nothing this step acts on
    unknown: bool = False  # AWS did not answer (throttled, unavailable): not ready, since not known ready
    checked: bool = True  # False: this check cannot run here (the local emulator); said, never "ready"

    def as_dict(self) -> dict[str, Any]:
        found = {"name": self.name, "ok": self.ok, "evidence": self.evidence}
        return {**found, "unknown": True} if self.unknown else found


# The managed tag's default (infra/config.py managed_tag_key and managed_tag_value).
DEFAULT_MANAGED_TAG = ("recovery:managed", "true")


class NotChecked(Exception):
    """A check that cannot be made where the readiness check runs (the local emulator simulates
    no IAM policy), or with what it was deployed with: reported as not checked, never as ready."""


class World(Protocol):
    """What the checks read, each at most once per run (the reader caches)."""

    def assume(self, account: str) -> None: ...

    def group(self, account: str | None, name: str) -> dict[str, Any] | None: ...

    def warm_pool(self, account: str | None, name: str) -> tuple[bool, list[str]]: ...

    def record_sets(self, account: str | None, zone: str, name: str, record_type: str) -> list[dict[str, Any]]: ...

    def health_check_exists(self, account: str | None, health_check_id: str) -> bool: ...

    def region(self) -> str: ...

    def simulation_role(self, account: str | None, action: str) -> str: ...

    def simulate(
        self, account: str | None, role: str, actions: list[str], resources: list[str], context: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...

    def routing_control_state(self, account: str | None, endpoint: dict[str, str], arn: str) -> str: ...


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
    except NotChecked as exc:
        return [Check(name, False, str(exc), checked=False)]
    except TransientError as exc:
        return [Check(name, False, f"unknown: could not read: {exc}", unknown=True)]
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
    world: World,
    target: ReadinessTarget,
    action: str,
    params: dict[str, Any],
    named: bool = True,
    managed_tag: tuple[str, str] = DEFAULT_MANAGED_TAG,
) -> list[Check] | None:
    """The checks of one step (its action resolved): of what it acts on, then of its role's
    permissions. None: (`named` False: the plan matches every workload) the workload lacks what
    the step acts on, so the plan can never act on it that way."""
    found = _step_checks(world, target, action, params)
    if not named and found and any(c.lacking for c in found):
        return None
    if action == "failover_routing_control":
        found = [*(found or []), *cluster_checks(world, target.account_id, params)]
    return [*(found or []), permission_check(world, target, action, params, managed_tag)]


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


# --- what a step's role may call, and whether its cluster answers ------------------------------


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _known_resources(
    world: World, target: ReadinessTarget, action: str, params: dict[str, Any], partition: str, services: set[str]
) -> dict[str, list[str]]:
    """The resources the step will touch, by ARN service: every ARN its params name, its group's
    ARN (read, if the group can be) and its hosted zone's."""
    known: dict[str, list[str]] = {}
    for arn in (s for s in _strings(params) if s.startswith("arn:") and s.count(":") >= 5):
        if "/safetyrule/" not in arn:  # overridden by an update, not called on
            known.setdefault(arn.split(":")[2], []).append(arn)
    standby = action == "provision_standby_group"
    group = (params.get("standby_group") or target.standby_group) if standby else params.get("group")
    group = group or (None if standby else target.auto_scaling_group)
    if group and "autoscaling" in services:
        try:
            found = world.group(target.account_id, group)
        except RecoveryError:
            found = None  # its own check says why; judged on "*" meanwhile
        if found and found.get("AutoScalingGroupARN"):
            known.setdefault("autoscaling", []).append(found["AutoScalingGroupARN"])
    zone = params.get("hosted_zone_id")
    if not zone and target.dns and action == "failover_dns":
        zone = target.dns.hosted_zone_id
    if zone and "route53" in services:
        known.setdefault("route53", []).append(f"arn:{partition}:route53:::hostedzone/{zone.rsplit('/', 1)[-1]}")
    return known


def permission_check(
    world: World,
    target: ReadinessTarget,
    action: str,
    params: dict[str, Any],
    managed_tag: tuple[str, str] = DEFAULT_MANAGED_TAG,
) -> Check:
    """The role the step runs with (the action's own here, the member role in a member account) may
    make every call the action declares, on what the step will touch: one simulation per role and
    step (the world keeps it for the run)."""
    from actions.registry import ACTIONS
    from readiness import permissions

    spec = ACTIONS[action]

    def decide() -> Check:
        role = world.simulation_role(target.account_id, action)
        partition, role_account = role.split(":")[1], role.split(":")[4]
        services = {permissions.arn_service(a) for a in (*spec.iam_actions, *spec.iam_actions_without_tag_condition)}
        known = _known_resources(world, target, action, params, partition, services)
        wanted = permissions.required(spec, params, known, (partition, world.region(), role_account))
        if not wanted:
            return Check(permissions.NAME, True, f"{action}: declares no IAM action")
        resources = sorted({r for listed in wanted.values() for r in listed})
        context = permissions.context(spec, params, managed_tag)
        results = world.simulate(target.account_id, role, sorted(wanted), resources, context)
        ok, evidence = permissions.judged(role, wanted, results)
        return Check(permissions.NAME, ok, f"{action}: {evidence}")

    (check,) = _guarded(permissions.NAME, decide)
    return check


def endpoint_checks(outcomes: list[tuple[str, str, str]]) -> list[Check]:
    """failover_routing_control: (endpoint, "answered" | "refused" | "no answer", detail) of each
    cluster endpoint. Reachable when one answered (a refusal is an answer); a refusal is a failure
    of its own (the role may not read the routing controls, or one does not exist)."""
    reached = [o for o in outcomes if o[1] != "no answer"]
    listing = "; ".join(
        f"{endpoint}: {kind}" + (f" ({detail})" if detail else "") for endpoint, kind, detail in outcomes
    )
    checks = [Check("cluster endpoints", bool(reached), f"{len(reached)} of {len(outcomes)} answered: {listing}")]
    refused = [f"{endpoint}: {detail}" for endpoint, kind, detail in outcomes if kind == "refused"]
    if refused:
        checks.append(Check("routing control access", False, "; ".join(refused)))
    return checks


def cluster_checks(world: World, account: str | None, params: dict[str, Any]) -> list[Check]:
    """Each endpoint of the step's cluster asked for its two routing controls' states, once."""
    from actions.failover_routing_control import NoAnswer, Params

    parsed = Params.model_validate(params)
    controls = {"primary": parsed.primary_routing_control_arn, "standby": parsed.standby_routing_control_arn}
    outcomes = []
    for endpoint in parsed.cluster_endpoints:
        label = f"{endpoint.region} {endpoint.endpoint}"
        try:
            states = {role: world.routing_control_state(account, endpoint, arn) for role, arn in controls.items()}
        except NoAnswer as exc:
            outcomes.append((label, "no answer", str(exc.__cause__ or exc)))
        except RecoveryError as exc:
            outcomes.append((label, "refused", str(exc)))
        else:
            outcomes.append((label, "answered", ", ".join(f"{role} {state}" for role, state in states.items())))
    return endpoint_checks(outcomes)
