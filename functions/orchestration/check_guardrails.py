"""CheckGuardrails: may the selected plan act now, and on how much? (core/guardrails.py; the
order of the checks and what each decides: docs/safety.md.)

The blast radius is decided inside the atomic take of the budgets (store.take_budgets), so two
recoveries of one group deciding at once cannot both pass on the same read. The same task runs
again after an approval: the budgets it holds are kept, the rest decided again. A guardrail that
stops the recovery raises GuardrailTripped: the workflow escalates with the evidence, noted on
the impairment's guardrails item (core/records.py CHECKED_FIELDS) and written onto its record by
Escalate with the outcome. When the blast radius allows part of the instances, the recovery goes
on with those and the rest are deferred (locks and windows released, a human paged once).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from msgspec import Struct

from actions import autoscaling as asg
from actions import fleet as fleets
from actions import plans
from core import aws, clock, guardrails, history, paging, runtime_config, state
from core import settings as settings_module
from core.budgets import MAX_SHARDS, SERIAL, Read, Taken
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.errors import GuardrailTripped
from core.guardrails import Trip
from core.observability import logger, metrics
from core.reads import groups as group_reads
from core.reads import target_health
from core.store import CONCURRENCY_BUDGET, Claim, RecoveryStore
from orchestration import blocked


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    execution = state.parse(event, "CheckGuardrails", plan=True)
    impairment = execution.impairment
    settings = settings_module.load("table_name", "escalation_topic_arn")
    config = runtime_config.load()
    plan = event["plan"]
    store = store or RecoveryStore(settings.table_name)
    limits = config.guardrails
    now = clock.utc_now()
    previous = execution.guardrails or {}
    fixed = _claims(impairment, plan, limits, now, settings.lock_ttl_seconds)
    read = store.read_items(_first_read(impairment, fixed))  # history and budgets: the take starts from it
    stale = _check_schedule(store, config, impairment, now, read.items)
    _stop_if_spent(store, limits, impairment, fixed, read)
    membership = _Membership(impairment, instances := asg.impaired_instances(impairment))  # looked up once
    verdict = blocked.check(store, impairment, plan, limits.blocking, previous, now, membership.resolver(plan))
    if verdict.wait_seconds or verdict.escalate:  # acting now would fight a change in progress
        return _wait_or_escalate(store, limits, impairment, event, previous, verdict)
    groups = _fail_open(store, limits, membership, plan.get("steps", []), read)
    claims = fixed + _blast_claims(limits, now, groups)
    taken = store.take_budgets(impairment.impairment_id, claims, read)
    if taken.exceeded:
        _stop(store, limits, impairment, [_budget_trip(e) for e in taken.exceeded], _blast_held(taken, groups))
    decision = decide(instances, groups)
    if decision.stop:
        _stop(store, limits, impairment, decision.trips, _blast_held(taken, groups))
    elsewhere = _failing_elsewhere(impairment, groups)
    summary = {
        **summarize(now, previous, decision, elsewhere - set(instances), groups),
        "slots": taken.slots,  # given back at the end (finalize, escalate)
        "blast_items": _blast_held(taken, groups),  # its groups' blast radius items: given back when it verifies
        # how long Finalize keeps the recovery in its history, and what it removes from it
        "history": {"keep_seconds": limits.flapping.window_seconds, "stale": stale},
        "blocking": verdict.record,  # what made it wait, if anything (orchestration/blocked.py)
    }
    if decision.trips:
        _defer(store, settings, limits, impairment, decision)
        event = narrow(event, decision.allowed)
    logger.info("guardrails passed", plan=plan.get("name"), acting_on=decision.allowed, deferred=decision.deferred)
    return {**event, "guardrails": summary}


class Decision(Struct, frozen=True):
    """The blast radius of the whole impairment, once each group's share is decided: the
    instances acted on now, those deferred, the groups' trips, and whether nothing may be acted
    on (stop: the recovery escalates)."""

    allowed: list[str]
    deferred: list[str]
    trips: list[Trip]
    stop: bool


def decide(instances: list[str], groups: list[_GroupDecision]) -> Decision:
    """No I/O: the outcome of the groups' decisions (_GroupDecision.decide, taken atomically)."""
    deferred = sorted({i for g in groups for i in g.deferred})
    allowed = [i for i in instances if i not in deferred]
    trips = [g.trip for g in groups if g.trip]
    return Decision(allowed, deferred, trips, bool(instances and groups and not allowed))


