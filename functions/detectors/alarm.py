"""Alarm detector: a CloudWatch alarm of a protected workload changed state.

ALARM -> "Impairment Detected"; ALARM -> OK -> "Impairment Cleared" (same impairment id). What
the alarm is about comes from its tags, which resource is impaired from its metric's dimensions
(detectors/alarm_scope.py), and the workload tag must agree with those resources
(detectors/alarm_workload.py).

Design: docs/detectors.md#alarm
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
from msgspec import Meta, Struct

from core import aws, clock
from core.contract import (
    CLEARED,
    DETECTED,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    Signal,
    make_impairment_id,
)
from core.entry import lambda_entry
from core.errors import classify_client_error
from core.model import Model
from core.observability import emit, logger, metrics
from core.reads import instance_status
from detectors.alarm_scope import Fleet, affected, reason_values
from detectors.alarm_workload import Named, Owners, Refusal, check_workload, named, refusal_reason
from detectors.common import Envelope, Findings, load_settings, parse, publish
from detectors.resolve import Configured

SOURCE = "aws.cloudwatch"
DETAIL_TYPE = "CloudWatch Alarm State Change"
TAG_PREFIX = "recovery:"
# An alarm set to ALARM by a practice drill says so at the start of its state reason: the
# scheduled drills (infra/constructs/operations.py) and `recoveryctl drill` against a deployment.
DRILL_REASON_PREFIXES = ("[practice drill]", "recoveryctl drill")


def is_drill(reason: str) -> bool:
    """Whether an alarm state reason is a practice drill's (the prefixes above, case as written)."""
    return reason.lstrip().startswith(DRILL_REASON_PREFIXES)


# --- the event -------------------------------------------------------------------------------


class AlarmState(Model, kw_only=True):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""
    reasonData: str | None = None
    timestamp: datetime


class MetricStat(Model, kw_only=True):
    metric: dict[str, Any] = {}
    period: int | None = None
    stat: str | None = None


class MetricQuery(Model, kw_only=True):
    id: str | None = None
    expression: str | None = None
    metricStat: MetricStat | None = None
    returnData: bool | None = None


class AlarmConfiguration(Model, kw_only=True):
    description: str | None = None
    metrics: list[MetricQuery] = []
    alarmRule: str | None = None  # composite alarms


class AlarmDetail(Model, kw_only=True):
    alarmName: Annotated[str, Meta(min_length=1)]
    state: AlarmState
    previousState: AlarmState | None = None
    configuration: AlarmConfiguration = msgspec.field(default_factory=AlarmConfiguration)


class AlarmStateChangeEvent(Envelope, kw_only=True):
    detail: AlarmDetail


# --- what the detector needs to know about the world ------------------------------------------


class Inventory(Fleet, Owners, Protocol):
    def alarm_tags(self, alarm_arn: str) -> dict[str, str] | None: ...


