"""Whether an alarm's workload tag agrees with what its resources belong to.

The tag alone does not choose the workload: a workload's guardrails (maintenance windows, rate
limits, flapping history) must not be bypassed by an alarm tagged with another workload's name.
The alarm's resources are resolved as the other detectors resolve them, and a contradiction is a
refusal (workload_mismatch, resource_unprotected, unknown_workload).

Design: docs/detectors.md#which-workload-an-alarm-is-about
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from msgspec import Struct

from core.contract import AffectedResource
from detectors.alarm_scope import ecs_service_arn, partition
from detectors.resolve import Configured, resource_key

if TYPE_CHECKING:
    from detectors.alarm import AlarmStateChangeEvent


class Named(Struct, frozen=True):
    """A resource an alarm names: its type and id as in the impairment, and its ARN when looking
    its workload up needs one (a database's tags are read by ARN)."""

    resource_type: str
    resource_id: str
    arn: str | None = None

    @property
    def key(self) -> str:
        return resource_key(self.resource_type, self.resource_id)


# The kinds of resource whose workload is looked up in AWS (an instance through its group, a
# group, an ECS service or a database by its tags); the others are resolved by the configuration.
LOOKED_UP = frozenset({"ec2:instance", "autoscaling:group", "ecs:service", "rds:db", "rds:cluster"})
# Kinds that always belong to a protected group, or carry the managed tag themselves, when they
# are protected at all: one that resolves to no workload is not protected.
GROUPED = frozenset({"ec2:instance", "autoscaling:group"})


class Owners(Protocol):
    def workloads_of(self, resources: list[Named]) -> dict[Named, str | None]:
        """The workload each resource (of a LOOKED_UP kind) belongs to by its own group or tags;
        None when it belongs to no protected workload (not managed, or gone)."""
        ...


class Refusal(Struct, frozen=True):
    """Why an alarm's impairment is not published although the alarm is managed: its workload
    tag does not match its resources (the rule is in this module's docstring)."""

    kind: Literal["workload_mismatch", "resource_unprotected", "unknown_workload"]
    tag_workload: str
    resource: str | None = None  # "<type>:<id>" of the resource that decided it
    resource_workload: str | None = None


def named(event: AlarmStateChangeEvent, resources: list[AffectedResource], scope: dict[str, str]) -> list[Named]:
    """Every resource the alarm names: the affected ones, then what its scope says a recovery
    acts on (group, target group, ECS service, database), once each."""
    found = [Named(r.resource_type, r.resource_id) for r in resources]
    if scope.get("auto_scaling_group"):
        found.append(Named("autoscaling:group", scope["auto_scaling_group"]))
    if scope.get("target_group_arn"):
        found.append(Named("elasticloadbalancing:targetgroup", scope["target_group_arn"]))
    if scope.get("ecs_cluster") and scope.get("ecs_service"):
        found.append(Named("ecs:service", ecs_service_arn(event, scope["ecs_cluster"], scope["ecs_service"])))
    if scope.get("eks_cluster") and scope.get("eks_nodegroup"):
        found.append(Named("eks:nodegroup", f"{scope['eks_cluster']}/{scope['eks_nodegroup']}"))
    if scope.get("db_instance"):
        found.append(Named("rds:db", scope["db_instance"]))
    if scope.get("db_cluster"):
        found.append(Named("rds:cluster", scope["db_cluster"]))
    unique: dict[str, Named] = {}
    for resource in found:
        if resource.resource_type in ("rds:db", "rds:cluster"):
            kind = resource.resource_type.split(":", 1)[1]
            arn = f"arn:{partition(event)}:rds:{event.region}:{event.account}:{kind}:{resource.resource_id}"
            resource = Named(resource.resource_type, resource.resource_id, arn)
        unique.setdefault(resource.key, resource)
    return list(unique.values())


def check_workload(
    tag_workload: str, resources: list[Named], inventory: Owners, configured: Configured
) -> Refusal | None:
    """None when the resources the alarm names agree with its workload tag; else why not (the
    rule is in the module's docstring). The configuration decides first for what it declares; an
    instance or a group, and an ECS service or database it does not declare, are looked up."""
    resolved: dict[str, frozenset[str]] = {}
    lookup: list[Named] = []
    for resource in resources:
        declared = configured.workloads_of(resource.resource_type, resource.resource_id)
        if resource.resource_type in GROUPED or (not declared and resource.resource_type in LOOKED_UP):
            lookup.append(resource)
        elif declared:
            resolved[resource.key] = declared
    for resource, workload in (inventory.workloads_of(lookup) if lookup else {}).items():
        if workload:
            resolved[resource.key] = frozenset({workload})
    for resource in resources:
        owners = resolved.get(resource.key)
        if owners and tag_workload not in owners:
            return Refusal("workload_mismatch", tag_workload, resource.key, ", ".join(sorted(owners)))
    if resolved:
        return None
    unprotected = next((r for r in resources if r.resource_type in GROUPED), None)
    if unprotected is not None:
        return Refusal("resource_unprotected", tag_workload, unprotected.key)
    if tag_workload not in configured.workloads:
        return Refusal("unknown_workload", tag_workload, resources[0].key if resources else None)
    return None


def refusal_reason(refusal: Refusal) -> str:
    if refusal.kind == "workload_mismatch":
        return (
            f"the alarm is tagged for workload {refusal.tag_workload} but {refusal.resource} belongs to "
            f"{refusal.resource_workload}"
        )
    if refusal.kind == "resource_unprotected":
        return (
            f"the alarm is tagged for workload {refusal.tag_workload} but {refusal.resource} belongs to no protected "
            "workload (no managed group holds it and it does not carry the managed tag)"
        )
    return (
        f"the alarm is tagged for workload {refusal.tag_workload}, which this deployment does not configure, and "
        "nothing it names belongs to a workload"
    )
