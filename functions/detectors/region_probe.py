"""The region probe: a workload's region, watched from its standby region.

A regional failover must be decided without the impaired region, whose alarms, bus and detectors
may be as impaired as the workload. So every minute the standby region's stack describes each
workload's Auto Scaling group (its ECS service, for a workload without one) in the workload's
region; only what says that region's API is
impaired counts as a failure, and enough in a row publish one `region_impairment`.

Design: docs/detectors.md#region-probe
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from msgspec import Struct

from core import clock, runtime_config
from core.contract import (
    AffectedResource,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    Signal,
    make_impairment_id,
)
from core.errors import InvalidInput
from core.observability import logger, metrics
from core.runtime_config import RegionProbe
from detectors.common import Findings, load_settings, parse_schedule, publish

SOURCE = "recovery.region-probe"
TIMEOUTS = (3, 5)  # seconds to connect, to read: an impaired region costs a probe 8 s at most
MAX_PARALLEL = 10
# A probe item outlives its last failure by this long (nothing is left of a removed probe).
KEEP_SECONDS = 7 * 86400

# --- classification (pure) -------------------------------------------------------------------


class Verdict(StrEnum):
    HEALTHY = "healthy"  # the region answered
    REGION_FAILURE = "region_failure"  # no answer, or a server-side error: counts
    REFUSED = "refused"  # the region answered with a refusal: not counted (RegionProbeRefused)
    INCONCLUSIVE = "inconclusive"  # the call failed on this side: not counted (RegionProbeErrors)


class ProbeResult(Struct, frozen=True):
    verdict: Verdict
    error: str = ""  # "<code or exception>: <message>" when the call failed
    groups_found: int = 0


def _no_answer() -> tuple[type[Exception], ...]:
    """botocore's errors for a region that gave no (whole) answer. ProxyConnectionError is left out
    (our proxy failed, not the region), and so is HTTPClientError itself (an unexpected error in
    this client, though its subclasses ConnectionClosedError and ResponseStreamingError are in)."""
    from botocore import exceptions as e

    return (
        e.EndpointConnectionError,
        e.ConnectTimeoutError,
        e.SSLError,
        e.ConnectionClosedError,
        e.ResponseStreamingError,
        e.ReadTimeoutError,
    )


def _causes(exc: BaseException) -> list[BaseException]:
    found, cause = [], exc.__cause__
    while cause is not None and cause not in found:
        found.append(cause)
        cause = cause.__cause__
    return found


def _is_refusal(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) < 500


def classify(exc: BaseException | None, groups_found: int = 1) -> ProbeResult:
    """What one DescribeAutoScalingGroups (or DescribeServices) call says about its region."""
    if exc is None:
        return ProbeResult(Verdict.HEALTHY, groups_found=groups_found)
    from botocore.exceptions import ClientError

    if isinstance(exc, NoProbeClient):
        # This region's STS refused (a member role that is missing or does not trust us, throttling):
        # a refusal to fix; it failed or did not answer: this side's failure. Never the probed region's.
        refused = any(_is_refusal(cause) for cause in _causes(exc))
        return ProbeResult(Verdict.REFUSED if refused else Verdict.INCONCLUSIVE, f"no client: {exc}")
    if isinstance(exc, _no_answer()):
        return ProbeResult(Verdict.REGION_FAILURE, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        described = f"{error.get('Code', 'Unknown')} (HTTP {status}): {error.get('Message', '')}"
        return ProbeResult(Verdict.REGION_FAILURE if status >= 500 else Verdict.REFUSED, described)
    return ProbeResult(Verdict.INCONCLUSIVE, f"{type(exc).__name__}: {exc}")


def signal_of(probe: RegionProbe, first_failure_at: datetime) -> Signal:
    return Signal(
        source=SOURCE,
        id=f"region-probe/{probe.region}/{probe.workload}",
        signal_time=first_failure_at,
        name=f"{probe.workload} region probe from {probe.standby.region}",
    )


def impairment_id_of(probe: RegionProbe, first_failure_at: datetime) -> str:
    """The same for every probe of one series of failures (it starts at first_failure_at)."""
    signal = signal_of(probe, first_failure_at)
    return make_impairment_id(probe.workload, signal.source, signal.id, signal.signal_time)


def scope_of(probe: RegionProbe) -> dict[str, str]:
    """What the regional failover acts on, from the standby region: the standby group (also as
    auto_scaling_group, which verification checks there), the standby ECS service, the standby's
    database (a global database's secondary, or a read replica) and the Route 53 failover
    records. Only what the workload has: a plan's step for what it has not is skipped (its
    when_scope_has)."""
    standby = probe.standby
    scope = {"impaired_region": probe.region, "standby_region": standby.region}
    if probe.auto_scaling_group:
        scope["primary_auto_scaling_group"] = probe.auto_scaling_group
    if standby.auto_scaling_group and standby.desired_capacity:
        scope |= {
            "auto_scaling_group": standby.auto_scaling_group,
            "standby_auto_scaling_group": standby.auto_scaling_group,
            "standby_desired_capacity": str(standby.desired_capacity),
        }
    if standby.ecs_service and standby.ecs_service.desired_count:
        scope |= {
            "standby_ecs_cluster": standby.ecs_service.cluster,
            "standby_ecs_service": standby.ecs_service.service,
            "standby_ecs_desired_count": str(standby.ecs_service.desired_count),
        }
    if standby.target_group_arn:
        scope["target_group_arn"] = standby.target_group_arn
    if standby.global_database:
        scope |= {
            "global_cluster_id": standby.global_database.global_cluster_identifier,
            "standby_db_cluster_arn": standby.global_database.db_cluster_arn,
            "global_cluster_allow_data_loss": str(standby.global_database.allow_data_loss).lower(),
        }
    if standby.read_replica:
        scope["standby_db_instance"] = standby.read_replica.db_instance_identifier
    if probe.dns:
        scope |= {
            "dns_hosted_zone_id": probe.dns.hosted_zone_id,
            "dns_record_name": probe.dns.record_name,
            "dns_record_type": probe.dns.record_type,
            "dns_primary_set": probe.dns.primary_set_identifier,
            "dns_secondary_set": probe.dns.secondary_set_identifier,
        }
    return scope


def impairment_of(
    probe: RegionProbe, failures: int, first_failure_at: datetime, last_error: str, now: datetime
) -> ImpairmentDetected:
    """The region_impairment of a series of `failures` consecutive failed probes."""
    return ImpairmentDetected(
        impairment_id=impairment_id_of(probe, first_failure_at),
        impairment_type=ImpairmentType.REGION_IMPAIRMENT,
        severity=Severity.CRITICAL,
        workload=probe.workload,
        affected_resources=[
            AffectedResource(resource_type="region:workload", resource_id=f"{probe.region}/{probe.workload}")
        ],
        signal=signal_of(probe, first_failure_at),
        detected_at=max(now, first_failure_at),
        description=(
            f"Region {probe.region} looks impaired from {probe.standby.region}: {failures} consecutive failed probes "
            f"of {probe.workload}'s {probe.probed} there. Last error: {last_error}"
        )[:2048],
        metrics={"consecutive_failures": float(failures)},
        scope=scope_of(probe),
        account_id=probe.account_id,
    )


def cleared_of(probe: RegionProbe, impairment_id: str, first_failure_at: datetime, now: datetime) -> ImpairmentCleared:
    return ImpairmentCleared(
        impairment_id=impairment_id,
        workload=probe.workload,
        signal=signal_of(probe, first_failure_at),
        cleared_at=max(now, first_failure_at),
        description=f"Region {probe.region} answers {probe.standby.region}'s probe of {probe.workload} again.",
    )


# --- what the probe needs of the world -----------------------------------------------------


class RegionApi(Protocol):
    def describe_group(self, probe: RegionProbe) -> int:
        """How many groups DescribeAutoScalingGroups finds by the probe's group name (services
        DescribeServices finds by its ECS service, for a workload without a group), in the
        probe's region (and account); raises what the call raises."""
        ...


