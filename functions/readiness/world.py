"""The facts the readiness checks judge, read from AWS once per run: each group, warm pool,
record listing and health check is described once however many plans need it, a member
account's role is assumed once (core/aws.py keeps its credentials), each role's permissions are
simulated once per step, and each cluster endpoint is asked once per routing control.

Whose permissions are simulated: here, the role of the action's function (ACTION_ROLES, set by
infra/readiness.py); in a member account, the member role, simulated from inside that account
through the role itself (IAM simulates only principals of the caller's account, so the member
role is allowed iam:SimulatePrincipalPolicy on itself: infra/member_stack.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from core import aws
from core.errors import PermanentError, RecoveryError
from core.reads import groups, warm_pool
from readiness.checks import NotChecked

T = TypeVar("T")

# {action: the ARN of the role its apply function runs with}, for the actions the plans use.
ACTION_ROLES_ENV = "ACTION_ROLES"
# Why no role can be simulated where this runs (None: it can): the local emulator says so, as
# moto simulates no IAM policy (recoveryctl/emulator/behaviour.py).
_no_simulation: str | None = None


def no_simulation(reason: str | None) -> None:
    """Report every permissions check as not checked, for `reason` (emulator only; None: simulate)."""
    global _no_simulation
    _no_simulation = reason


class AwsWorld:
    """readiness.checks.World over AWS; a read that failed fails the same way when asked again."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Any, ...], Any] = {}

    def _once(self, key: tuple[Any, ...], read: Callable[[], T]) -> T:
        if key not in self._seen:
            try:
                self._seen[key] = read()
            except RecoveryError as exc:
                self._seen[key] = exc
        found = self._seen[key]
        if isinstance(found, RecoveryError):
            raise found
        return found

    def assume(self, account: str) -> None:
        # Any client of the account assumes its member role (sts:AssumeRole), or fails saying why.
        self._once(("assume", account), lambda: aws.client("autoscaling", account=account) and None)

    def group(self, account: str | None, name: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            found = groups.describe_many(aws.client("autoscaling", account=account), [name])
            return found[0] if found else None

        return self._once(("group", account, name), read)

    def warm_pool(self, account: str | None, name: str) -> tuple[bool, list[str]]:
        def read() -> tuple[bool, list[str]]:
            configured, instances = warm_pool.describe(aws.client("autoscaling", account=account), name)
            return configured, warm_pool.warmed(instances)

        return self._once(("warm_pool", account, name), read)

    def record_sets(self, account: str | None, zone: str, name: str, record_type: str) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            # Records are listed in name order, then type, then set identifier: the page that
            # starts at this name and type holds the primary and secondary of a failover pair.
            page = aws.call(
                aws.client("route53", account=account),
                "list_resource_record_sets",
                HostedZoneId=zone,
                StartRecordName=name,
                StartRecordType=record_type,
                MaxItems="20",
            )
            return list(page.get("ResourceRecordSets", []))

        return self._once(("records", account, zone, name, record_type), read)

    def health_check_exists(self, account: str | None, health_check_id: str) -> bool:
        def read() -> bool:
            try:
                aws.call(aws.client("route53", account=account), "get_health_check", HealthCheckId=health_check_id)
            except PermanentError as exc:
                if exc.details.get("code") == "NoSuchHealthCheck":
                    return False
                raise
            return True

        return self._once(("health_check", account, health_check_id), read)

    def region(self) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def simulation_role(self, account: str | None, action: str) -> str:
        if _no_simulation:
            raise NotChecked(_no_simulation)
        if account and account != aws.own_account():
            return aws.member_role_arn(account)
        try:
            roles = json.loads(os.environ.get(ACTION_ROLES_ENV) or "{}")
        except ValueError as exc:
            raise PermanentError(f"{ACTION_ROLES_ENV} is not JSON: {exc}") from exc
        if action not in roles:
            raise NotChecked(f"no role of action {action} is known ({ACTION_ROLES_ENV}): redeploy the stack")
        return str(roles[action])

    def simulate(
        self, account: str | None, role: str, actions: list[str], resources: list[str], context: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            # IAM throttles simulations at low rates: one call per role and step, every page followed.
            return aws.items(
                aws.client("iam", account=account),
                "simulate_principal_policy",
                "EvaluationResults",
                PolicySourceArn=role,
                ActionNames=actions,
                ResourceArns=resources,
                ContextEntries=context,
            )

        key = ("simulate", role, tuple(actions), tuple(resources), json.dumps(context, sort_keys=True))
        return self._once(key, read)

    def routing_control_state(self, account: str | None, endpoint: Any, arn: str) -> str:
        from actions.failover_routing_control import NoAnswer, ask_endpoint

        key = ("routing_control", account, endpoint.endpoint, arn)
        if key not in self._seen:
            try:
                answer = ask_endpoint(endpoint, account, "get_routing_control_state", RoutingControlArn=arn)
                self._seen[key] = answer["RoutingControlState"]
            except (NoAnswer, RecoveryError) as exc:
                self._seen[key] = exc
        found = self._seen[key]
        if isinstance(found, Exception):
            raise found
        return found
