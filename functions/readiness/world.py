"""The facts the readiness checks judge, read from AWS once per run: each group, warm pool,
record listing and health check is described once however many plans need it, and a member
account's role is assumed once (core/aws.py keeps its credentials)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from core import aws
from core.errors import PermanentError, RecoveryError
from core.reads import groups, warm_pool

T = TypeVar("T")


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
