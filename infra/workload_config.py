"""A protected workload's configuration (a part of infra/config.py's): the parts of it this system
watches and may act on, its alarms, its DNS failover records and its standby in another region."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.arns import LoadBalancerArn, TargetGroupArn
from core.contract import Severity
from core.guardrails import Maintenance
from core.runtime_config import (
    REGION_PATTERN,
    ReadinessDns,
    ReadinessTarget,
    RegionProbe,
    StandbyGlobalDatabase,
    StandbyReadReplica,
)
from detectors import region_probe
from detectors.resolve import resource_key


class AlarmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    threshold: float = Field(default=1, ge=0)
    evaluation_periods: int = Field(default=2, ge=1, le=100)
    severity: Severity = Severity.HIGH


# Each alarm kind's defaults; what a workload gives for a kind overrides them field by field.
# threshold is in the unit of the kind (see the README's table): a count, a percentage, seconds,
# standard deviations (the anomaly band's width) or GiB (free storage).
ALARM_DEFAULTS: dict[str, dict[str, Any]] = {
    "unhealthy_hosts": {"threshold": 1, "evaluation_periods": 2, "severity": "high"},
    "healthy_hosts": {"threshold": 1, "evaluation_periods": 2, "severity": "high"},
    "status_check": {"threshold": 1, "evaluation_periods": 2, "severity": "high"},
    "cpu": {"threshold": 90, "evaluation_periods": 3, "severity": "medium"},
    "memory": {"threshold": 90, "evaluation_periods": 3, "severity": "medium"},
    "disk": {"threshold": 90, "evaluation_periods": 3, "severity": "medium"},
    "error_rate": {"threshold": 5, "evaluation_periods": 3, "severity": "high"},
    "latency_p99": {"threshold": 2, "evaluation_periods": 3, "severity": "medium"},
    "latency_anomaly": {"threshold": 2, "evaluation_periods": 3, "severity": "medium"},
    "route53_health_check": {"threshold": 1, "evaluation_periods": 1, "severity": "high"},
    "canary": {"threshold": 100, "evaluation_periods": 1, "severity": "high"},
    "ecs_running_tasks": {"threshold": 1, "evaluation_periods": 3, "severity": "high"},
    "db_free_storage": {"threshold": 5, "evaluation_periods": 2, "severity": "high"},
    "eks_failed_nodes": {"threshold": 1, "evaluation_periods": 2, "severity": "high"},
}


class WorkloadAlarms(BaseModel):
    """The standard alarms of a workload, each with its own defaults (ALARM_DEFAULTS). An alarm
    is created only when the workload has what it watches (a load balancer, a database, ...)."""

    model_config = ConfigDict(extra="forbid")

    unhealthy_hosts: AlarmSettings
    healthy_hosts: AlarmSettings
    status_check: AlarmSettings
    cpu: AlarmSettings
    memory: AlarmSettings
    disk: AlarmSettings
    error_rate: AlarmSettings
    latency_p99: AlarmSettings
    latency_anomaly: AlarmSettings
    route53_health_check: AlarmSettings
    canary: AlarmSettings
    ecs_running_tasks: AlarmSettings
    db_free_storage: AlarmSettings
    eks_failed_nodes: AlarmSettings

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for kind, defaults in ALARM_DEFAULTS.items():
            given = merged.get(kind)
            if given is None:
                merged[kind] = dict(defaults)
            elif isinstance(given, dict):
                merged[kind] = {**defaults, **given}
        return merged

    @model_validator(mode="after")
    def _band(self) -> WorkloadAlarms:
        if self.latency_anomaly.threshold <= 0:
            raise ValueError("latency_anomaly.threshold is the band's width in standard deviations: more than 0")
        return self


class CloudWatchAgent(BaseModel):
    """The CloudWatch agent on the group's instances, configured to append the
    AutoScalingGroupName dimension and aggregate by it (aggregation_dimensions
    [["AutoScalingGroupName"]]), so that memory and disk can be watched per group."""

    model_config = ConfigDict(extra="forbid")

    metrics_collection_interval: Literal[10, 20, 30, 60] = Field(
        default=60, description="seconds, as in the agent's configuration; under 60 the metrics are high-resolution"
    )


class EcsService(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: str = Field(min_length=1, max_length=255)
    service: str = Field(min_length=1, max_length=255)


class EksNodeGroup(BaseModel):
    """An EKS managed node group of the workload: its nodes are replaced and scaled through it
    (docs/eks.md); the stack gives the recovery's roles access to the cluster."""

    model_config = ConfigDict(extra="forbid")

    cluster: str = Field(pattern=r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
    nodegroup: str = Field(min_length=1, max_length=63)


class Database(BaseModel):
    """An RDS DB instance (Multi-AZ) or an Aurora / Multi-AZ DB cluster: exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    db_instance_identifier: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
    db_cluster_identifier: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$")

    @model_validator(mode="after")
    def _one(self) -> Database:
        if bool(self.db_instance_identifier) == bool(self.db_cluster_identifier):
            raise ValueError("give exactly one of db_instance_identifier and db_cluster_identifier")
        return self


class DnsFailover(BaseModel):
    """Route 53 failover (or weighted) records of the workload: primary and standby."""

    model_config = ConfigDict(extra="forbid")

    hosted_zone_id: str = Field(pattern=r"^Z[A-Z0-9]{1,31}$")
    record_name: str = Field(min_length=1, max_length=255)
    record_type: Literal["A", "AAAA", "CNAME"] = "A"
    primary_set_identifier: str = Field(min_length=1, max_length=128)
    secondary_set_identifier: str = Field(min_length=1, max_length=128)
    health_check_id: str | None = None


# Commercial, GovCloud and China partitions' region names: "us-east-1", "us-gov-west-1", "cn-north-1".
_REGION = REGION_PATTERN


class StandbyEcsService(BaseModel):
    """The standby's ECS service: scaled to `desired_count` before traffic moves to it."""

    model_config = ConfigDict(extra="forbid")

    cluster: str = Field(min_length=1, max_length=255)
    service: str = Field(min_length=1, max_length=255, description="it carries the managed tag")
    desired_count: int = Field(ge=1, le=10000, description="what the standby service is scaled to on failover")


class RegionalStandby(BaseModel):
    """Where a workload fails over to when its region is impaired: capacity kept in a standby
    region (a group, an ECS service, or both). The standby region's stack probes the workload's
    region every minute (detectors/region_probe.py) and, after `probe_failures` consecutive failed
    probes, reports a region_impairment that the regional failover plan acts on, from the standby
    region."""

    model_config = ConfigDict(extra="forbid")

    region: str = Field(
        pattern=_REGION,
        description="the standby region: one of `regions` (a standby's workload may stand by in the primary)",
    )
    auto_scaling_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="the standby group in that region (it carries the managed tag)",
    )
    desired_capacity: int | None = Field(
        default=None, ge=1, le=10000, description="what the standby group is scaled to on failover"
    )
    ecs_service: StandbyEcsService | None = Field(
        default=None, description="the standby ECS service in that region, for a workload whose compute is ECS"
    )
    target_group_arn: TargetGroupArn | None = Field(default=None, description="the standby group's target group")
    probe_failures: int = Field(
        default=3, ge=1, le=60, description="consecutive failed probes (one a minute) before the region is impaired"
    )
    # The data tier: an Aurora global database's secondary made the writer, or (without Aurora) a
    # cross-region read replica promoted, before traffic moves (the regional failover plan).
    global_database: StandbyGlobalDatabase | None = None
    read_replica: StandbyReadReplica | None = None

    @model_validator(mode="after")
    def _capacity(self) -> RegionalStandby:
        if bool(self.auto_scaling_group) != bool(self.desired_capacity):
            raise ValueError("auto_scaling_group and desired_capacity go together (the standby group and its size)")
        if not (self.auto_scaling_group or self.ecs_service):
            raise ValueError("a standby needs an auto_scaling_group (with desired_capacity) or an ecs_service")
        return self

    @model_validator(mode="after")
    def _tg_in_region(self) -> RegionalStandby:
        if self.target_group_arn and self.target_group_arn.split(":")[3] != self.region:
            raise ValueError(
                f"target_group_arn is in region {self.target_group_arn.split(':')[3]}, "
                f"not in the standby region {self.region}"
            )
        return self

    @model_validator(mode="after")
    def _one_database_in_region(self) -> RegionalStandby:
        if self.global_database and self.read_replica:
            raise ValueError(
                "give global_database or read_replica, not both: a workload's database is one or the other"
            )
        arn = self.global_database.db_cluster_arn if self.global_database else None
        if arn and arn.split(":")[3] != self.region:
            raise ValueError(
                f"global_database.db_cluster_arn is in region {arn.split(':')[3]}, not in the standby region "
                f"{self.region}: it must be the global database's secondary there"
            )
        return self


