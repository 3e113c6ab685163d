"""Verify: is the impaired part of the workload healthy again?

Checks what the impairment's scope names (target group, ECS service, database), then what the
plan's actions declare they leave behind (a group at capacity, the standby in use). A regional
failover is verified in the standby region alone: nothing is asked of the impaired region.

Design: docs/actions.md#what-verify-checks
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from actions import autoscaling as asg
from actions import registry
from actions.specs import resolve
from core import aws, clock, state
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.errors import PermanentError
from core.observability import logger
from core.reads import ecs, groups, rds, target_health, zones


def check(
    impairment: ImpairmentDetected,
    steps: Sequence[dict[str, Any]] = (),
    not_mine: frozenset[str] = frozenset(),
    results: Sequence[Any] = (),
) -> list[dict[str, Any]]:
    """The checks and whether each passed (pure but for the describe calls).

    What "healthy again" means follows what the plan did, as its actions declare it (their
    Verification, actions/registry.py): capacity actions are verified on the group (replacement:
    the impaired instances are out of service too; an Availability Zone impairment: the capacity
    outside that zone), and an action with a check of its own checks what its step did (its apply
    result from `results`); the target group, ECS service and database the impairment names are
    checked after any plan. Instances that are not this recovery's to fix are left out
    (`not_mine`): those the guardrails deferred to a human (blast radius), and those already
    failing when it started that belong to other impairments (in a zone outage, one recovery per
    instance must not wait for all the others). No steps: the group's capacity.
    """
    declared = [(step, registry.ACTIONS[step["action"]]) for step in steps if step["action"] in registry.ACTIONS]
    verifications = [spec.verification for _, spec in declared]
    capacity = not steps or any(v.group_capacity for v in verifications)
    replaced = not steps or any(v.impaired_out_of_service for v in verifications)
    account = impairment.account_id  # a member account's workload is checked there
    client = aws.client("autoscaling", max_attempts=1, account=account)
    checks: list[dict[str, Any]] = []
    zone = _zone_name(impairment.scope.get("availability_zone"), account)
    group_name = _group_name(client, impairment) if capacity else None  # looked up only to be checked
    in_service: list[str] = []
    if group_name:
        group = groups.describe(client, group_name)
        in_service = asg.healthy_in_service(group)
        if zone:
            outside = [
                i["InstanceId"]
                for i in group.get("Instances", [])
                if i["InstanceId"] in in_service and i.get("AvailabilityZone") != zone
            ]
            floor = max(1, group["MinSize"])
            checks.append(
                {
                    "check": "capacity_outside_zone",
                    "group": group_name,
                    "zone": zone,
                    "passed": len(outside) >= floor,
                    "healthy_outside_zone": len(outside),
                    "minimum": floor,
                }
            )
        else:
            impaired = set(asg.impaired_instances(impairment)) if replaced else set()
            still = sorted(impaired & set(in_service))
            # A regional failover's standby must reach the capacity configured for it, not just its
            # own desired capacity (a MaxSize below it would otherwise verify half a standby).
            wanted = group["DesiredCapacity"]
            configured = impairment.scope.get("standby_desired_capacity", "")
            if impairment.scope.get("standby_auto_scaling_group") == group_name and configured.isdigit():
                wanted = max(wanted, int(configured), 1)
            checks.append(
                {
                    "check": "group_capacity",
                    "group": group_name,
                    "passed": len(in_service) >= wanted and not still,
                    "healthy_in_service": len(in_service),
                    "desired_capacity": wanted,
                    "impaired_still_in_service": still,
                }
            )
    target_group_arn = impairment.scope.get("target_group_arn")
    if target_group_arn and not zone:
        health = target_health.describe(aws.client("elbv2", max_attempts=1, account=account), target_group_arn)
        states = {h["Target"]["Id"]: h["TargetHealth"]["State"] for h in health}
        relevant = {t: s for t, s in states.items() if s not in ("draining", "unused") or t in in_service}
        relevant = {t: s for t, s in relevant.items() if s != "draining" and t not in not_mine}
        unhealthy = sorted(t for t, s in relevant.items() if s != "healthy")
        checks.append(
            {
                "check": "target_health",
                "target_group_arn": target_group_arn,
                "passed": any(s == "healthy" for s in relevant.values()) and not unhealthy,
                "healthy_targets": sum(1 for s in relevant.values() if s == "healthy"),
                "not_healthy": unhealthy,
            }
        )
    applied = {r.get("step_index"): r for r in results if isinstance(r, dict)}
    for step, spec in declared:
        if spec.verification.step_check:
            step_check = resolve(spec.verification.step_check)
            checks.extend(step_check(impairment, step.get("params") or {}, applied.get(step.get("index"))))
    checks.extend(_service_checks(impairment.scope, account))
    checks.extend(_database_checks(impairment.scope, account))
    if not checks:
        checks.append({"check": "resolvable", "passed": False, "reason": "nothing to verify against"})
    return checks


def _group_name(client: Any, impairment: ImpairmentDetected) -> str | None:
    try:
        return asg.group_name(client, impairment)
    except PermanentError:
        return None


def _zone_name(zone: str | None, account: str | None = None) -> str | None:
    """An Availability Zone name (us-east-1a) for a name or an AZ id (use1-az2)."""
    if not zone or not zones.is_zone_id(zone):
        return zone
    found = zones.find(aws.client("ec2", max_attempts=1, account=account), zone)
    return found["name"] if found else zone


def _service_checks(scope: dict[str, str], account: str | None = None) -> list[dict[str, Any]]:
    """An ECS service is healthy when it runs its desired count and its newest deployment is done."""
    if not (scope.get("ecs_cluster") and scope.get("ecs_service")):
        return []
    client = aws.client("ecs", max_attempts=1, account=account)
    service, _ = ecs.service(client, scope["ecs_cluster"], scope["ecs_service"])
    if service is None:
        return [{"check": "service", "service": scope["ecs_service"], "passed": False, "reason": "not found"}]
    return [{"check": "service", "service": scope["ecs_service"]} | ecs.steadiness(service)]


def _database_checks(scope: dict[str, str], account: str | None = None) -> list[dict[str, Any]]:
    """A database is healthy when it is available again (after a failover, say)."""
    client = None
    checks = []
    if scope.get("db_instance"):
        client = aws.client("rds", max_attempts=1, account=account)
        db = rds.db_instance(client, scope["db_instance"])
        checks.append(
            {
                "check": "database",
                "db_instance": scope["db_instance"],
                "passed": db.get("DBInstanceStatus") == "available",
                "status": db.get("DBInstanceStatus"),
                "availability_zone": db.get("AvailabilityZone"),
            }
        )
    if scope.get("db_cluster"):
        client = client or aws.client("rds", max_attempts=1, account=account)
        cluster = rds.db_cluster(client, scope["db_cluster"])
        writer = next(
            (m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None
        )
        checks.append(
            {
                "check": "database",
                "db_cluster": scope["db_cluster"],
                "passed": cluster.get("Status") == "available",
                "status": cluster.get("Status"),
                "writer": writer,
            }
        )
    return checks


@lambda_entry
def handler(event: Any, context: Any) -> dict[str, Any]:
    execution = state.parse(event, "Verify", plan=True)
    impairment, plan = execution.impairment, execution.plan
    assert plan is not None
    previous = event.get("verification") or {}
    attempt = int(previous.get("attempt", 0)) + 1
    max_attempts = plan.verify.max_attempts
    if event["plan"].get("dry_run"):
        checks = [{"check": "dry_run", "passed": True, "reason": "a dry run changes nothing to verify"}]
        return {"healthy": True, "attempt": attempt, "max_attempts": max_attempts, "retry": False, "checks": checks}
    guarded = execution.guardrails or {}
    not_mine = frozenset(guarded.get("deferred") or []) | frozenset(guarded.get("impaired_elsewhere") or [])
    checks = check(impairment, event["plan"].get("steps", []), not_mine, execution.actions or [])
    healthy = all(c["passed"] for c in checks)
    retry = not healthy and attempt < max_attempts
    if retry and _past_time_box(plan.deadline, plan.verify.wait_seconds):
        # The plan's time-box is over before another attempt: roll back and escalate now.
        retry = False
        checks.append({"check": "time_box", "passed": False, "deadline": plan.deadline})
    logger.info("verification", attempt=attempt, healthy=healthy, checks=checks)
    return {"healthy": healthy, "attempt": attempt, "max_attempts": max_attempts, "retry": retry, "checks": checks}


def _past_time_box(deadline: str | None, wait_seconds: int) -> bool:
    if not deadline:
        return False
    try:
        end = datetime.fromisoformat(deadline)
    except ValueError:
        return False
    return clock.utc_now() + timedelta(seconds=wait_seconds) > end
