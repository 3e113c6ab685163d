"""failover_dns: fail over to the standby by Route 53 records of one name and type, a primary and a
standby, in a hosted zone that carries the managed tag; rollback fails back. (`failover` with kind
"dns" is this action: actions/registry.py, ALIASES.)

Failover records swap roles, weighted records move the weight, in one change batch that deletes
the record sets exactly as read: a change someone made since fails the batch instead of being
overwritten.

Design: docs/actions.md#failover_dns
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from msgspec import Meta

from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused, CapacityNotReady, PermanentError, TransientError
from core.reads import tags
from core.reads.tags import require_managed

NAME = "failover_dns"
# More than this share of Route 53's checkers reporting success means healthy (Route 53's rule).
_HEALTHY_SHARE = 0.18


class Params(ActionParams, kw_only=True):
    kind: Literal["dns"] = "dns"
    # each defaults to the impairment's scope
    hosted_zone_id: Annotated[str, Meta(pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")] | None = None
    record_name: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    record_type: Literal["A", "AAAA", "CNAME"] | None = None
    primary_set_identifier: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    secondary_set_identifier: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    standby_weight: Annotated[int, Meta(ge=1, le=255, description="weighted records: the standby's weight")] = 255
    require_healthy_standby: Annotated[
        bool, Meta(description="wait while the standby's health check is unhealthy; refuse when it is unreadable")
    ] = True


def apply(ctx: Context) -> ActionResult:
    client = aws.client("route53", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        zone, name, record_type, primary_id, secondary_id = _dns_target(ctx)
        require_managed(tags.of_hosted_zone(client, zone), ctx.managed_tag, "hosted zone", zone, hosted_zone=zone)
        primary, secondary, routing = _pair(_record_sets(client, zone, name, record_type), primary_id, secondary_id)
        before = {
            "kind": "dns",
            "hosted_zone_id": zone,
            "record_name": name,
            "record_type": record_type,
            "routing": routing,
            "primary": primary,
            "secondary": secondary,
        }
        ctx.record_before(before)
        current: list[dict[str, Any] | None] = [primary, secondary]
    else:
        current = _current_pair(client, before)
    target = _dns_failed_over(before, ctx.params.standby_weight)
    label = _dns_label(before)
    if current == target:
        changed = target != [before["primary"], before["secondary"]]
        return ctx.result(
            "apply",
            "changed" if changed else "unchanged",
            [label],
            before=before,
            after=_dns_state(current),
            message=f"{label}: traffic already goes to the standby {before['secondary']['SetIdentifier']}",
        )
    if current != [before["primary"], before["secondary"]]:
        raise ActionRefused(f"{label}: the record sets changed since they were recorded; not overwriting them")
    standby = before["secondary"]
    note = _require_healthy_standby(client, standby, ctx.params.require_healthy_standby)
    change_id = None
    if not ctx.dry_run:
        change_id = _swap(client, before, current, target, f"failover {ctx.impairment.impairment_id}")
    what = "swapped PRIMARY and SECONDARY" if before["routing"] == "failover" else "moved the weight"
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [label],
        before=before,
        after={**_dns_state(current if ctx.dry_run else target), "change_id": change_id},
        message=f"{label}: {what} to the standby {standby['SetIdentifier']}{note}",
    )


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or {}
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    client = aws.client("route53", max_attempts=1, account=ctx.impairment.account_id)
    label = _dns_label(before)
    original = [before["primary"], before["secondary"]]
    target = _dns_failed_over(before, ctx.params.standby_weight)
    current = _current_pair(client, before)
    if current == original:
        # A retry of this rollback finds its own work done.
        return ctx.result(
            "rollback",
            "changed" if ctx.before else "unchanged",
            [label],
            before=_dns_state(current),
            after=_dns_state(current),
            message=f"{label}: the record sets are as they were before the failover",
        )
    if current != target:
        return ctx.result(
            "rollback",
            "unchanged",
            [label],
            before=_dns_state(current),
            after=_dns_state(current),
            message=f"{label}: the record sets were changed by someone else since the failover; left as they are",
        )
    ctx.record_before(_dns_state(current))
    change_id = _swap(client, before, current, original, f"fail back {ctx.impairment.impairment_id}")
    return ctx.result(
        "rollback",
        "changed",
        [label],
        before=_dns_state(current),
        after={**_dns_state(original), "change_id": change_id},
        message=f"{label}: restored the record sets recorded before the failover (primary "
        f"{before['primary']['SetIdentifier']})",
    )


def _dns_target(ctx: Context) -> tuple[str, str, str, str | None, str | None]:
    return _dns_target_of(ctx.params, ctx.impairment.scope)


def _dns_target_of(params: Any, scope: dict[str, str]) -> tuple[str, str, str, str | None, str | None]:
    zone = params.hosted_zone_id or scope.get("dns_hosted_zone_id")
    name = params.record_name or scope.get("dns_record_name")
    if not zone or not name:
        raise PermanentError(
            "failover_dns needs a hosted zone and a record name: give hosted_zone_id and record_name in the "
            "step's params, or dns_hosted_zone_id and dns_record_name in the impairment's scope"
        )
    return (
        zone.removeprefix("/hostedzone/"),
        name,
        params.record_type or scope.get("dns_record_type") or "A",
        params.primary_set_identifier or scope.get("dns_primary_set"),
        params.secondary_set_identifier or scope.get("dns_secondary_set"),
    )


def _normal_name(name: str) -> str:
    # Route 53 returns names with a trailing dot, lower case, and some characters as \\ooo escapes.
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), name).rstrip(".").lower()


def _record_sets(client: Any, zone: str, name: str, record_type: str) -> list[dict[str, Any]]:
    """Every record set of this name and type, across pages (the listing starts at the name)."""
    wanted = _normal_name(name)
    kwargs: dict[str, Any] = {"HostedZoneId": zone, "StartRecordName": name, "StartRecordType": record_type}
    found: list[dict[str, Any]] = []
    while True:
        page = aws.call(client, "list_resource_record_sets", **kwargs)
        found.extend(
            r
            for r in page.get("ResourceRecordSets", [])
            if _normal_name(r["Name"]) == wanted and r["Type"] == record_type
        )
        if not page.get("IsTruncated"):
            return found
        if _normal_name(page["NextRecordName"]) != wanted or page.get("NextRecordType") != record_type:
            return found  # the listing has moved past our records
        start = (page["NextRecordName"], page["NextRecordType"], page.get("NextRecordIdentifier"))
        if start == (kwargs["StartRecordName"], kwargs["StartRecordType"], kwargs.get("StartRecordIdentifier")):
            raise PermanentError(f"listing the record sets of {name} does not advance past {start}")
        kwargs["StartRecordName"], kwargs["StartRecordType"] = start[:2]
        kwargs.pop("StartRecordIdentifier", None)
        if start[2]:
            kwargs["StartRecordIdentifier"] = start[2]


def _pair(
    records: list[dict[str, Any]], primary_id: str | None, secondary_id: str | None
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The primary and standby record sets, and their routing ("failover" or "weighted")."""
    if not records:
        raise PermanentError("no record sets of that name and type in the hosted zone")
    by_id = {r["SetIdentifier"]: r for r in records if "SetIdentifier" in r}
    if primary_id and secondary_id:
        missing = [i for i in (primary_id, secondary_id) if i not in by_id]
        if missing:
            raise PermanentError(f"no record set with set identifier {', '.join(missing)}; found {sorted(by_id)}")
        primary, secondary = by_id[primary_id], by_id[secondary_id]
    else:
        roles = {r.get("Failover"): r for r in records if r.get("Failover")}
        if set(roles) != {"PRIMARY", "SECONDARY"}:
            raise PermanentError(
                "name the primary and standby set identifiers (primary_set_identifier / secondary_set_identifier, "
                "or dns_primary_set / dns_secondary_set in the scope): the records are not one failover pair"
            )
        primary, secondary = roles["PRIMARY"], roles["SECONDARY"]
    if "Failover" in primary and "Failover" in secondary:
        return primary, secondary, "failover"
    if "Weight" in primary and "Weight" in secondary:
        return primary, secondary, "weighted"
    raise PermanentError("the primary and standby are neither failover nor weighted records of one routing policy")


