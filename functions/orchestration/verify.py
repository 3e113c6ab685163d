"""Verify: is the impaired part of the workload healthy again?

Checks, for the impairment's Auto Scaling group: as many healthy in-service instances as its
desired capacity, and none of the impaired instances still in service; for its target group:
every registered target of the group healthy. One call per attempt; the state machine waits
between attempts and gives up after the plan's max_attempts.
"""

from __future__ import annotations

from typing import Any

from actions import autoscaling as asg
from core import aws
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.errors import PermanentError, classify_client_error
from core.observability import logger


def check(impairment: ImpairmentDetected) -> list[dict[str, Any]]:
    """The checks and whether each passed (pure but for the describe calls)."""
    client = asg.asg_client()
    checks: list[dict[str, Any]] = []
    try:
        group_name = asg.group_name(client, impairment)
    except PermanentError:
        group_name = None
    in_service: list[str] = []
    if group_name:
        group = asg.describe_group(client, group_name)
        in_service = asg.healthy_in_service(group)
        impaired = set(asg.impaired_instances(impairment))
        still = sorted(impaired & set(in_service))
        checks.append(
            {
                "check": "group_capacity",
                "group": group_name,
                "passed": len(in_service) >= group["DesiredCapacity"] and not still,
                "healthy_in_service": len(in_service),
                "desired_capacity": group["DesiredCapacity"],
                "impaired_still_in_service": still,
            }
        )
    target_group_arn = impairment.scope.get("target_group_arn")
    if target_group_arn:
        try:
            health = aws.client("elbv2", max_attempts=1).describe_target_health(TargetGroupArn=target_group_arn)
        except Exception as exc:
            raise classify_client_error(exc, "elasticloadbalancing:DescribeTargetHealth") from exc
        states = {h["Target"]["Id"]: h["TargetHealth"]["State"] for h in health["TargetHealthDescriptions"]}
        relevant = {t: s for t, s in states.items() if not in_service or t in in_service or s != "draining"}
        unhealthy = sorted(t for t, s in relevant.items() if s not in ("healthy", "draining"))
        checks.append(
            {
                "check": "target_health",
                "target_group_arn": target_group_arn,
                "passed": bool(relevant) and not unhealthy,
                "healthy_targets": sum(1 for s in relevant.values() if s == "healthy"),
                "not_healthy": unhealthy,
            }
        )
    if not checks:
        checks.append({"check": "resolvable", "passed": False, "reason": "nothing to verify against"})
    return checks


@lambda_entry
def handler(event: Any, context: Any) -> dict[str, Any]:
    impairment = ImpairmentDetected.model_validate(event["impairment"])
    previous = event.get("verification") or {}
    attempt = int(previous.get("attempt", 0)) + 1
    max_attempts = int(event["plan"]["verify"]["max_attempts"])
    if event["plan"].get("dry_run"):
        checks = [{"check": "dry_run", "passed": True, "reason": "a dry run changes nothing to verify"}]
        return {"healthy": True, "attempt": attempt, "max_attempts": max_attempts, "retry": False, "checks": checks}
    checks = check(impairment)
    healthy = all(c["passed"] for c in checks)
    logger.info("verification", attempt=attempt, healthy=healthy, checks=checks)
    return {
        "healthy": healthy,
        "attempt": attempt,
        "max_attempts": max_attempts,
        "retry": not healthy and attempt < max_attempts,
        "checks": checks,
    }
