"""Blocking conditions: when a recovery waits instead of acting (docs/safety.md#blocking-conditions).

Acting while something else is already changing the workload fights it: an Auto Scaling instance
refresh replaces instances on its own schedule (a replacement of ours is undone or doubles the
capacity taken out), and an ECS deployment in progress or being rolled back by its circuit
breaker is ECS's own recovery. Named alarms in ALARM (ARC-style blocking alarms) are the
operator's way to say "not now". CheckGuardrails reads these conditions (the reads below, through
the member role for a member account's workload) and decides, without I/O (`decide`), whether the
recovery waits, acts anyway or escalates once `max_wait_seconds` have passed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from core import aws
from core.model import Model
from core.reads import ecs

# DescribeInstanceRefreshes statuses of a refresh still changing the group (Successful, Failed,
# Cancelled, RollbackSuccessful and RollbackFailed are over).
REFRESH_ACTIVE = frozenset({"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"})
ALARM_NAMES_PER_CALL = 100  # DescribeAlarms: at most 100 AlarmNames a call

INSTANCE_REFRESH = "instance_refresh"
ECS_DEPLOYMENT = "ecs_deployment"
ALARM = "alarm"


def _alarm_names(names: list[str]) -> None:
    if any(not 1 <= len(n) <= 255 for n in names):
        raise ValueError("an alarm name has 1 to 255 characters")
    if len(set(names)) != len(names):
        raise ValueError(f"alarms named twice: {sorted({n for n in names if names.count(n) > 1})}")


class Blocking(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What makes a recovery wait, how long at most, and what it does then. On a plan
    (`blocking`) or for the whole deployment (`guardrails.blocking`, the default of every plan
    that sets none)."""

    instance_refresh: Annotated[
        bool, Meta(description="an instance refresh in progress on the impairment's Auto Scaling group blocks")
    ] = True
    ecs_deployment: Annotated[
        bool,
        Meta(
            description="an ECS deployment of the impaired service in progress or rolling back (circuit breaker) blocks"
        ),
    ] = True
    alarms: Annotated[
        list[str], Meta(max_length=100, description="CloudWatch alarms (names) that block while in ALARM")
    ] = []
    max_wait_seconds: Annotated[int, Meta(ge=0, le=86400, description="the longest a recovery waits")] = 900
    check_every_seconds: Annotated[int, Meta(ge=10, le=3600, description="how often it looks again")] = 60
    then: Annotated[
        Literal["act", "escalate"],
        Meta(description="still blocked after max_wait_seconds: act anyway, or page a human"),
    ] = "escalate"

    _field_checks = {"alarms": _alarm_names}


def of(plan_state: dict[str, Any], default: Blocking) -> Blocking:
    """The blocking settings of the selected plan (Admit resolved them), else the default."""
    own = plan_state.get("blocking")
    return Blocking.model_validate(own) if own else default


# --- decisions over what was read (no I/O) -----------------------------------------------------


