"""EC2 state-change detector: an instance of a protected Auto Scaling group stops or terminates
when nothing asked for it.

Auto Scaling takes instances out of service on purpose all the time; those are recognized by the
instance's lifecycle state in its group or a recent scaling activity naming it. Anything else is
an `instance_failure` of high severity.

Design: docs/detectors.md#ec2-state
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from msgspec import Meta, Struct, field

from core import clock
from core.contract import AffectedResource, ImpairmentDetected, ImpairmentType, Severity, Signal, make_impairment_id
from core.entry import lambda_entry
from core.model import Model
from core.observability import logger
from detectors.common import Envelope, Findings, ignore, load_settings, parse, publish
from detectors.resolve import InstanceOwner, out_of_service_on_purpose
from detectors.signals import EC2_IMPAIRING_STATES

SOURCE = "aws.ec2"
DETAIL_TYPE = "EC2 Instance State-change Notification"
IMPAIRING_STATES = EC2_IMPAIRING_STATES  # the rule sends only these
# A termination can wait on lifecycle hooks (heartbeat timeout up to 2 h) between the activity
# that asked for it and the state change; later activities than the change cannot have caused it
# (a minute of slack for clocks and the event's whole-second time).
ACTIVITY_LOOKBACK = timedelta(hours=2)
ACTIVITY_SLACK = timedelta(minutes=1)
# Activities that bring an instance into service name it too; they never ask for a stop.
_INTO_SERVICE = ("Launching", "Attaching", "Moving EC2 instance out of Standby")

# --- the event -------------------------------------------------------------------------------


class StateChangeDetail(Model, kw_only=True):
    instance_id: Annotated[str, Meta(pattern=r"^i-[0-9a-f]{8,17}$")] = field(name="instance-id")
    state: Literal["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]


class InstanceStateChangeEvent(Envelope, kw_only=True):
    detail: StateChangeDetail


# --- what the detector needs to know about the world ------------------------------------------


class Inventory(Protocol):
    def instances(self, instance_ids: list[str]) -> dict[str, InstanceOwner]: ...

    def scaling_activities(self, group_name: str, since: datetime) -> list[dict[str, Any]]: ...


# --- classification (pure but for the inventory) ----------------------------------------------


class Intent(Struct, frozen=True):
    """Why the group took the instance out itself, if it did."""

    on_purpose: bool
    reason: str


def requested(owner: InstanceOwner, inventory: Inventory, changed_at: datetime) -> Intent:
    """Did Auto Scaling take this instance out on purpose? Its lifecycle state says so while the
    group lists it; a recent activity naming it says so once it does not."""
    if out_of_service_on_purpose(owner.lifecycle_state):
        return Intent(True, f"its group is taking it out ({owner.lifecycle_state})")
    for activity in inventory.scaling_activities(owner.group, changed_at - ACTIVITY_LOOKBACK):  # type: ignore[arg-type]
        started = activity.get("StartTime")
        if isinstance(started, datetime) and started > changed_at + ACTIVITY_SLACK:
            continue  # began after the change: a reaction to it, not its cause
        description = str(activity.get("Description", ""))
        if description.startswith(_INTO_SERVICE):
            continue
        if owner.instance_id in description or owner.instance_id in str(activity.get("Cause", "")):
            return Intent(True, f"scaling activity {activity.get('ActivityId', '?')}: {description}")
    return Intent(False, "no scaling activity asked for it")


def classify(event: InstanceStateChangeEvent, inventory: Inventory, now: datetime) -> Findings:
    instance_id, state = event.detail.instance_id, event.detail.state
    if state not in IMPAIRING_STATES:
        return Findings.nothing(f"{state} is not an impairment")
    owner = inventory.instances([instance_id]).get(instance_id)
    if owner is None:
        return Findings.nothing("the instance is not protected (or no longer known)")
    if owner.group is None:
        return Findings.nothing("the instance belongs to no protected Auto Scaling group")
    intent = requested(owner, inventory, event.time)
    if intent.on_purpose:
        return Findings.nothing(f"stopped on purpose: {intent.reason}")

    workload = owner.owner.workload
    impairment = ImpairmentDetected(
        impairment_id=make_impairment_id(workload, SOURCE, instance_id, event.time),
        impairment_type=ImpairmentType.INSTANCE_FAILURE,
        severity=Severity.HIGH,
        workload=workload,
        affected_resources=[AffectedResource(resource_type="ec2:instance", resource_id=instance_id)],
        signal=Signal(source=SOURCE, id=instance_id, signal_time=event.time, name=f"{instance_id} {state}"),
        detected_at=max(now, event.time),
        description=f"Instance {instance_id} of Auto Scaling group {owner.group} is {state}: {intent.reason}",
        scope=dict(owner.owner.scope),
    )
    return Findings([impairment], [], f"instance is {state}")


# --- the handler -----------------------------------------------------------------------------


@lambda_entry
def handler(event: Any, context: Any, inventory: Inventory | None = None, publisher: Any = None) -> dict[str, Any]:
    """Entry point. Bad input is logged as a structured error and emits nothing; it is not
    raised, so an event that can never parse is not retried forever."""
    parsed, account, stop = parse(event, InstanceStateChangeEvent, SOURCE, (DETAIL_TYPE,), "EC2 instance state change")
    if stop is not None:
        return stop

    settings = load_settings("event_bus_name")
    logger.append_keys(instance_id=parsed.detail.instance_id, state=parsed.detail.state)
    if parsed.detail.state not in IMPAIRING_STATES:
        return ignore(f"{parsed.detail.state} is not an impairment")  # no look-up for the common case
    if inventory is None:
        from detectors.resolve import AwsResolver

        inventory = AwsResolver(settings.managed_tag, settings.configured_workloads(), account=account)
    findings = classify(parsed, inventory, clock.utc_now())
    return publish(findings, publisher, settings.event_bus_name, account)