def fail_open_trips(groups: list[_GroupDecision], settings: guardrails.FailOpen) -> list[Trip]:
    """No I/O: the groups most of which is impaired at once (any one stops the recovery)."""
    return [t for t in (g.fail_open(settings) for g in groups) if t]


def summarize(
    now: Any, previous: dict[str, Any], decision: Decision, impaired_elsewhere: set[str], groups: list[_GroupDecision]
) -> dict[str, Any]:
    """No I/O: the "guardrails" summary added to the execution state."""
    return {
        "checked_at": now.isoformat(),
        "checks": int(previous.get("checks", 0)) + 1,
        "tripped": [guardrails.BLAST_RADIUS] if decision.trips else [],
        "deferred": sorted({*previous.get("deferred", []), *decision.deferred}),
        # already failing, and other impairments' to fix: verification leaves them out
        "impaired_elsewhere": sorted(impaired_elsewhere),
        # the groups whose blast radius this recovery holds (given back when it verifies)
        "groups": sorted(g.fleet.name for g in groups),
        "fleets": carried_fleets(groups),
    }


# A group with more failing members than this is not carried: the state stays small (256 KB at
# most), and the action reads such a group whole itself.
CARRIED_FAILING_MAX = 200


def carried_fleets(groups: list[_GroupDecision]) -> dict[str, Any]:
    """No I/O: what the actions need of this read of the groups, passed on in the execution state
    so that they need not read target health and EC2 status again (replace_instance reads only
    the group itself, once, right before it acts): each group's instances of the impairment and
    its failing members, with why."""
    return {
        g.fleet.name: {"instances": sorted(g.wanted), "failing": dict(sorted(g.fleet.failing.items()))}
        for g in groups
        if len(g.fleet.failing) <= CARRIED_FAILING_MAX
    }


def narrow(event: dict[str, Any], allowed: list[str]) -> dict[str, Any]:
    """No I/O: the execution state with its impairment narrowed to the instances allowed (and
    every resource that is not an instance)."""
    narrowed = [
        r
        for r in event["impairment"]["affected_resources"]
        if r["resource_type"] != "ec2:instance" or r["resource_id"] in allowed
    ]
    return {**event, "impairment": {**event["impairment"], "affected_resources": narrowed}}


def _wait_or_escalate(
    store: RecoveryStore,
    limits: guardrails.Guardrails,
    impairment: ImpairmentDetected,
    event: dict[str, Any],
    previous: dict[str, Any],
    verdict: Any,
) -> dict[str, Any]:
    """A blocked recovery (core/blocking.py): the state the workflow waits with, or, past the
    bound when so configured, the escalation (raises)."""
    if verdict.escalate:
        _stop(store, limits, impairment, [Trip(guardrail=guardrails.BLOCKED, reason=verdict.escalate)])
    return blocked.waiting(event, previous, verdict)


def _first_read(impairment: ImpairmentDetected, claims: list[Claim]) -> list[tuple[str, str]]:
    """What CheckGuardrails reads first, in one BatchGetItem: the recovery history of the
    impairment's resources and group, the budgets it will claim, and its group's blast radius
    (whose items do not depend on the group's size, not read yet)."""
    group = (impairment.scope or {}).get("auto_scaling_group")
    blast = _blast_claim(group, 0, 0).items_read() if group else []
    record = impairment.model_dump(mode="json")
    return history.table_keys(history.keys(record)) + [k for c in claims for k in c.items_read()] + blast