class ProbeStore(Protocol):
    def probe_failed(self, workload: str, region: str, tick: str, error: str, keep_seconds: int) -> dict[str, Any]: ...

    def get_probe(self, workload: str, region: str) -> dict[str, Any] | None: ...

    def probe_published(self, workload: str, region: str, first_failure_at: str, impairment_id: str) -> None: ...

    def reset_probe(self, workload: str, region: str, first_failure_at: str) -> bool: ...


class NoProbeClient(Exception):
    """The probe's client could not be made: a member account's credentials (STS, in this region:
    GetCallerIdentity, AssumeRole) failed. Whatever the cause, it is not the probed region's answer."""


class AwsRegionApi:
    """DescribeAutoScalingGroups (DescribeServices) in the probed region: one attempt, short timeouts."""

    def __init__(self) -> None:
        # Clients are thread-safe once made, but making them (and assuming a member role) is not:
        # the probes make theirs one at a time, then call in parallel.
        self._making = threading.Lock()

    def describe_group(self, probe: RegionProbe) -> int:
        from core import aws

        service = "autoscaling" if probe.auto_scaling_group else "ecs"
        with self._making:
            try:
                client = aws.client(
                    service, max_attempts=1, account=probe.account_id, region=probe.region, timeouts=TIMEOUTS
                )
            except Exception as exc:
                raise NoProbeClient(f"{type(exc).__name__}: {exc}") from exc
        if probe.auto_scaling_group:
            response = client.describe_auto_scaling_groups(AutoScalingGroupNames=[probe.auto_scaling_group])
            return len(response.get("AutoScalingGroups", []))
        assert probe.ecs_service is not None  # RegionProbe: one or the other
        # A service ECS does not find is listed under `failures` (MISSING), not an error: found 0.
        response = client.describe_services(cluster=probe.ecs_service.cluster, services=[probe.ecs_service.service])
        return len(response.get("services", []))