class Workload(BaseModel):
    """A protected workload: the parts of it this system watches and may act on. At least one of
    an Auto Scaling group, an ECS service or a database."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    account_id: str | None = Field(
        default=None,
        pattern=r"^\d{12}$",
        description="the member account the workload runs in (accounts.members); none: the central account",
    )
    auto_scaling_group: str | None = Field(default=None, min_length=1, max_length=255)
    target_group_arn: TargetGroupArn | None = None
    load_balancer_arn: LoadBalancerArn | None = None
    ecs_service: EcsService | None = None
    database: Database | None = None
    eks: EksNodeGroup | None = None
    dns: DnsFailover | None = None
    route53_health_checks: list[str] = Field(default_factory=list)
    canaries: list[str] = Field(default_factory=list, description="CloudWatch Synthetics canary names")
    cloudwatch_agent: CloudWatchAgent | None = Field(
        default=None, description="set when the group's instances run the CloudWatch agent: memory and disk alarms"
    )
    alarms: WorkloadAlarms = Field(default_factory=WorkloadAlarms)
    maintenance: Maintenance = Field(
        default_factory=Maintenance, description="maintenance windows and blocked dates: no automatic action"
    )
    region: str | None = Field(
        default=None,
        pattern=_REGION,
        description="the region the workload runs in, one of `regions` (default: the primary): its alarms are there",
    )
    standby: RegionalStandby | None = Field(
        default=None, description="standby capacity in another region, failed over to when this region is impaired"
    )
    rto_seconds: int | None = Field(
        default=None,
        ge=1,
        le=7 * 86400,
        description="the workload's recovery time objective: a recovery whose MTTR exceeds it is counted and alarmed",
    )

    @model_validator(mode="after")
    def _something(self) -> Workload:
        if not (self.auto_scaling_group or self.ecs_service or self.database or self.eks):
            raise ValueError("a workload needs an auto_scaling_group, an ecs_service, a database or an eks node group")
        return self

    @model_validator(mode="after")
    def _pair(self) -> Workload:
        if bool(self.target_group_arn) != bool(self.load_balancer_arn):
            raise ValueError("target_group_arn and load_balancer_arn go together (the alarm needs both)")
        return self

    @model_validator(mode="after")
    def _probed(self) -> Workload:
        if self.standby and not (self.auto_scaling_group or self.ecs_service):
            raise ValueError(
                "standby needs the workload's auto_scaling_group or ecs_service (what its region's probe describes: "
                "the group if it has one, else the service)"
            )
        return self

    @model_validator(mode="after")
    def _agent(self) -> Workload:
        if self.cloudwatch_agent and not self.auto_scaling_group:
            raise ValueError("cloudwatch_agent needs the auto_scaling_group whose instances run the agent")
        return self

    @property
    def load_balancer_type(self) -> str | None:
        """ "app" (Application Load Balancer) or "net" (Network Load Balancer)."""
        return self.load_balancer_arn.split(":loadbalancer/", 1)[1].split("/", 1)[0] if self.load_balancer_arn else None

    @property
    def health_check_ids(self) -> list[str]:
        """The Route 53 health checks to watch: those listed, and the DNS failover's own."""
        ids = list(dict.fromkeys(self.route53_health_checks))
        if self.dns and self.dns.health_check_id and self.dns.health_check_id not in ids:
            ids.append(self.dns.health_check_id)
        return ids

    @property
    def declared_resources(self) -> list[str]:
        """The resources the workload declares besides its group, as the alarm detector names them
        (detectors.resolve.resource_key): its target group, ECS service, database, canaries and
        health checks. An alarm about one of them must be tagged with this workload."""
        keys = []
        if self.target_group_arn:
            keys.append(resource_key("elasticloadbalancing:targetgroup", self.target_group_arn))
        if self.ecs_service:
            keys.append(f"ecs:service:{self.ecs_service.cluster}/{self.ecs_service.service}")
        if self.database and self.database.db_instance_identifier:
            keys.append(resource_key("rds:db", self.database.db_instance_identifier))
        if self.database and self.database.db_cluster_identifier:
            keys.append(resource_key("rds:cluster", self.database.db_cluster_identifier))
        if self.eks:
            keys.append(resource_key("eks:nodegroup", f"{self.eks.cluster}/{self.eks.nodegroup}"))
        keys += [resource_key("synthetics:canary", c) for c in self.canaries]
        keys += [resource_key("route53:healthcheck", h) for h in self.health_check_ids]
        return keys

    @property
    def target_group_dimension(self) -> str | None:
        return self.target_group_arn.split(":", 5)[5] if self.target_group_arn else None

    @property
    def load_balancer_dimension(self) -> str | None:
        return self.load_balancer_arn.split(":", 5)[5].removeprefix("loadbalancer/") if self.load_balancer_arn else None