def _check_schedule(
    store: RecoveryStore, config: Any, impairment: ImpairmentDetected, now: Any, read: dict[str, dict[str, Any]]
) -> dict[str, list[str]]:
    """Maintenance windows and blocked dates, then flapping: no automatic action now (raises).
    Flapping reads the recovery history of its resources and group in `read`; returns what of
    it is outside the window (history.stale)."""
    limits = config.guardrails
    blocked = config.maintenance_of(impairment.workload).blocks(now)
    if blocked:
        _stop(
            store,
            limits,
            impairment,
            [Trip(guardrail=guardrails.MAINTENANCE, reason=f"no automatic action: {blocked}")],
        )
    since = now - timedelta(seconds=limits.flapping.window_seconds)
    record = impairment.model_dump(mode="json")
    items = {k: read[k] for k in history.keys(record) if k in read}
    trip = guardrails.flapping(record, history.recoveries(items.values()), limits.flapping, now)
    if trip:
        _stop(store, limits, impairment, [trip])
    return history.stale(items, since)


def _fail_open(
    store: RecoveryStore,
    limits: guardrails.Guardrails,
    membership: _Membership,
    steps: list[dict[str, Any]],
    read: Read,
) -> list[_GroupDecision]:
    """For a plan that takes the impaired instances out of service (as its actions declare,
    actions/registry.py): their groups, read whole; most of a group impaired at once stops the
    recovery (raises), giving back what it held of their blast radius (a check before an
    approval took it): found in `read`, or read."""
    impairment = membership.impairment
    if not membership.instances or not plans.takes_out_of_service(steps):
        return []
    groups = _groups(membership, limits)
    trips = fail_open_trips(groups, limits.fail_open)
    if trips:
        claims = [_blast_claim(g.fleet.name, 0, 0) for g in groups]
        _stop(store, limits, impairment, trips, store.budget_items_held(claims, impairment.impairment_id, read))
    return groups


