"""CheckGuardrails: may the selected plan act now, and on how much? (core/guardrails.py)

In order, cheapest first: maintenance windows and blocked dates, flapping, then for plans that
take instances out of service (replacement, deregistration) fail open and the blast radius, and
last the budgets taken atomically: recoveries per workload and per plan within the hour, the
concurrent recoveries, and the group's share acted on within the window.

A guardrail that stops the whole recovery raises GuardrailTripped: the state machine escalates
with the evidence, which is recorded on the impairment (guardrails_tripped, guardrail_trips).
When the blast radius allows only part of the instances, the recovery goes on with those; the
rest are deferred to a human, paged now. The same resources tripping again within the window
(a sweep finds them every minute) are recorded without paging again.

Input and output: the whole execution state (the impairment narrowed to what may be acted on,
and a "guardrails" summary added).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from actions import autoscaling as asg
from core import aws, clock, guardrails, paging, runtime_config, state
from core import settings as settings_module
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.errors import GuardrailTripped, PermanentError, classify_client_error
from core.guardrails import Trip
from core.observability import logger, metrics
from core.store import CONCURRENCY_BUDGET, Claim, RecoveryStore

# "unused": a stopped instance (Target.InvalidState)
_UNHEALTHY_TARGET_STATES = frozenset({"unhealthy", "unavailable", "unused"})


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    impairment = state.parse(event, "CheckGuardrails", plan=True).impairment
    settings = settings_module.load("table_name", "escalation_topic_arn")
    config = runtime_config.load()
    plan = event["plan"]
    store = store or RecoveryStore(settings.table_name)
    limits = config.guardrails
    now = clock.utc_now()
    record = impairment.model_dump(mode="json")

    blocked = config.maintenance_of(impairment.workload).blocks(now)
    if blocked:
        _stop(
            store,
            limits,
            impairment,
            [Trip(guardrail=guardrails.MAINTENANCE, reason=f"no automatic action: {blocked}")],
        )

    since = now - timedelta(seconds=limits.flapping.window_seconds)
    trip = guardrails.flapping(record, store.list_impairments(impairment.workload, since), limits.flapping, now)
    if trip:
        _stop(store, limits, impairment, [trip])

    instances = asg.impaired_instances(impairment)
    allowed, deferred, blast_trip, group_name = instances, [], None, None
    elsewhere: list[str] = []
    if instances and guardrails.acts_on_instances(plan.get("steps", [])):
        group_name, group, unhealthy = _fleet(impairment)
        if group is not None:
            fleet = {i["InstanceId"] for i in group.get("Instances", []) if i.get("LifecycleState") != "Terminated"}
            trip = guardrails.fail_open(set(instances) | unhealthy, fleet, limits.fail_open)
            if trip:
                _stop(store, limits, impairment, [trip])
            # already failing, and other impairments' to fix: verification leaves them out
            elsewhere = sorted(unhealthy - set(instances))
            acted = store.budget_holders(_blast_key(group_name))
            already = {i for h, v in acted.items() if h != impairment.impairment_id for i in v.get("instances", [])}
            healthy = set(asg.healthy_in_service(group)) - unhealthy
            allowed, deferred, blast_trip = guardrails.blast_radius(
                instances, already, group, healthy, limits.blast_radius
            )
            if not allowed:
                _stop(store, limits, impairment, [blast_trip] if blast_trip else [])

    claims = _claims(impairment, plan, limits, now, settings.lock_ttl_seconds, group_name, allowed)
    exceeded = store.take_budgets(impairment.impairment_id, claims)
    if exceeded:
        _stop(store, limits, impairment, [_budget_trip(e) for e in exceeded])

    summary: dict[str, Any] = {
        "checked_at": now.isoformat(),
        "tripped": [],
        "deferred": deferred,
        "impaired_elsewhere": elsewhere,
    }
    if blast_trip:
        summary["tripped"] = [blast_trip.guardrail]
        keys = [f"ec2:instance/{i}" for i in deferred]
        first = store.claim_escalation(impairment.impairment_id, keys, limits.blast_radius.window_seconds)
        store.update_impairment(
            impairment.impairment_id,
            guardrails_tripped=[blast_trip.guardrail],
            guardrail_trips=[blast_trip.model_dump()],
            deferred_resources=keys,
        )
        metrics.add_metric(name="GuardrailTripped", unit="Count", value=1)
        logger.warning("blast radius: acting on part", allowed=allowed, deferred=deferred)
        if first:
            paging.page(
                settings.escalation_topic_arn,
                impairment.workload,
                f"blast radius: {len(deferred)} instance(s) left for a human",
                {
                    "summary": f"Automatic recovery of {impairment.workload} acts on {len(allowed)} instance(s) and "
                    f"leaves {len(deferred)} to a human: {blast_trip.reason}",
                    "impairment_id": impairment.impairment_id,
                    "guardrail": blast_trip.guardrail,
                    "evidence": blast_trip.evidence,
                    "deferred": deferred,
                    "next_steps": f"recoveryctl show {impairment.impairment_id}",
                },
            )
        narrowed = [
            r
            for r in record["affected_resources"]
            if r["resource_type"] != "ec2:instance" or r["resource_id"] in allowed
        ]
        event = {**event, "impairment": {**event["impairment"], "affected_resources": narrowed}}
    logger.info("guardrails passed", plan=plan.get("name"), acting_on=allowed, deferred=deferred)
    return {**event, "guardrails": summary}


def _fleet(impairment: ImpairmentDetected) -> tuple[str | None, dict[str, Any] | None, set[str]]:
    """The impairment's group and which of its instances look impaired right now (the group's
    own health, and its target group's)."""
    client = asg.asg_client(impairment.account_id)
    try:
        name = asg.group_name(client, impairment)
    except PermanentError:
        return None, None, set()
    group = asg.describe_group(client, name)
    unhealthy = {i["InstanceId"] for i in group.get("Instances", []) if i.get("HealthStatus") != "Healthy"}
    target_group_arn = impairment.scope.get("target_group_arn")
    if target_group_arn:
        try:
            elbv2 = aws.client("elbv2", max_attempts=1, account=impairment.account_id)
            health = elbv2.describe_target_health(TargetGroupArn=target_group_arn)
        except Exception as exc:
            raise classify_client_error(exc, "elasticloadbalancing:DescribeTargetHealth") from exc
        unhealthy |= {
            h["Target"]["Id"]
            for h in health.get("TargetHealthDescriptions", [])
            if h.get("TargetHealth", {}).get("State") in _UNHEALTHY_TARGET_STATES
        }
    return name, group, unhealthy