class AwsInventory:
    """Inventory over the real APIs (paginated; errors classified), in the member account the
    alarm is in (None: this account). `managed_tag` and `configured_groups` (group -> workload,
    WORKLOAD_GROUPS) resolve resources the way the other detectors do."""

    def __init__(
        self,
        account: str | None = None,
        *,
        managed_tag: tuple[str, str] = ("recovery:managed", "true"),
        configured_groups: dict[str, str] | None = None,
    ) -> None:
        self.account = account
        self.managed_tag = managed_tag
        self.configured_groups = configured_groups or {}
        self._resolver: Any = None

    def resolver(self) -> Any:
        """One resolver for the whole alarm: the group read to find its impaired instances is the
        one their workload is resolved from (one DescribeAutoScalingGroups, no
        DescribeAutoScalingInstances for the instances it lists)."""
        if self._resolver is None:
            # Imported here: only an alarm that names such resources pays for them at cold start.
            from detectors.resolve import AwsResolver

            self._resolver = AwsResolver(self.managed_tag, self.configured_groups, account=self.account)
        return self._resolver

    def workloads_of(self, resources: list[Named]) -> dict[Named, str | None]:
        resolver = self.resolver()
        instances = [r.resource_id for r in resources if r.resource_type == "ec2:instance"]
        groups = [r.resource_id for r in resources if r.resource_type == "autoscaling:group"]
        instance_owners = resolver.instances(instances) if instances else {}
        group_owners = resolver.groups(groups) if groups else {}
        found: dict[Named, str | None] = {}
        for resource in resources:
            kind, rid = resource.resource_type, resource.resource_id
            if kind == "ec2:instance":
                found[resource] = instance_owners[rid].owner.workload if rid in instance_owners else None
            elif kind == "autoscaling:group":
                found[resource] = group_owners[rid].workload if rid in group_owners else None
            elif kind == "ecs:service":
                found[resource] = self._service_workload(rid)
            elif kind in ("rds:db", "rds:cluster"):
                found[resource] = self._database_workload(resource)
        return found

    def _service_workload(self, service_arn: str) -> str | None:
        from detectors.ecs import AwsInventory as EcsInventory

        owner = EcsInventory(self.managed_tag, account=self.account).service_owner(
            service_arn, service_arn.rsplit("/", 1)[-1]
        )
        return owner.workload if owner else None

    def _database_workload(self, database: Named) -> str | None:
        from detectors.rds import AwsInventory as RdsInventory

        if not database.arn:
            return None
        owner = RdsInventory(self.managed_tag, account=self.account).database_owner(database.arn, database.resource_id)
        return owner.workload if owner else None

    def alarm_tags(self, alarm_arn: str) -> dict[str, str] | None:
        # In the alarm's region: a Route 53 health check alarm is in us-east-1 whatever the
        # workload's region, and its state changes are forwarded there (infra/route53_alarms.py).
        client = aws.client("cloudwatch", account=self.account, region=_other_region(alarm_arn))
        try:
            tags = client.list_tags_for_resource(ResourceARN=alarm_arn)["Tags"]
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("ResourceNotFound", "ResourceNotFoundException", "InvalidParameterValue"):
                return None
            raise classify_client_error(exc, "cloudwatch:ListTagsForResource") from exc
        return {t["Key"]: t["Value"] for t in tags}

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]:
        return self.resolver().target_health(target_group_arn)

    def group_instances(self, group_name: str) -> list[str]:
        found = self.resolver().describe_groups([group_name])
        return [i["InstanceId"] for group in found for i in group.get("Instances", [])]

    def instance_statuses(self, instance_ids: list[str]) -> list[dict[str, Any]]:
        return instance_status.describe(aws.client("ec2", account=self.account), instance_ids)


def _other_region(arn: str) -> str | None:
    """The region of an ARN when it is not this function's own (None: this one's)."""
    parts = arn.split(":")
    region = parts[3] if len(parts) > 3 else ""
    return region if region and region != os.environ.get("AWS_REGION") else None


# --- classification (pure but for the inventory) ----------------------------------------------


class Outcome(Struct, frozen=True):
    detail_type: str | None
    model: Model | None
    reason: str
    refusal: Refusal | None = None

    def findings(self) -> Findings:
        """What to publish: the impairment detected or cleared, or nothing (the reason)."""
        if isinstance(self.model, ImpairmentDetected):
            return Findings([self.model], [], self.reason)
        if isinstance(self.model, ImpairmentCleared):
            return Findings([], [self.model], self.reason)
        return Findings.nothing(self.reason)