class _GroupDecision:
    """One Auto Scaling group of the impairment: its fleet as read now, the impairment's instances
    in it, and (once the budgets are taken) which of them may be acted on."""

    def __init__(self, fleet: fleets.Fleet, wanted: list[str], settings: guardrails.BlastRadius) -> None:
        self.fleet = fleet
        self.wanted = wanted
        self.settings = settings
        self.allowed: list[str] = []
        self.deferred: list[str] = []
        self.trip: Trip | None = None

    def fail_open(self, settings: guardrails.FailOpen) -> Trip | None:
        return guardrails.fail_open(
            set(self.wanted) | set(self.fleet.failing), self.fleet.members, settings, self.fleet.name
        )

    def decide(self, others: dict[str, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """The blast radius given what the other recoveries of this group hold now (called by the
        store inside its atomic take, again at every attempt): a unit of the count per instance
        allowed, and the healthy ones among them (SERIAL: held in the group's healthy item, which
        every taker of healthy capacity writes, so that the healthy floor stays exact)."""
        acted = {i for holder in others.values() for i in holder.get("instances", [])}
        used = sum(int(holder.get("units", 0)) for holder in others.values())
        self.allowed, self.deferred, self.trip = guardrails.blast_radius(
            self.wanted, acted, self.fleet.group, self.fleet.healthy, self.settings, used=used
        )
        healthy = sorted(i for i in self.allowed if i in self.fleet.healthy and i not in acted)
        return len(self.allowed), {"instances": sorted(self.allowed), **({SERIAL: healthy} if healthy else {})}


class _Membership:
    """Which Auto Scaling group each impaired instance is in, looked up once per check: the
    blocking check (the groups whose instance refresh would be fought) and the fleet read share
    it. The group the scope names is listed (DescribeAutoScalingGroups, kept: it is the first
    read of that group's fleet) and the instances it lists need no look-up; only the others are
    looked up (DescribeAutoScalingInstances), so a scope whose group no longer holds the
    instance (replaced since the signal) is never taken at its word."""

    def __init__(self, impairment: ImpairmentDetected, instances: list[str]) -> None:
        self.impairment = impairment
        self.instances = instances
        self.scoped: list[dict[str, Any]] = []  # the scope's group as listed, if it exists
        self._found: dict[str, str] | None = None
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("autoscaling", max_attempts=1, account=self.impairment.account_id)
        return self._client

    def resolver(self, plan: dict[str, Any]) -> Any:
        """`groups_of` for the blocking check when the fleet will be read anyway (a plan that takes
        the instances out of service): the look-up is then no extra call. Otherwise None (the
        blocking check names the scope's group, or looks the instances up itself)."""
        return self.groups_of if self.instances and plans.takes_out_of_service(plan.get("steps", [])) else None

    def groups_of(self) -> dict[str, str]:
        """instance id -> its group, for the impaired instances in one (read once)."""
        if self._found is None:
            named = self.impairment.scope.get("auto_scaling_group")
            self.scoped = group_reads.describe_many(self.client, [named]) if named else []
            listed = {i["InstanceId"]: g["AutoScalingGroupName"] for g in self.scoped for i in g.get("Instances", [])}
            found = {i: listed[i] for i in self.instances if i in listed}
            rest = [i for i in self.instances if i not in found]
            if rest:
                found.update(asg.groups_of_instances(self.client, rest))
            self._found = found
        return self._found


def _groups(membership: _Membership, limits: guardrails.Guardrails) -> list[_GroupDecision]:
    """The Auto Scaling groups the instances belong to, each read whole. Instances in no group
    (the plan's outside_group decides what happens to them) have no group guardrails; a look-up
    that fails raises: no guardrail is ever skipped because a group could not be read."""
    impairment, instances = membership.impairment, membership.instances
    found = membership.groups_of()
    extra = (impairment.scope["target_group_arn"],) if impairment.scope.get("target_group_arn") else ()
    decisions = []
    for name in sorted(set(found.values())):
        already = next((g for g in membership.scoped if g["AutoScalingGroupName"] == name), None)
        fleet = fleets.read(membership.client, name, impairment.account_id, extra, group=already)
        wanted = [i for i in instances if found.get(i) == name]
        decisions.append(_GroupDecision(fleet, wanted, limits.blast_radius))
    return decisions


def _failing_elsewhere(impairment: ImpairmentDetected, groups: list[_GroupDecision]) -> set[str]:
    """What was already failing when the recovery was decided: its groups' failing instances, and
    the failing targets of its target group that are in none of its groups. A target group shared
    with another group (a blue/green pair) has that group's unhealthy instances in it: another
    impairment's to fix (the sweep opens one per group), which Verify must not wait for."""
    failing = {i for g in groups for i in g.fleet.failing}
    target_group_arn = impairment.scope.get("target_group_arn")
    if not groups or not target_group_arn:
        return failing
    members = {i for g in groups for i in g.fleet.members}
    read = next((g.fleet.targets[target_group_arn] for g in groups if target_group_arn in g.fleet.targets), None)
    if read is None:
        read = target_health.describe(
            aws.client("elbv2", max_attempts=1, account=impairment.account_id), target_group_arn
        )
    for description in read:
        target = description["Target"]["Id"]
        state_name = description.get("TargetHealth", {}).get("State")
        if target not in members and state_name in target_health.FAILING_STATES:
            failing.add(target)
    return failing


def _defer(
    store: RecoveryStore,
    settings: Any,
    limits: guardrails.Guardrails,
    impairment: ImpairmentDetected,
    decision: Decision,
) -> None:
    """Act on part: record the trip, give the deferred instances' locks and correlation windows
    back (a later signal about them starts their own recovery, once the capacity is back) and
    page a human once."""
    allowed, deferred, trips = decision.allowed, decision.deferred, decision.trips
    keys = [f"ec2:instance/{i}" for i in deferred]
    first = store.claim_escalation(impairment.impairment_id, keys, limits.blast_radius.window_seconds)
    store.update_impairment(
        impairment.impairment_id,
        guardrails_tripped=[guardrails.BLAST_RADIUS],
        guardrail_trips=[t.model_dump() for t in trips],
        deferred_resources=keys,
    )
    store.release_locks(impairment.impairment_id, keys, concurrency=False)
    metrics.add_metric(name="GuardrailTripped", unit="Count", value=1)
    logger.warning("blast radius: acting on part", allowed=allowed, deferred=deferred)
    if first:
        paging.page(
            settings.escalation_topic_arn,
            impairment.workload,
            f"blast radius: {len(deferred)} instance(s) deferred",
            {
                "summary": f"Automatic recovery of {impairment.workload} acts on {len(allowed)} instance(s) now and "
                f"defers {len(deferred)}: {'; '.join(t.reason for t in trips)}. A later signal recovers them once "
                "the capacity taken out is back; act sooner by hand if they matter.",
                "impairment_id": impairment.impairment_id,
                "guardrail": guardrails.BLAST_RADIUS,
                "evidence": [t.evidence for t in trips],
                "deferred": deferred,
                "next_steps": f"recoveryctl show {impairment.impairment_id}",
            },
        )


def _claims(
    impairment: ImpairmentDetected,
    plan: dict[str, Any],
    limits: guardrails.Guardrails,
    now: Any,
    lock_ttl_seconds: int,
) -> list[Claim]:
    """The budgets every recovery claims: its workload's and its plan's rates, and a concurrency
    slot."""
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
            guardrails.CONCURRENCY,
            CONCURRENCY_BUDGET,
            limits.rate_limits.max_concurrent,
            1,
            epoch + lock_ttl_seconds,
            slotted=True,
        ),
    ]
    return claims