def call_all(probes: list[RegionProbe], api: RegionApi) -> list[ProbeResult]:
    """Every probe's call, in parallel (during an outage each may take its full timeout)."""

    def one(probe: RegionProbe) -> ProbeResult:
        try:
            return classify(None, api.describe_group(probe))
        except Exception as exc:  # noqa: BLE001 - classified, whatever it is: one probe never stops the others
            return classify(exc)

    if len(probes) == 1:
        return [one(probes[0])]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(probes))) as pool:
        return list(pool.map(one, probes))


# --- one probe's outcome: count, publish, clear ------------------------------------------------


Publish = Callable[[Findings, str | None], dict[str, Any]]


def settle(probe: RegionProbe, result: ProbeResult, store: ProbeStore, send: Publish, tick: str) -> dict[str, Any]:
    """Record one probe's result and publish what it changes; returns what happened."""
    context = {"workload": probe.workload, "region": probe.region, "standby_region": probe.standby.region}
    if result.verdict is Verdict.REFUSED:
        logger.error("region probe refused: not counted", error=result.error, **context)
        metrics.add_metric(name="RegionProbeRefused", unit="Count", value=1)
        return {"status": "refused", "error": result.error}
    if result.verdict is Verdict.INCONCLUSIVE:
        logger.error("region probe inconclusive: not counted", error=result.error, **context)
        metrics.add_metric(name="RegionProbeErrors", unit="Count", value=1)
        return {"status": "inconclusive", "error": result.error}

    if result.verdict is Verdict.HEALTHY:
        if not result.groups_found:
            logger.error(
                "region probe: the region answers but what it probes is not there", probed=probe.probed, **context
            )
            metrics.add_metric(name="RegionProbeErrors", unit="Count", value=1)
        state = store.get_probe(probe.workload, probe.region)
        if state is None:
            return {"status": "healthy"}
        first = str(state["first_failure_at"])
        outcome: dict[str, Any] = {"status": "healthy", "reset_after": int(state.get("failures", 0))}
        if state.get("impairment_id"):
            cleared = cleared_of(probe, str(state["impairment_id"]), datetime.fromisoformat(first), clock.utc_now())
            send(Findings([], [cleared], f"region {probe.region} answers again"), probe.account_id)
            metrics.add_metric(name="RegionRecovered", unit="Count", value=1)
            outcome |= {"status": "cleared", "impairment_id": cleared.impairment_id}
        store.reset_probe(probe.workload, probe.region, first)
        logger.info("region probe succeeded: failures reset", **context, **outcome)
        return outcome

    metrics.add_metric(name="RegionProbeFailed", unit="Count", value=1)
    state = store.probe_failed(probe.workload, probe.region, tick, result.error, KEEP_SECONDS)
    failures = int(state.get("failures", 0))
    first = str(state["first_failure_at"])
    logger.warning(
        "region probe failed", failures=failures, threshold=probe.failures_to_impair, error=result.error, **context
    )
    if failures < probe.failures_to_impair:
        return {"status": "failing", "failures": failures}
    if state.get("impairment_id"):
        return {"status": "impaired", "failures": failures, "impairment_id": state["impairment_id"]}
    impairment = impairment_of(
        probe, failures, datetime.fromisoformat(first), str(state.get("last_error") or result.error), clock.utc_now()
    )
    send(Findings([impairment], [], f"region {probe.region} impaired"), probe.account_id)
    metrics.add_metric(name="RegionImpaired", unit="Count", value=1)
    store.probe_published(probe.workload, probe.region, first, impairment.impairment_id)
    return {"status": "published", "failures": failures, "impairment_id": impairment.impairment_id}