def _dns_failed_over(before: dict[str, Any], standby_weight: int) -> list[dict[str, Any]]:
    """The two record sets as the failover leaves them, computed from the state recorded before."""
    primary, secondary = before["primary"], before["secondary"]
    if before["routing"] == "failover":
        return [{**primary, "Failover": "SECONDARY"}, {**secondary, "Failover": "PRIMARY"}]
    return [{**primary, "Weight": 0}, {**secondary, "Weight": standby_weight}]


def _current_pair(client: Any, before: dict[str, Any]) -> list[dict[str, Any] | None]:
    records = _record_sets(client, before["hosted_zone_id"], before["record_name"], before["record_type"])
    by_id = {r.get("SetIdentifier"): r for r in records}
    return [by_id.get(before["primary"]["SetIdentifier"]), by_id.get(before["secondary"]["SetIdentifier"])]


def _require_healthy_standby(client: Any, standby: dict[str, Any], required: bool) -> str:
    """Do not send traffic to a standby its health check reports unhealthy: wait for it
    (CapacityNotReady, asked again every 30 s for up to 10 minutes), since a standby that was
    just brought up passes its checks a few minutes after its instances are in service; then the
    recovery rolls back."""
    health_check = standby.get("HealthCheckId")
    if not health_check:
        return " (the standby has no health check)"
    if not required:
        return ""
    try:
        observations = aws.call(client, "get_health_check_status", HealthCheckId=health_check)[
            "HealthCheckObservations"
        ]
    except TransientError:
        raise
    except PermanentError as exc:
        # Calculated health checks have no status to read (InvalidInput).
        raise ActionRefused(
            f"cannot read the standby's health check {health_check} ({exc}); set require_healthy_standby to false "
            "to fail over without it"
        ) from exc
    healthy = sum(1 for o in observations if o.get("StatusReport", {}).get("Status", "").startswith("Success"))
    if not observations or healthy / len(observations) <= _HEALTHY_SHARE:
        raise CapacityNotReady(
            f"the standby {standby['SetIdentifier']} is unhealthy: {healthy} of {len(observations)} Route 53 "
            f"checkers report health check {health_check} healthy; waiting for it before moving traffic there",
            health_check=health_check,
        )
    return ""