def _blast_claims(limits: guardrails.Guardrails, now: Any, groups: list[_GroupDecision]) -> list[Claim]:
    """Each group's share of its blast radius, decided inside the take."""
    epoch = int(now.timestamp())
    claims = []
    for group in groups:
        limit = guardrails.blast_radius_limit(
            len(group.fleet.group.get("Instances", [])), limits.blast_radius.max_share
        )
        claims.append(_blast_claim(group.fleet.name, limit, epoch + limits.blast_radius.window_seconds, group.decide))
    return claims


def _blast_claim(group: str, limit: int, expires_at: int, decide: Any = None) -> Claim:
    """A group's blast radius as a budget: its count sharded over a fixed number of items (the
    limit depends on the group's size, which changes: a holding is found wherever it was put),
    and its healthy floor's one item."""
    return Claim(
        guardrails.BLAST_RADIUS,
        guardrails.blast_key(group),
        limit,
        0,
        expires_at,
        decide=decide,
        shards=MAX_SHARDS,
        serial_key=guardrails.blast_healthy_key(group),
    )


def _blast_held(taken: Taken, groups: list[_GroupDecision]) -> list[str]:
    """The items of its groups' blast radius this recovery holds units of (Budgets.take)."""
    return sorted({k for g in groups for k in taken.held.get(guardrails.blast_key(g.fleet.name), [])})


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


def _stop_if_spent(
    store: RecoveryStore, limits: guardrails.Guardrails, impairment: ImpairmentDetected, fixed: list[Claim], read: Any
) -> None:
    """A rate or the concurrency cap already spent as read (a storm past its limit) stops the
    recovery before any read of the fleet: the take would stop it on this same read, and a
    storm's hundreds of stopped recoveries would each describe whole groups for nothing."""
    spent = store.budgets_spent(impairment.impairment_id, fixed, read)
    if spent:
        _stop(store, limits, impairment, [_budget_trip(e) for e in spent])


def _stop(
    store: RecoveryStore,
    limits: guardrails.Guardrails,
    impairment: ImpairmentDetected,
    trips: list[Trip],
    blast: Sequence[str] = (),
) -> None:
    """Note what stopped the recovery and raise GuardrailTripped (the workflow escalates, and
    Escalate records it on the impairment with the outcome, in one write of the record).
    Nothing was acted on yet: any share of a group's blast radius this recovery held (`blast`:
    the items holding it) is given back."""
    trips = trips or [Trip(guardrail=guardrails.BLAST_RADIUS, reason="nothing may be acted on")]
    names = sorted({t.guardrail for t in trips})
    keys = [r.key for r in impairment.affected_resources]
    window = max(limits.blast_radius.window_seconds, limits.flapping.window_seconds)
    first = store.claim_escalation(impairment.impairment_id, keys, window)
    reason = "; ".join(f"{t.guardrail}: {t.reason}" for t in trips)
    for key in blast:
        store.release_budget(key, impairment.impairment_id)
    # noted on its guardrails item, not the record: Escalate writes it there with its outcome
    store.note_trip(
        impairment.impairment_id,
        guardrails_tripped=names,
        guardrail_trips=[t.model_dump() for t in trips],
        page=first,
    )
    for _ in names:
        metrics.add_metric(name="GuardrailTripped", unit="Count", value=1)
    logger.warning("guardrail tripped", guardrails=names, reason=reason, paged=first)
    raise GuardrailTripped(reason, guardrails=names)
