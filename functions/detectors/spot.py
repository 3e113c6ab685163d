"""Spot detector: EC2 warns that a Spot Instance of a protected Auto Scaling group is at risk.

"EC2 Instance Rebalance Recommendation" (the instance is at elevated risk of interruption) and
"EC2 Spot Instance Interruption Warning" (EC2 stops, hibernates or terminates it, two minutes
later), source aws.ec2. Either is an `instance_failure` about the instance, scoped to its group:
medium for a recommendation (a plan may replace the instance ahead of time), high for a warning.
The id comes from the instance, the kind of warning and the event's time: a redelivery is the
same impairment, and the warning that follows a recommendation another one of the same instance.

Ignored: an instance of no protected group (or one AWS no longer knows), and one its group is
already taking out (Terminating*, Detaching, Standby, Warmed:*).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from msgspec import Meta, field

from core import clock
from core.contract import AffectedResource, ImpairmentDetected, ImpairmentType, Severity, Signal, make_impairment_id
from core.entry import lambda_entry
from core.model import Model
from core.observability import logger
from detectors.common import Envelope, Findings, load_settings, parse, publish
from detectors.resolve import InstanceOwner, out_of_service_on_purpose

SOURCE = "aws.ec2"
REBALANCE = "EC2 Instance Rebalance Recommendation"
INTERRUPTION = "EC2 Spot Instance Interruption Warning"
DETAIL_TYPES = (REBALANCE, INTERRUPTION)
# detail type -> (severity, what the id is derived from besides the instance)
_KINDS = {REBALANCE: (Severity.MEDIUM, "rebalance"), INTERRUPTION: (Severity.HIGH, "interruption")}


class SpotDetail(Model, kw_only=True):
    instance_id: Annotated[str, Meta(pattern=r"^i-[0-9a-f]{8,17}$")] = field(name="instance-id")
    # Interruption warnings only.
    instance_action: Literal["hibernate", "stop", "terminate"] | None = field(default=None, name="instance-action")


class SpotEvent(Envelope, kw_only=True):
    detail: SpotDetail


class Inventory(Protocol):
    def instances(self, instance_ids: list[str]) -> dict[str, InstanceOwner]: ...


def _description(event: SpotEvent, group: str) -> str:
    instance_id = event.detail.instance_id
    if event.detail_type == REBALANCE:
        return f"Spot instance {instance_id} of Auto Scaling group {group} is at elevated risk of interruption"
    action = event.detail.instance_action or "interrupt"
    return f"EC2 will {action} Spot instance {instance_id} of Auto Scaling group {group} (interruption warning)"


def classify(event: SpotEvent, inventory: Inventory, now: datetime) -> Findings:
    instance_id = event.detail.instance_id
    owner = inventory.instances([instance_id]).get(instance_id)
    if owner is None:
        return Findings.nothing("the instance is not protected (or no longer known)")
    if owner.group is None:
        return Findings.nothing("the instance belongs to no protected Auto Scaling group")
    if out_of_service_on_purpose(owner.lifecycle_state):
        return Findings.nothing(f"its group is already taking it out ({owner.lifecycle_state})")

    severity, kind = _KINDS[event.detail_type]
    workload = owner.owner.workload
    impairment = ImpairmentDetected(
        impairment_id=make_impairment_id(workload, SOURCE, f"{instance_id}#{kind}", event.time),
        impairment_type=ImpairmentType.INSTANCE_FAILURE,
        severity=severity,
        workload=workload,
        affected_resources=[AffectedResource(resource_type="ec2:instance", resource_id=instance_id)],
        signal=Signal(source=SOURCE, id=instance_id, signal_time=event.time, name=f"{instance_id} spot {kind}"),
        detected_at=max(now, event.time),
        description=_description(event, owner.group),
        scope=dict(owner.owner.scope),
    )
    return Findings([impairment], [], f"spot {kind} of a protected instance")


@lambda_entry
def handler(event: Any, context: Any, inventory: Inventory | None = None, publisher: Any = None) -> dict[str, Any]:
    """Entry point: bad input is logged and counted, never raised; the rest classified and
    published (or ignored) on the path every detector shares."""
    parsed, account, stop = parse(event, SpotEvent, SOURCE, DETAIL_TYPES, "EC2 Spot instance warning")
    if stop is not None:
        return stop

    settings = load_settings("event_bus_name")
    logger.append_keys(instance_id=parsed.detail.instance_id, warning=parsed.detail_type)
    if inventory is None:
        from detectors.resolve import AwsResolver

        inventory = AwsResolver(settings.managed_tag, settings.configured_workloads(), account=account)
    return publish(classify(parsed, inventory, clock.utc_now()), publisher, settings.event_bus_name, account)