def classify(
    event: AlarmStateChangeEvent,
    inventory: Inventory,
    managed_tag: tuple[str, str],
    now: datetime,
    configured: Configured | None = None,
) -> Outcome:
    """What the alarm's state change means: an impairment detected or cleared, nothing (the
    reason), or a refusal. `configured`: the deployment's workloads and the resources they
    declare (None: none are configured)."""
    detail = event.detail
    alarm_arn = next((r for r in event.resources if ":alarm:" in r), None) or (
        f"arn:aws:cloudwatch:{event.region}:{event.account}:alarm:{detail.alarmName}"
    )
    state = detail.state.value
    previous = detail.previousState.value if detail.previousState else None
    if state == "INSUFFICIENT_DATA":
        return Outcome(None, None, "INSUFFICIENT_DATA is not an impairment")
    if state == "OK" and previous != "ALARM":
        return Outcome(None, None, f"{previous} -> OK clears nothing")

    tags = inventory.alarm_tags(alarm_arn)
    key, value = managed_tag
    if not tags or tags.get(key) != value:
        return Outcome(None, None, f"alarm is not managed (no {key}={value} tag)")
    workload = tags.get(f"{TAG_PREFIX}workload")
    if not workload:
        return Outcome(None, None, f"managed alarm has no {TAG_PREFIX}workload tag")

    if state == "OK":
        opened = detail.previousState.timestamp  # type: ignore[union-attr]
        cleared = ImpairmentCleared(
            impairment_id=make_impairment_id(workload, SOURCE, alarm_arn, opened),
            workload=workload,
            signal=Signal(source=SOURCE, id=alarm_arn, signal_time=opened, name=detail.alarmName),
            cleared_at=detail.state.timestamp,
            description=detail.state.reason[:2048],
        )
        return Outcome(CLEARED, cleared, "alarm returned to OK")

    impairment_type = _enum(
        ImpairmentType, tags.get(f"{TAG_PREFIX}impairment-type"), ImpairmentType.SERVICE_DEGRADATION
    )
    severity = _enum(Severity, tags.get(f"{TAG_PREFIX}severity"), Severity.HIGH)
    scope = {name: tags[f"{TAG_PREFIX}{tag}"] for name, tag in _SCOPE_TAGS if tags.get(f"{TAG_PREFIX}{tag}")}
    resources, metric_values, severity = affected(event, inventory, scope, severity)
    refusal = check_workload(workload, named(event, resources, scope), inventory, configured or Configured())
    if refusal is not None:
        return Outcome(None, None, refusal_reason(refusal), refusal)
    metric_values.update(reason_values(detail.state.reasonData))
    impairment = ImpairmentDetected(
        impairment_id=make_impairment_id(workload, SOURCE, alarm_arn, detail.state.timestamp),
        impairment_type=impairment_type,
        severity=severity,
        workload=workload,
        affected_resources=resources,
        signal=Signal(source=SOURCE, id=alarm_arn, signal_time=detail.state.timestamp, name=detail.alarmName),
        detected_at=max(now, detail.state.timestamp),
        description=(detail.configuration.description or detail.state.reason or detail.alarmName)[:2048],
        metrics=metric_values,
        scope=scope,
        drill=is_drill(detail.state.reason),
    )
    return Outcome(DETECTED, impairment, "alarm is in ALARM")


# Scope key -> the alarm tag (after "recovery:") that names it.
_SCOPE_TAGS = (
    ("auto_scaling_group", "auto-scaling-group"),
    ("target_group_arn", "target-group-arn"),
    ("ecs_cluster", "ecs-cluster"),
    ("ecs_service", "ecs-service"),
    ("eks_cluster", "eks-cluster"),
    ("eks_nodegroup", "eks-nodegroup"),
)


def _enum(kind: Any, raw: str | None, default: Any) -> Any:
    try:
        return kind(raw) if raw else default
    except ValueError:
        logger.warning("unknown tag value; using the default", value=raw, default=default.value)
        return default


# --- the handler -----------------------------------------------------------------------------


@lambda_entry
def handler(event: Any, context: Any, inventory: Inventory | None = None, publisher: Any = None) -> dict[str, Any]:
    """Entry point, on the path every detector shares (detectors/common.py): bad input is logged
    and counted, never raised (a retry could not fix it); what is not an impairment is ignored;
    a refusal is counted by reason; the rest is published."""
    parsed, account, stop = parse(event, AlarmStateChangeEvent, SOURCE, (DETAIL_TYPE,), "alarm state change event")
    if stop is not None:
        return stop

    settings = load_settings("event_bus_name")
    logger.append_keys(alarm=parsed.detail.alarmName, state=parsed.detail.state.value)
    if inventory is None:
        groups = settings.configured_workloads()
        inventory = AwsInventory(account, managed_tag=settings.managed_tag, configured_groups=groups)
    outcome = classify(parsed, inventory, settings.managed_tag, clock.utc_now(), settings.configured())
    if outcome.refusal is not None:
        return _refuse(parsed, outcome.refusal, outcome.reason)
    return publish(outcome.findings(), publisher, settings.event_bus_name, account)


def _refuse(event: AlarmStateChangeEvent, refusal: Refusal, reason: str) -> dict[str, Any]:
    """A managed alarm whose workload tag its resources contradict: nothing is published; a
    structured error (a mismatch is someone's mistake, or an attempt to dodge a workload's
    guardrails), counted in SignalsRefused in all and by reason."""
    alarm_arn = next((r for r in event.resources if ":alarm:" in r), event.detail.alarmName)
    log = logger.error if refusal.kind == "workload_mismatch" else logger.warning
    log(
        "refused an alarm whose workload tag its resources do not match",
        reason=reason,
        refusal=refusal.kind,
        alarm_arn=alarm_arn,
        tag_workload=refusal.tag_workload,
        resource=refusal.resource,
        resource_workload=refusal.resource_workload,
    )
    metrics.add_metric(name="SignalsRefused", unit="Count", value=1)
    emit("SignalsRefused", "Count", 1, reason=refusal.kind)
    return {"status": "refused", "reason": reason, "refusal": refusal.kind}
