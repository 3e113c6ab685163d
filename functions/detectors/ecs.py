"""ECS detector: a task of a protected ECS service stopped because it failed.

The service scheduler stops tasks on purpose all the time (deployments, scale-in), people stop
them, and AWS reclaims Spot capacity: only failures (health checks, a crashed or killed
container, a task that could not start) are impairments.

Design: docs/detectors.md#ecs
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Protocol

from msgspec import Meta, Struct

from core import aws, clock
from core.contract import AffectedResource, ImpairmentDetected, ImpairmentType, Severity, Signal, make_impairment_id
from core.entry import lambda_entry
from core.errors import PermanentError
from core.model import AwareDatetime, Model
from core.observability import logger
from core.reads import tags
from detectors.common import Envelope, Findings, load_settings, parse, publish
from detectors.resolve import Owner, owner_from_tags

SOURCE = "aws.ecs"
DETAIL_TYPE = "ECS Task State Change"
SERVICE_GROUP_PREFIX = "service:"
_NOT_FAILURES = {
    "UserInitiated": "stopped by a StopTask call",
    "SpotInterruption": "Spot capacity reclaimed by AWS; the service scheduler replaces the task",
    "TerminationNotice": "task retired by AWS (Fargate maintenance); the service scheduler replaces the task",
}
_HEALTH_CHECK_FAILED = re.compile(r"failed (container|ELB) health checks?", re.IGNORECASE)
_OUT_OF_MEMORY = re.compile(r"^OutOfMemory", re.IGNORECASE)

# --- the event -------------------------------------------------------------------------------


class Container(Model, kw_only=True):
    name: str = ""
    exitCode: int | None = None
    reason: str | None = None
    healthStatus: str | None = None


class TaskStateChangeDetail(Model, kw_only=True):
    clusterArn: Annotated[str, Meta(pattern=r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:cluster/[A-Za-z0-9_-]{1,255}$")]
    taskArn: Annotated[str, Meta(pattern=r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task/\S+$")]
    lastStatus: Annotated[str, Meta(min_length=1)]
    group: str | None = None
    desiredStatus: str | None = None
    stopCode: str | None = None
    stoppedReason: str = ""
    stoppingAt: AwareDatetime | None = None
    stoppedAt: AwareDatetime | None = None
    healthStatus: str | None = None
    containers: list[Container] = []


class TaskStateChangeEvent(Envelope, kw_only=True):
    detail: TaskStateChangeDetail


def service_arn(cluster_arn: str, service: str) -> str:
    """arn:...:cluster/<cluster> + <service> -> arn:...:service/<cluster>/<service>."""
    prefix, cluster = cluster_arn.rsplit(":cluster/", 1)
    return f"{prefix}:service/{cluster}/{service}"


# --- what the detector needs to know about the world ------------------------------------------


class Inventory(Protocol):
    def service_owner(self, service_arn: str, service: str) -> Owner | None: ...


class AwsInventory:
    """The service's tags over the real API (ListTagsForResource; a gone service is no owner)."""

    def __init__(self, managed_tag: tuple[str, str], client: Any = None, account: str | None = None) -> None:
        self.managed_tag = managed_tag
        self._client = client
        self.account = account  # the member account the signal came from (None: this one)

    def service_owner(self, service_arn: str, service: str) -> Owner | None:
        client = self._client or aws.client("ecs", account=self.account)
        try:
            found = tags.of_ecs(client, service_arn)
        except PermanentError as error:
            if error.details.get("code") in (
                "ServiceNotFoundException",
                "ClusterNotFoundException",
                "InvalidParameterException",
            ):
                return None  # deleted since the task stopped: nothing left to recover
            raise
        return owner_from_tags(found, managed_tag=self.managed_tag, fallback_name=service)


# --- classification (pure but for the inventory) ----------------------------------------------


class Failure(Struct, frozen=True):
    impairment_type: ImpairmentType
    what: str
    exit_code: int | None = None


