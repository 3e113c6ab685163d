"""Which protected workload a resource belongs to, read from tags.

A resource is protected when it, or the Auto Scaling group it belongs to, carries the managed tag;
its workload is its `recovery:workload` tag, else the configuration, else its group's name. One
function per resource kind, sharing one rule (`owner_from_tags`), so every detector resolves the
same way.

Design: docs/detectors.md#which-workload-a-resource-belongs-to
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from msgspec import Struct, field

from core import aws
from core.reads import groups as group_reads
from core.reads import target_health, zones
from core.reads.tags import as_dict, is_managed

WORKLOAD_TAG = "recovery:workload"
GROUP_NAME_TAG = "aws:autoscaling:groupName"  # set by Auto Scaling on the instances it launches
_WORKLOAD_MAX = 128  # the contract's limit
_INSTANCE_ID = re.compile(r"(?:^|:instance/)(i-[0-9a-f]{8,17})$")

# Lifecycle states in which Auto Scaling itself takes an instance out of service, on purpose:
# terminating it (scale-in, instance refresh, a replacement), detaching it, moving it to standby,
# or keeping it stopped in a warm pool.
_ON_PURPOSE_PREFIXES = ("Terminating", "Terminated", "Detaching", "Detached", "EnteringStandby", "Standby", "Warmed:")


def out_of_service_on_purpose(lifecycle_state: str | None) -> bool:
    """Whether an Auto Scaling lifecycle state means the group is taking the instance out itself."""
    return bool(lifecycle_state) and lifecycle_state.startswith(_ON_PURPOSE_PREFIXES)  # type: ignore[union-attr]


def instance_id_of(value: str) -> str | None:
    """The instance id in an instance id or instance ARN; None for anything else."""
    match = _INSTANCE_ID.search(value.strip())
    return match.group(1) if match else None


class Owner(Struct, frozen=True):
    """The protected workload a resource belongs to, and the workload resources it sits in."""

    workload: str
    scope: dict[str, str] = field(default_factory=dict)


def owner_from_tags(
    tags: Mapping[str, str],
    *,
    managed_tag: tuple[str, str],
    fallback_name: str,
    scope: Mapping[str, str] | None = None,
    configured: Mapping[str, str] | None = None,
) -> Owner | None:
    """The owner of a resource with these tags, or None when it did not opt in.

    The workload is the `recovery:workload` tag, else the configured workload of `fallback_name`
    (e.g. the group a workload of the deployment declares), else `fallback_name` itself.
    """
    if not is_managed(tags, managed_tag):
        return None
    workload = tags.get(WORKLOAD_TAG) or (configured or {}).get(fallback_name) or fallback_name
    return Owner(workload=workload[:_WORKLOAD_MAX], scope=dict(scope or {}))


def resource_key(resource_type: str, resource_id: str) -> str:
    """How the configuration names a resource a workload declares: its type and its id, an ARN
    reduced to what follows its resource type, so the functions' environment stays small:
    ("elasticloadbalancing:targetgroup", "arn:aws:...:targetgroup/web-api/73e2d6bc24d8a067")
    -> "elasticloadbalancing:targetgroup:web-api/73e2d6bc24d8a067"; ("ecs:service",
    "arn:aws:ecs:...:service/checkout/checkout-api") -> "ecs:service:checkout/checkout-api";
    ("rds:db", "orders-db") -> "rds:db:orders-db"."""
    rid = resource_id
    if rid.startswith("arn:") and rid.count(":") >= 5:
        rid = rid.split(":", 5)[5]
        rid = rid.split("/", 1)[1] if "/" in rid else rid
    return f"{resource_type}:{rid}"


class Configured(Struct, frozen=True):
    """What the deployment's configuration declares (WORKLOAD_RESOURCES, written by the stack):
    its workloads, and the resources each names besides its Auto Scaling group (which resolves
    through WORKLOAD_GROUPS): target group, ECS service, database, canaries, health checks."""

    workloads: frozenset[str] = frozenset()
    resources: Mapping[str, frozenset[str]] = field(default_factory=dict)  # resource_key -> workloads

    @classmethod
    def from_declared(cls, declared: Mapping[str, Iterable[str]]) -> Configured:
        """From {workload: [resource_key, ...]}; a resource two workloads declare belongs to both."""
        resources: dict[str, set[str]] = {}
        for workload, keys in declared.items():
            for key in keys:
                resources.setdefault(key, set()).add(workload)
        return cls(frozenset(declared), {k: frozenset(v) for k, v in resources.items()})

    def workloads_of(self, resource_type: str, resource_id: str) -> frozenset[str]:
        """The workloads that declare this resource (none: the configuration does not name it)."""
        return self.resources.get(resource_key(resource_type, resource_id), frozenset())


class ProtectedGroup(Struct, frozen=True):
    """An Auto Scaling group that carries the managed tag, as DescribeAutoScalingGroups shows it."""

    name: str
    arn: str
    owner: Owner
    instances: tuple[Mapping[str, Any], ...]  # InstanceId, HealthStatus, LifecycleState, AvailabilityZone
    target_group_arns: tuple[str, ...]
    availability_zones: tuple[str, ...]

    @property
    def workload(self) -> str:
        return self.owner.workload


class InstanceOwner(Struct, frozen=True):
    """A protected instance: its owner and, when its group still lists it, its place there."""

    instance_id: str
    owner: Owner
    group: str | None = None
    lifecycle_state: str | None = None  # None when no group lists the instance (any more)
    health_status: str | None = None
    availability_zone: str | None = None


def group_scope(group: Mapping[str, Any]) -> dict[str, str]:
    """The scope of an impairment in this group: the group, and its target group when it has one;
    for the group of an EKS managed node group (EKS tags it with its cluster and node group), the
    cluster, its ARN and the node group, so a zonal impairment of its nodes can shift the cluster
    away from the zone (redirect_zonal_shift's eks_cluster) and a node be replaced through EKS."""
    scope = {"auto_scaling_group": str(group["AutoScalingGroupName"])}
    target_groups = group.get("TargetGroupARNs") or []
    if len(target_groups) == 1:  # with several, which one is impaired is the signal's to say
        scope["target_group_arn"] = str(target_groups[0])
    tags = as_dict(group.get("Tags"))
    cluster, nodegroup = tags.get("eks:cluster-name"), tags.get("eks:nodegroup-name")
    arn = str(group.get("AutoScalingGroupARN") or "").split(":")
    if cluster and nodegroup and len(arn) > 4:  # arn:<partition>:autoscaling:<region>:<account>:...
        scope |= {
            "eks_cluster": cluster,
            "eks_nodegroup": nodegroup,
            "eks_cluster_arn": f"arn:{arn[1]}:eks:{arn[3]}:{arn[4]}:cluster/{cluster}",
        }
    return scope


def protected_group(
    group: Mapping[str, Any], managed_tag: tuple[str, str], configured: Mapping[str, str] | None = None
) -> ProtectedGroup | None:
    """A DescribeAutoScalingGroups item as a ProtectedGroup, or None when it is not managed."""
    name = str(group["AutoScalingGroupName"])
    owner = owner_from_tags(
        as_dict(group.get("Tags")),
        managed_tag=managed_tag,
        fallback_name=name,
        scope=group_scope(group),
        configured=configured,
    )
    if owner is None:
        return None
    return ProtectedGroup(
        name=name,
        arn=str(group.get("AutoScalingGroupARN") or name),
        owner=owner,
        instances=tuple(group.get("Instances") or ()),
        target_group_arns=tuple(group.get("TargetGroupARNs") or ()),
        availability_zones=tuple(group.get("AvailabilityZones") or ()),
    )


class AwsResolver:
    """Resolves resources to workloads over the real APIs.

    `configured` maps an Auto Scaling group name to the workload the deployment's configuration
    declares for it, so that a group without a `recovery:workload` tag still resolves to the
    same workload as its alarms.
    """

    def __init__(
        self,
        managed_tag: tuple[str, str],
        configured: Mapping[str, str] | None = None,
        *,
        autoscaling: Any = None,
        ec2: Any = None,
        elbv2: Any = None,
        account: str | None = None,
    ) -> None:
        self.managed_tag = managed_tag
        self.configured = dict(configured or {})
        self._clients = {"autoscaling": autoscaling, "ec2": ec2, "elbv2": elbv2}
        # The member account the signal came from (None: this one): the look-ups are made there.
        self.account = account
        # Group name -> its DescribeAutoScalingGroups item (None: no such group), as this resolver
        # read it. A resolver lives for one invocation: a detector that reads a group to find its
        # impaired instances, then resolves those instances' workload, reads the group once.
        self._groups_read: dict[str, dict[str, Any] | None] = {}

    def _client(self, service: str) -> Any:
        if self._clients.get(service) is None:
            self._clients[service] = aws.client(service, account=self.account)
        return self._clients[service]

    # --- Auto Scaling groups -----------------------------------------------------------------

    def protected_groups(self) -> list[ProtectedGroup]:
        """Every managed group: one paginated DescribeAutoScalingGroups filtered by the managed tag
        (the calls grow with the number of groups, never with their instances)."""
        found: list[ProtectedGroup] = []
        for group in group_reads.tagged(self._client("autoscaling"), *self.managed_tag):
            protected = protected_group(group, self.managed_tag, self.configured)
            if protected is not None:  # the filter already says so; the tags decide
                found.append(protected)
        return found

    def describe_groups(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The groups among these names that exist, as DescribeAutoScalingGroups shows them, each
        read at most once by this resolver."""
        wanted = sorted(set(names))
        unread = [n for n in wanted if n not in self._groups_read]
        if unread:
            described = group_reads.describe_many(self._client("autoscaling"), unread)
            found = {g["AutoScalingGroupName"]: g for g in described}
            self._groups_read.update({n: found.get(n) for n in unread})
        return [g for g in (self._groups_read[n] for n in wanted) if g is not None]

    def groups(self, names: Iterable[str]) -> dict[str, ProtectedGroup]:
        """The managed groups among these names (absent and unmanaged groups are left out)."""
        found: dict[str, ProtectedGroup] = {}
        for group in self.describe_groups(names):
            protected = protected_group(group, self.managed_tag, self.configured)
            if protected is not None:
                found[protected.name] = protected
        return found

    def scaling_activities(self, group_name: str, since: datetime) -> list[dict[str, Any]]:
        """The group's scaling activities that started at or after `since`, newest first
        (DescribeScalingActivities lists newest first, so paging stops at the first older one)."""
        activities: list[dict[str, Any]] = []
        for page in aws.pages(
            self._client("autoscaling"),
            "describe_scaling_activities",
            AutoScalingGroupName=group_name,
            PaginationConfig={"PageSize": 100},
        ):
            for activity in page.get("Activities", []):
                started = activity.get("StartTime")
                if isinstance(started, datetime) and started < since:
                    return activities
                activities.append(activity)
        return activities

    # --- EC2 instances -----------------------------------------------------------------------

    def instances(self, instance_ids: Iterable[str]) -> dict[str, InstanceOwner]:
        """The protected instances among these ids, with their group and lifecycle state.

        DescribeAutoScalingInstances (50 ids a call) says which group lists each instance; the
        rest are looked up by their tags (DescribeTags, which also answers for an instance
        terminated within the hour, unlike DescribeInstances' not-found error).
        """
        ids = sorted({i for i in instance_ids if i})
        memberships = self._listed(ids)
        unlisted = [i for i in ids if i not in memberships]
        if unlisted:
            memberships.update(group_reads.memberships(self._client("autoscaling"), unlisted))
        loose = [i for i in ids if i not in memberships]
        instance_tags = self.instance_tags(loose) if loose else {}
        group_of = {i: str(m["AutoScalingGroupName"]) for i, m in memberships.items()}
        group_of.update({i: t[GROUP_NAME_TAG] for i, t in instance_tags.items() if t.get(GROUP_NAME_TAG)})
        managed = self.groups(group_of.values()) if group_of else {}

        owners: dict[str, InstanceOwner] = {}
        for instance_id in ids:
            membership = memberships.get(instance_id)
            group_name = group_of.get(instance_id)
            if group_name is not None:
                group = managed.get(group_name)
                if group is None:  # the group is not managed, or is gone (deleting it is on purpose)
                    continue
                owners[instance_id] = InstanceOwner(
                    instance_id=instance_id,
                    owner=group.owner,
                    group=group_name,
                    lifecycle_state=membership.get("LifecycleState") if membership else None,
                    health_status=membership.get("HealthStatus") if membership else None,
                    availability_zone=membership.get("AvailabilityZone") if membership else None,
                )
                continue
            owner = owner_from_tags(
                instance_tags.get(instance_id, {}),
                managed_tag=self.managed_tag,
                fallback_name=instance_tags.get(instance_id, {}).get("Name") or instance_id,
            )
            if owner is not None:
                owners[instance_id] = InstanceOwner(instance_id=instance_id, owner=owner)
        return owners

    def _listed(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        """instance id -> its membership, for the instances a group already read lists (a group's
        Instances carry what DescribeAutoScalingInstances answers: zone, lifecycle, health)."""
        wanted = set(instance_ids)
        return {
            i["InstanceId"]: {**i, "AutoScalingGroupName": name}
            for name, group in self._groups_read.items()
            if group is not None
            for i in group.get("Instances", [])
            if i["InstanceId"] in wanted
        }

    def instance_tags(self, instance_ids: list[str]) -> dict[str, dict[str, str]]:
        """instance id -> its tags, for the instances EC2 still knows (200 ids a filter)."""
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(instance_ids), 200):
            for page in aws.pages(
                self._client("ec2"),
                "describe_tags",
                Filters=[
                    {"Name": "resource-type", "Values": ["instance"]},
                    {"Name": "resource-id", "Values": instance_ids[start : start + 200]},
                ],
                PaginationConfig={"PageSize": 1000},
            ):
                for tag in page.get("Tags", []):
                    found.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag.get("Value", "")
        return found

    def availability_zone(self, zone: str) -> tuple[str, str] | None:
        """(zone name, zone id) of an Availability Zone given by either; None if EC2 knows neither."""
        found = zones.find(self._client("ec2"), zone)
        return (found["name"], found["id"]) if found else None

    # --- load balancing ----------------------------------------------------------------------

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]:
        """DescribeTargetHealth of one target group."""
        return target_health.describe(self._client("elbv2"), target_group_arn)