def declared_scope_keys(w: Workload) -> tuple[str, ...]:
    """The scope keys the impairments of a workload may carry, from what it declares: a plan that
    matches only impairments with another key (match.scope_has: an EKS node's plan), or a step
    that runs only for one (when_scope_has), is not judged for it."""
    keys = {"availability_zone"}  # a zone's impairment of it (a region's is its standby's: scope_of)
    if w.auto_scaling_group:
        keys.add("auto_scaling_group")
    if w.target_group_arn:
        keys.add("target_group_arn")
    if w.load_balancer_arn:
        keys.add("load_balancer_arn")
    if w.ecs_service:
        keys |= {"ecs_cluster", "ecs_service"}
    if w.database:
        keys.add("db_instance" if w.database.db_instance_identifier else "db_cluster")
    if w.eks:
        # a node's impairment names its group when the node group has only one (detectors/eks.py)
        keys |= {"eks_cluster", "eks_nodegroup", "eks_node", "auto_scaling_group"}
    return tuple(sorted(keys))


def readiness_targets(workloads: Sequence[Workload], probes: Sequence[RegionProbe]) -> list[ReadinessTarget]:
    """The workloads whose plans the check judges: this region's, with their groups and DNS
    records, and those this region stands by for, with their standby groups here."""
    targets = []
    for w in workloads:
        dns = None
        if w.dns is not None:
            checks = tuple(
                dict.fromkeys([*([w.dns.health_check_id] if w.dns.health_check_id else []), *w.route53_health_checks])
            )
            dns = ReadinessDns(**w.dns.model_dump(exclude={"health_check_id"}), health_check_ids=checks)
        targets.append(
            ReadinessTarget(
                workload=w.name,
                account_id=w.account_id,
                auto_scaling_group=w.auto_scaling_group,
                dns=dns,
                scope_keys=declared_scope_keys(w),
            )
        )
    for probe in probes:
        targets.append(
            ReadinessTarget(
                workload=probe.workload,
                account_id=probe.account_id,
                standby_group=probe.standby.auto_scaling_group,
                standby_desired_capacity=probe.standby.desired_capacity,
                # The regional failover's steps for what this standby has not (its ECS service,
                # its database...) are skipped at run time: not judged either.
                scope_keys=tuple(sorted(region_probe.scope_of(probe))),
            )
        )
    return targets
