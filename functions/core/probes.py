"""PROBE#<workload> / REGION#<region>: consecutive failed probes of a workload's region, seen
from its standby region (detectors/region_probe.py; TTL: expiration)."""

from __future__ import annotations

import contextlib
from typing import Any

from core import clock
from core.dynamo import ATTEMPTS, ConditionFailed, Table
from core.errors import TransientError


def _key(workload: str, region: str) -> dict[str, str]:
    return {"pk": f"PROBE#{workload}", "sk": f"REGION#{region}"}


class RegionProbes:
    def __init__(self, table: Table) -> None:
        self.table = table

    def failed(self, workload: str, region: str, tick: str, error: str, keep_seconds: int) -> dict[str, Any]:
        """Count one failed probe of `workload`'s region and return the probe item as it now is.

        Atomic (an ADD on the item), and counted once per `tick` (the schedule event's id): a
        redelivered or retried tick finds its own id on the item and changes nothing. The first
        failure of a series sets first_failure_at, which stays until the series is reset. The
        item expires `keep_seconds` after its last failure (a probe removed from the configuration
        leaves nothing behind).

        Should the series be reset between the count and the read, again and again, the error is
        transient after a few attempts (the scheduled tick is retried), not an endless recursion."""
        for _ in range(ATTEMPTS):
            try:
                return self._count(workload, region, tick, error, keep_seconds)
            except ConditionFailed:
                counted = self.get(workload, region)  # this tick was counted already
                if counted is not None:
                    return counted
                # reset in between: count it as the first of a new series
        raise TransientError(
            f"the probe of {workload} in {region} was reset while counting {ATTEMPTS} times: retry",
            operation="dynamodb:UpdateItem",
            code="ProbeContended",
        )

    def _count(self, workload: str, region: str, tick: str, error: str, keep_seconds: int) -> dict[str, Any]:
        """The atomic ADD of one failure, unless this tick was counted (ConditionFailed)."""
        now = clock.utc_now()
        return self.table.update(
            _key(workload, region),
            UpdateExpression=(
                "ADD failures :one SET first_failure_at = if_not_exists(first_failure_at, :now), "
                "last_failure_at = :now, last_error = :error, last_tick = :tick, expiration = :expires"
            ),
            ConditionExpression="attribute_not_exists(last_tick) OR last_tick <> :tick",
            ExpressionAttributeValues={
                ":one": 1,
                ":now": now.isoformat(),
                ":error": error[:1024] or "unknown",
                ":tick": tick,
                ":expires": int(now.timestamp()) + keep_seconds,
            },
            ReturnValues="ALL_NEW",
        )

    def get(self, workload: str, region: str) -> dict[str, Any] | None:
        """The probe item of a workload's region: None while its probes succeed."""
        return self.table.get(_key(workload, region))

    def published(self, workload: str, region: str, first_failure_at: str, impairment_id: str) -> None:
        """Note that the impairment of this series of failures is on the bus (it is not published
        again, and a later success clears it). Only for the same series (first_failure_at)."""
        with contextlib.suppress(ConditionFailed):
            self.table.update(
                _key(workload, region),
                UpdateExpression="SET impairment_id = :id, published_at = :now",
                ConditionExpression="first_failure_at = :first",
                ExpressionAttributeValues={
                    ":id": impairment_id,
                    ":now": clock.utc_now().isoformat(),
                    ":first": first_failure_at,
                },
            )

    def reset(self, workload: str, region: str, first_failure_at: str) -> bool:
        """A probe succeeded: forget the series of failures that started at first_failure_at (a
        newer series is left alone). False when there was none left to forget."""
        try:
            self.table.delete(
                _key(workload, region),
                ConditionExpression="first_failure_at = :first",
                ExpressionAttributeValues={":first": first_failure_at},
            )
            return True
        except ConditionFailed:
            return False