def failure(detail: TaskStateChangeDetail) -> Failure | str:
    """Why the task stopped, as an impairment; or, when it is not one, the reason it is not."""
    reason = detail.stoppedReason or detail.stopCode or "no reason given"
    if detail.stopCode is None and reason.startswith("Essential container in task exited"):
        detail = detail.model_copy(update={"stopCode": "EssentialContainerExited"})  # events before stop codes
    code = detail.stopCode or "no stop code"
    if detail.stopCode in _NOT_FAILURES:
        return f"{code}: {_NOT_FAILURES[detail.stopCode]}"  # type: ignore[index]
    if _HEALTH_CHECK_FAILED.search(reason):
        return Failure(ImpairmentType.SERVICE_DEGRADATION, reason)
    if detail.stopCode == "TaskFailedToStart":
        return Failure(ImpairmentType.SERVICE_DEGRADATION, f"failed to start: {reason}")
    if detail.stopCode != "EssentialContainerExited":
        return f"{code}: stopped on purpose ({reason})"  # deployments and scale-in by the service scheduler

    containers = detail.containers
    for c in containers:
        if c.reason and _OUT_OF_MEMORY.search(c.reason):
            return Failure(ImpairmentType.RESOURCE_EXHAUSTION, f"container {c.name}: {c.reason}", c.exitCode)
    for c in containers:  # the application's own exit code, before sidecars the stop then killed
        if c.exitCode is not None and 0 < c.exitCode <= 128:
            return Failure(ImpairmentType.APPLICATION_ERROR, f"container {c.name} exited with {c.exitCode}", c.exitCode)
    for c in containers:
        if c.healthStatus == "UNHEALTHY" or (c.exitCode is not None and c.exitCode > 128):
            state = "UNHEALTHY" if c.healthStatus == "UNHEALTHY" else "killed"
            return Failure(
                ImpairmentType.SERVICE_DEGRADATION,
                f"container {c.name} {state}, exit code {c.exitCode}",
                c.exitCode,
            )
    for c in containers:
        if c.exitCode is None and c.reason:
            return Failure(ImpairmentType.SERVICE_DEGRADATION, f"container {c.name} did not run: {c.reason}")
    return f"{code}: the essential container exited cleanly (exit code 0)"


def classify(event: TaskStateChangeEvent, inventory: Inventory, now: datetime) -> Findings:
    detail = event.detail
    if detail.lastStatus != "STOPPED":
        return Findings.nothing(f"task is {detail.lastStatus}, not STOPPED")
    if not (detail.group or "").startswith(SERVICE_GROUP_PREFIX):
        return Findings.nothing(f"task of no service (group {detail.group!r})")
    found = failure(detail)
    if isinstance(found, str):
        return Findings.nothing(found)

    service = detail.group.removeprefix(SERVICE_GROUP_PREFIX)  # type: ignore[union-attr]
    cluster = detail.clusterArn.rsplit("/", 1)[1]
    arn = service_arn(detail.clusterArn, service)
    owner = inventory.service_owner(arn, service)
    if owner is None:
        return Findings.nothing(f"ECS service {service} is not managed (or no longer exists)")

    task_id = detail.taskArn.rsplit("/", 1)[1]
    stopped_at = detail.stoppingAt or detail.stoppedAt or event.time
    impairment = ImpairmentDetected(
        impairment_id=make_impairment_id(owner.workload, SOURCE, detail.taskArn, stopped_at),
        impairment_type=found.impairment_type,
        severity=Severity.HIGH,
        workload=owner.workload,
        affected_resources=[
            AffectedResource(resource_type="ecs:service", resource_id=arn),
            AffectedResource(resource_type="ecs:task", resource_id=detail.taskArn),
        ],
        signal=Signal(
            source=SOURCE, id=detail.taskArn, signal_time=stopped_at, name=f"{service} task {task_id} {detail.stopCode}"
        ),
        detected_at=max(now, stopped_at),
        description=f"Task {task_id} of ECS service {service} ({cluster}) stopped: {found.what}"[:2048],
        metrics={"exit_code": float(found.exit_code)} if found.exit_code is not None else {},
        scope={"ecs_cluster": cluster, "ecs_service": service},
    )
    return Findings([impairment], [], found.what)


# --- the handler -----------------------------------------------------------------------------


@lambda_entry
def handler(event: Any, context: Any, inventory: Inventory | None = None, publisher: Any = None) -> dict[str, Any]:
    """Entry point. Bad input is logged as a structured error and emits nothing; it is not
    raised, so an event that can never parse is not retried forever."""
    parsed, account, stop = parse(event, TaskStateChangeEvent, SOURCE, (DETAIL_TYPE,), "ECS task state change")
    if stop is not None:
        return stop

    settings = load_settings("event_bus_name")
    detail = parsed.detail
    logger.append_keys(task_arn=detail.taskArn, group=detail.group, stop_code=detail.stopCode)
    findings = classify(parsed, inventory or AwsInventory(settings.managed_tag, account=account), clock.utc_now())
    return publish(findings, publisher, settings.event_bus_name, account)
