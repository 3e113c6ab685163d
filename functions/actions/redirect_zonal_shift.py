"""redirect_zonal_shift: start an ARC zonal shift of the load balancer (or, with `resource`
"eks_cluster", of the EKS cluster: ARC shifts its east-west traffic and its nodes' scheduling)
away from the impaired Availability Zone, always with an expiry (a routing mitigation is time-boxed). A zonal shift
already active for that load balancer and zone is reused. Rollback cancels the shift this step
started. (`redirect_traffic` with kind "zonal_shift" is this action: actions/registry.py, ALIASES.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import ec2, elb
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.arns import LoadBalancerArn
from core.errors import ActionRefused, PermanentError
from core.reads import tags
from core.reads.tags import require_managed

NAME = "redirect_zonal_shift"
COMMENT_PREFIX = "impairment-recovery"
MAX_EXPIRY_MINUTES = 72 * 60  # ARC: a zonal shift expires after at most three days


def _minutes(expires_in: str) -> int:
    return int(expires_in[:-1]) * (60 if expires_in.endswith("h") else 1)


def within_72_hours(expires_in: str) -> None:
    """A routing change's time-box is at most ARC's limit (a Params' own check: `expires_in: ...`)."""
    if _minutes(expires_in) > MAX_EXPIRY_MINUTES:
        raise ValueError(f"expires_in: a routing change expires after at most 72h, not {expires_in}")


# A routing change's time-box, e.g. 30m, 2h; at most 72h (a zonal shift's, ARC's limit: each
# Params that has one checks it, within_72_hours).
EXPIRES_IN = Annotated[
    str, Meta(pattern=r"^[1-9][0-9]*[mh]$", description="the change's time-box, e.g. 30m, 2h; at most 72h")
]


class Params(ActionParams, kw_only=True):
    kind: Literal["zonal_shift"] = "zonal_shift"
    load_balancer_arn: (
        Annotated[LoadBalancerArn, Meta(description="default: the scope's, or the target group's")] | None
    ) = None
    resource: Annotated[
        Literal["load_balancer", "eks_cluster"],
        Meta(description="what is shifted: the load balancer, or the workload's EKS cluster"),
    ] = "load_balancer"
    eks_cluster_arn: (
        Annotated[
            str,
            Meta(
                pattern=r"^arn:aws[a-z-]*:eks:[a-z0-9-]+:\d{12}:cluster/[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$",
                description="with resource eks_cluster; default: the scope's eks_cluster_arn",
            ),
        ]
        | None
    ) = None
    availability_zone: Annotated[str, Meta(description="zone name or id; default: the scope's")] | None = None
    expires_in: EXPIRES_IN = "1h"

    def _check(self) -> None:
        within_72_hours(self.expires_in)


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or ctx.before
    if not before:
        return ctx.result("rollback", "unchanged", [], {}, {}, "nothing was applied")
    return cancel(ctx, before)


def start(ctx: Context) -> ActionResult:
    arc = aws.client("arc-zonal-shift", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    active = None
    if before is None:
        balancer = _managed_resource(ctx)
        zone_given = ctx.params.availability_zone or ctx.impairment.scope.get("availability_zone")
        if not zone_given:
            raise PermanentError("zonal_shift needs an Availability Zone: scope availability_zone or the param")
        zone = ec2.resolve_zone(aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id), zone_given)
        # ResourceNotFoundException here: zonal shift is not enabled for this load balancer.
        managed = aws.call(arc, "get_managed_resource", resourceIdentifier=balancer)
        zones = {z: w for z, w in (managed.get("appliedWeights") or {}).items()}
        if zones and zone["id"] not in zones:
            raise ActionRefused(f"{balancer} is not in {zone['name']} ({zone['id']})", load_balancer=balancer)
        if zones and not any(w > 0 for z, w in zones.items() if z != zone["id"]):
            raise ActionRefused(
                f"shifting {balancer} away from {zone['id']} would leave it no zone to serve from",
                load_balancer=balancer,
            )
        active = _active_shifts(arc, balancer)
        before = {
            "kind": "zonal_shift",
            "resource": ctx.params.resource,
            "load_balancer_arn": balancer,
            "away_from": zone["id"],
            "availability_zone": zone["name"],
            "expires_in": ctx.params.expires_in,
            "comment": _comment(ctx),
            "active_zonal_shifts": [_summary(s) for s in active],
        }
        ctx.record_before(before)

    balancer, away_from = before["load_balancer_arn"], before["away_from"]
    if active is None:  # a retry: the shifts may have changed since the state before was recorded
        active = _active_shifts(arc, balancer)
    same_zone = sorted(
        (s for s in active if s["awayFrom"] == away_from), key=lambda s: s.get("comment") != before["comment"]
    )
    if same_zone:
        shift = same_zone[0]
        owned = shift.get("comment") == before["comment"]
        changed = False
        message = (
            f"zonal shift {shift['zonalShiftId']} away from {away_from} already active"
            if owned
            else f"traffic of {balancer} is already shifted away from {away_from} by zonal shift "
            f"{shift['zonalShiftId']} ({shift.get('comment', '')!r}); left to its owner"
        )
    else:
        elsewhere = [s for s in active if s["awayFrom"] != away_from]
        if elsewhere:
            raise ActionRefused(
                f"{balancer} already has an active zonal shift away from {elsewhere[0]['awayFrom']} "
                f"({elsewhere[0]['zonalShiftId']}); it cannot also shift away from {away_from}",
                load_balancer=balancer,
            )
        changed, owned = True, True
        shift = {"zonalShiftId": None, "status": None, "expiryTime": None}
        if not ctx.dry_run:
            shift = aws.call(
                arc,
                "start_zonal_shift",
                resourceIdentifier=balancer,
                awayFrom=away_from,
                expiresIn=before["expires_in"],
                comment=before["comment"],
            )
        message = (
            f"zonal shift of {balancer} away from {away_from} ({before['availability_zone']}) "
            f"for {before['expires_in']}"
        )
    return ctx.result(
        "apply",
        result_of(ctx, changed),
        [balancer],
        before,
        {
            "load_balancer_arn": balancer,
            "away_from": away_from,
            "zonal_shift_id": shift.get("zonalShiftId"),
            "status": shift.get("status"),
            "expiry_time": _iso(shift.get("expiryTime")),
            "owned": owned,
        },
        message,
    )


def cancel(ctx: Context, before: dict) -> ActionResult:
    """Cancel the zonal shift this step started (found by its id, or by this step's comment when
    apply stopped before recording it); one that has expired or was cancelled is left as is."""
    arc = aws.client("arc-zonal-shift", max_attempts=1, account=ctx.impairment.account_id)
    after = (ctx.applied or {}).get("after") or {}
    recorded = after.get("zonal_shift_id") if after.get("owned") else None
    balancer = before["load_balancer_arn"]
    ours = [
        s
        for s in _active_shifts(arc, balancer)
        if s["zonalShiftId"] == recorded
        or (s.get("comment") == before["comment"] and s["awayFrom"] == before["away_from"])
    ]
    cancelled = []
    for shift in ours:
        try:
            aws.call(arc, "cancel_zonal_shift", zonalShiftId=shift["zonalShiftId"])
            cancelled.append(shift["zonalShiftId"])
        except PermanentError as exc:
            # It expired or was cancelled between the listing and this call: nothing left to undo.
            if exc.details.get("code") not in ("ConflictException", "ResourceNotFoundException"):
                raise
    return ctx.result(
        "rollback",
        "changed" if cancelled else "unchanged",
        [balancer],
        {"load_balancer_arn": balancer, "active_zonal_shifts": [s["zonalShiftId"] for s in ours]},
        {"load_balancer_arn": balancer, "cancelled": cancelled},
        f"cancelled zonal shift {', '.join(cancelled)}"
        if cancelled
        else "no zonal shift of this step is active (expired, cancelled, or never started)",
    )


def _managed_resource(ctx: Context) -> str:
    """The ARN of what is shifted, checked for the managed tag: the load balancer, or the EKS
    cluster (whose zonal shift must be enabled: zonalShiftConfig)."""
    if ctx.params.resource == "load_balancer":
        balancer = _load_balancer(ctx)
        elbv2 = aws.client("elbv2", max_attempts=1, account=ctx.impairment.account_id)
        require_managed(tags.of_load_balancing(elbv2, balancer), ctx.managed_tag, "load balancer", balancer)
        return balancer
    arn = ctx.params.eks_cluster_arn or ctx.impairment.scope.get("eks_cluster_arn")
    if not arn:
        raise PermanentError("zonal_shift of an EKS cluster needs its ARN: scope eks_cluster_arn or the param")
    eks = aws.client("eks", max_attempts=1, account=ctx.impairment.account_id)
    cluster = aws.call(eks, "describe_cluster", name=arn.rsplit("/", 1)[1])["cluster"]
    require_managed(cluster.get("tags") or {}, ctx.managed_tag, "EKS cluster", arn)
    if not (cluster.get("zonalShiftConfig") or {}).get("enabled"):
        raise ActionRefused(f"zonal shift is not enabled on EKS cluster {arn} (zonalShiftConfig)", eks_cluster=arn)
    return arn


def _load_balancer(ctx: Context) -> str:
    balancer = ctx.params.load_balancer_arn or ctx.impairment.scope.get("load_balancer_arn")
    if balancer:
        return balancer
    target_group = ctx.impairment.scope.get("target_group_arn")
    if target_group:
        return elb.load_balancer_of(
            aws.client("elbv2", max_attempts=1, account=ctx.impairment.account_id), target_group
        )
    raise PermanentError("zonal_shift needs a load balancer: scope load_balancer_arn or target_group_arn, or the param")


def _active_shifts(arc: Any, balancer: str) -> list[dict]:
    shifts = aws.items(arc, "list_zonal_shifts", "items", resourceIdentifier=balancer, status="ACTIVE")
    return [s for s in shifts if s.get("resourceIdentifier") == balancer and s.get("status") == "ACTIVE"]


def _comment(ctx: Context) -> str:
    """Names the impairment and step, so a retry and the rollback recognise this step's shift."""
    return f"{COMMENT_PREFIX} {ctx.impairment.impairment_id} step {ctx.step_index}"[:128]


def _summary(shift: dict) -> dict:
    return {
        "zonal_shift_id": shift["zonalShiftId"],
        "away_from": shift["awayFrom"],
        "comment": shift.get("comment", ""),
        "expiry_time": _iso(shift.get("expiryTime")),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


ACTION = Action(NAME, Params, start, rollback)
apply_handler, rollback_handler = handlers(ACTION)