def run(probes: list[RegionProbe], api: RegionApi, store: ProbeStore, send: Publish, tick: str) -> dict[str, Any]:
    """Every probe: called together, then settled one by one; an error settling one (the table,
    the bus) is logged and counted, and the others go on."""
    results = call_all(probes, api)
    outcomes: dict[str, Any] = {}
    for probe, result in zip(probes, results, strict=True):
        key = f"{probe.workload}@{probe.region}"
        try:
            outcomes[key] = settle(probe, result, store, send, tick)
        except Exception as exc:  # noqa: BLE001 - logged and counted: the other probes go on
            logger.exception("region probe not settled", workload=probe.workload, region=probe.region, error=str(exc))
            metrics.add_metric(name="RegionProbeErrors", unit="Count", value=1)
            outcomes[key] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    return outcomes


# --- the handler -----------------------------------------------------------------------------


def _probes() -> list[RegionProbe]:
    try:
        return list(runtime_config.load().probes)
    except InvalidInput as exc:
        logger.error("region probes not run: the recovery configuration does not validate", error=str(exc))
        metrics.add_metric(name="RegionProbeErrors", unit="Count", value=1)
        raise


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(
    event: Any, context: Any, api: RegionApi | None = None, store: ProbeStore | None = None, publisher: Any = None
) -> dict[str, Any]:
    """Entry point of the schedule. Input other than a scheduled event is logged and counted,
    never raised; a configuration that does not validate raises InvalidInput (a deployment
    error: every run would fail alike)."""
    parsed, stop = parse_schedule(event)
    if stop is not None:
        return stop
    probes = _probes()
    if not probes:
        return {"status": "idle", "reason": "no region to probe from this region"}
    settings = load_settings("event_bus_name", "table_name")
    if store is None:
        from core.store import RecoveryStore

        store = RecoveryStore(settings.table_name)

    def send(findings: Findings, account_id: str | None) -> dict[str, Any]:
        return publish(findings, publisher, settings.event_bus_name, account_id)

    outcomes = run(probes, api or AwsRegionApi(), store, send, parsed.id)
    metrics.add_metric(name="RegionsProbed", unit="Count", value=len(probes))
    statuses = [o["status"] for o in outcomes.values()]
    logger.info("region probes", probes=len(probes), outcomes=outcomes)
    return {
        "status": "published" if {"published", "cleared"} & set(statuses) else "probed",
        "detected": [o["impairment_id"] for o in outcomes.values() if o["status"] == "published"],
        "cleared": [o["impairment_id"] for o in outcomes.values() if o["status"] == "cleared"],
        "probes": outcomes,
    }