def _swap(
    client: Any, before: dict[str, Any], current: list[Any], wanted: list[dict[str, Any]], comment: str
) -> str | None:
    """One atomic batch: DELETE the record sets exactly as they are, CREATE them as wanted."""
    changes = [{"Action": "DELETE", "ResourceRecordSet": c} for c, w in zip(current, wanted, strict=True) if c != w]
    changes += [{"Action": "CREATE", "ResourceRecordSet": w} for c, w in zip(current, wanted, strict=True) if c != w]
    if not changes:
        return None
    response = aws.call(
        client,
        "change_resource_record_sets",
        HostedZoneId=before["hosted_zone_id"],
        ChangeBatch={"Comment": comment[:256], "Changes": changes},
    )
    return response.get("ChangeInfo", {}).get("Id")


def _dns_state(pair: list[Any]) -> dict[str, Any]:
    return {"primary": pair[0], "secondary": pair[1]}


def _dns_label(before: dict[str, Any]) -> str:
    return f"{before['hosted_zone_id']}/{_normal_name(before['record_name'])}/{before['record_type']}"


def standby_in_use(params: Any, impairment: ImpairmentDetected) -> dict[str, Any] | None:
    """After a dns step: is the standby's record set the one in use (failover routing: it is
    PRIMARY; weighted: it holds the weight and the primary none)? Read the way the step reads
    them (its params, else the impairment's scope). None when the step does not name the
    records, or not the standby's set identifier (Verify has nothing to check then)."""
    try:
        zone, name, record_type, primary_id, secondary_id = _dns_target_of(params, impairment.scope)
    except PermanentError:
        return None
    if not (primary_id and secondary_id):
        return None  # by roles alone, the standby cannot be told from the primary after a swap
    client = aws.client("route53", max_attempts=1, account=impairment.account_id)
    primary, standby, routing = _pair(_record_sets(client, zone, name, record_type), primary_id, secondary_id)
    if routing == "failover":
        in_use = standby["Failover"] == "PRIMARY"
    else:
        in_use = standby.get("Weight", 0) > 0 and primary.get("Weight", 0) == 0
    return {
        "record": f"{zone}/{_normal_name(name)}/{record_type}",
        "standby": {k: standby[k] for k in ("SetIdentifier", "Failover", "Weight") if k in standby},
        "in_use": in_use,
    }


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after this step (its Verification in actions/registry.py): the standby's
    record set is the one in use, read as the step reads the records."""
    state = standby_in_use(Params.model_validate(params), impairment)
    if state is None:
        return []
    return [
        {"check": "dns_failover", "passed": state["in_use"], "record": state["record"], "standby": state["standby"]}
    ]


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