def refresh_condition(group: str, refreshes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An instance refresh of the group still changing it (DescribeInstanceRefreshes' items)."""
    active = next((r for r in refreshes if r.get("Status") in REFRESH_ACTIVE), None)
    if active is None:
        return None
    return _condition(
        INSTANCE_REFRESH,
        f"autoscaling:group/{group}",
        f"instance refresh {active.get('InstanceRefreshId')} of group {group} is {active.get('Status')}",
        {
            "instance_refresh_id": active.get("InstanceRefreshId"),
            "status": active.get("Status"),
            "percentage_complete": active.get("PercentageComplete"),
        },
    )


def deployment_condition(service: dict[str, Any]) -> dict[str, Any] | None:
    """An ECS service being deployed: more than one deployment, the PRIMARY rolling out, or a
    failed one the circuit breaker is rolling back (DescribeServices' `services` item)."""
    deployments = service.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
    failed = [d for d in deployments if d.get("rolloutState") == "FAILED"]
    breaker = (service.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
    if failed and breaker.get("rollback") and len(deployments) > 1:
        why = "its circuit breaker is rolling back a failed deployment"
    elif primary.get("rolloutState") == "IN_PROGRESS":
        why = "its deployment is rolling out"
    elif len(deployments) > 1:
        why = f"{len(deployments)} deployments are running"
    else:
        return None
    name = service.get("serviceName")
    return _condition(
        ECS_DEPLOYMENT,
        f"ecs:service/{service.get('serviceArn') or name}",
        f"ECS service {name}: {why}",
        {
            "deployments": [
                {"id": d.get("id"), "status": d.get("status"), "rollout_state": d.get("rolloutState")}
                for d in deployments
            ]
        },
    )


def alarm_conditions(alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocking alarms in ALARM (DescribeAlarms' metric and composite alarms)."""
    return [
        _condition(
            ALARM,
            f"cloudwatch:alarm/{a['AlarmName']}",
            f"alarm {a['AlarmName']} is in ALARM",
            {
                "alarm": a["AlarmName"],
                "since": str(a.get("StateUpdatedTimestamp") or ""),
                "reason": a.get("StateReason"),
            },
        )
        for a in alarms
        if a.get("StateValue") == "ALARM"
    ]


class Verdict(Struct, frozen=True):
    """wait_seconds > 0: wait that long and check again; trip: escalate (its reason); record:
    what the impairment's record and the guardrails summary keep of it (None: never blocked)."""

    wait_seconds: int = 0
    escalate: str | None = None
    record: dict[str, Any] | None = None


def decide(
    conditions: list[dict[str, Any]], settings: Blocking, previous: dict[str, Any] | None, now: datetime
) -> Verdict:
    """Wait while blocked and within the bound; after it, act or escalate as configured.
    `previous`: the record of the checks before (when the wait began, what blocked it)."""
    if not conditions:
        if not previous or previous.get("outcome"):
            return Verdict(record=previous)
        return Verdict(record={**previous, "outcome": "cleared", "until": now.isoformat()})
    # a wait that ended (cleared, or acted on after an approval) starts again
    waiting = previous and not previous.get("outcome")
    since = datetime.fromisoformat(previous["since"]) if waiting else now
    waited = int((now - since).total_seconds())
    record = {"since": since.isoformat(), "blocked_by": conditions, "waited_seconds": waited}
    if waited < settings.max_wait_seconds:
        wait = max(1, min(settings.check_every_seconds, settings.max_wait_seconds - waited))
        return Verdict(wait_seconds=wait, record=record)
    why = "; ".join(c["reason"] for c in conditions)
    if settings.then == "act":
        return Verdict(record={**record, "outcome": "acted_while_blocked", "until": now.isoformat()})
    reason = f"still blocked after {waited} s (limit {settings.max_wait_seconds} s): {why}"
    return Verdict(escalate=reason, record={**record, "outcome": "escalated", "until": now.isoformat()})


def _condition(kind: str, resource: str, reason: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"condition": kind, "resource": resource, "reason": reason, "evidence": evidence}


# --- reads --------------------------------------------------------------------------------------


def conditions(settings: Blocking, groups: list[str], service: tuple[str, str] | None, account: str | None) -> list:
    """Every blocking condition that holds now, for these groups, this ECS service (cluster,
    name) and the alarms the settings name, read in `account` (None: this one) and this region
    (the stack's: the workload's)."""
    found: list[dict[str, Any]] = []
    if settings.instance_refresh and groups:
        client = aws.client("autoscaling", max_attempts=1, account=account)
        found += [c for g in sorted(set(groups)) if (c := refresh_condition(g, instance_refreshes(client, g)))]
    if settings.ecs_deployment and service:
        described = ecs_service(aws.client("ecs", max_attempts=1, account=account), *service)
        if described and (condition := deployment_condition(described)):
            found.append(condition)
    if settings.alarms:
        found += alarm_conditions(alarms(aws.client("cloudwatch", max_attempts=1, account=account), settings.alarms))
    return found


def instance_refreshes(client: Any, group: str) -> list[dict[str, Any]]:
    """The group's instance refreshes, newest first: one page is enough, a group has at most one
    refresh not over and it is the newest (StartInstanceRefresh refuses a second)."""
    response = aws.call(client, "describe_instance_refreshes", AutoScalingGroupName=group, MaxRecords=10)
    return response.get("InstanceRefreshes", [])


def ecs_service(client: Any, cluster: str, name: str) -> dict[str, Any] | None:
    """The service as DescribeServices shows it (None: ECS does not find it, nothing blocks)."""
    return ecs.service(client, cluster, name)[0]


def alarms(client: Any, names: list[str]) -> list[dict[str, Any]]:
    """The named alarms, metric and composite, 100 names a call, every page."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(names), ALARM_NAMES_PER_CALL):
        batch = names[start : start + ALARM_NAMES_PER_CALL]
        for page in aws.pages(
            client, "describe_alarms", AlarmNames=batch, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        ):
            found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
    return found