def _blast_key(group: str | None) -> str:
    return f"BUDGET#blast_radius#{group}"


def _claims(
    impairment: ImpairmentDetected,
    plan: dict[str, Any],
    limits: guardrails.Guardrails,
    now: Any,
    lock_ttl_seconds: int,
    group: str | None,
    allowed: list[str],
) -> list[Claim]:
    epoch = int(now.timestamp())
    hour = epoch + 3600
    claims = [
        Claim(
            guardrails.RATE_LIMIT,
            f"BUDGET#rate#workload#{impairment.workload}",
            limits.rate_limits.per_workload_per_hour,
            1,
            hour,
        ),
        Claim(
            guardrails.RATE_LIMIT,
            f"BUDGET#rate#plan#{plan.get('name')}",
            plan.get("max_recoveries_per_hour") or limits.rate_limits.per_plan_per_hour,
            1,
            hour,
        ),
        Claim(
            guardrails.CONCURRENCY, CONCURRENCY_BUDGET, limits.rate_limits.max_concurrent, 1, epoch + lock_ttl_seconds
        ),
    ]
    if group and allowed:
        claims.append(
            Claim(
                guardrails.BLAST_RADIUS,
                _blast_key(group),
                10**6,  # the share was decided above, on the holders' instances; this records them
                len(allowed),
                epoch + limits.blast_radius.window_seconds,
                {"instances": sorted(allowed)},
            )
        )
    return claims


def _budget_trip(exceeded: dict[str, Any]) -> Trip:
    name = exceeded["name"]
    what = {
        guardrails.RATE_LIMIT: "recoveries within the hour",
        guardrails.CONCURRENCY: "recoveries running at once",
    }.get(name, "units")
    return Trip(
        guardrail=name,
        reason=f"{exceeded['budget']}: limit of {exceeded['limit']} {what} reached",
        evidence=exceeded,
    )


def _stop(
    store: RecoveryStore, limits: guardrails.Guardrails, impairment: ImpairmentDetected, trips: list[Trip]
) -> None:
    """Record what stopped the recovery and raise GuardrailTripped (the workflow escalates)."""
    trips = trips or [Trip(guardrail=guardrails.BLAST_RADIUS, reason="nothing may be acted on")]
    names = sorted({t.guardrail for t in trips})
    keys = [r.key for r in impairment.affected_resources]
    window = max(limits.blast_radius.window_seconds, limits.flapping.window_seconds)
    first = store.claim_escalation(impairment.impairment_id, keys, window)
    reason = "; ".join(f"{t.guardrail}: {t.reason}" for t in trips)
    store.update_impairment(
        impairment.impairment_id,
        guardrails_tripped=names,
        guardrail_trips=[t.model_dump() for t in trips],
        page=first,
        reason=reason,
    )
    for _ in names:
        metrics.add_metric(name="GuardrailTripped", unit="Count", value=1)
    logger.warning("guardrail tripped", guardrails=names, reason=reason, paged=first)
    raise GuardrailTripped(reason, guardrails=names)
