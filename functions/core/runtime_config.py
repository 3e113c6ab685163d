"""The deployment's recovery configuration as the functions read it at run time: the plans, the
guardrails, each workload's maintenance schedule and the region probes this region runs.

It is a JSON file written into the functions' code asset when the stack synthesizes (Lambda
environment variables are limited to 4 KB in all, which a few plans exceed), named by the
environment variable RECOVERY_CONFIG, relative to the code's root (LAMBDA_TASK_ROOT) unless it
is an absolute path (the local emulator points at its own copy).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from msgspec import Meta, field

from core.arns import DbClusterArn
from core.errors import InvalidInput
from core.guardrails import Guardrails, Maintenance
from core.model import Model, ValidationError
from core.plans import Plan, PlanError, parse_plans

FILE_NAME = "recovery-config.json"
ENV = "RECOVERY_CONFIG"


# A region name of any partition: "us-east-1", "us-gov-west-1", "cn-north-1".
REGION_PATTERN = r"^(us|eu|ap|sa|ca|me|af|il|mx|cn|us-gov)-[a-z]+-\d{1,2}$"


_FORBID = {"kw_only": True, "frozen": True, "forbid_unknown_fields": True}
RdsIdentifier = Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$")]
Name = Annotated[str, Meta(min_length=1, max_length=255)]
Capacity = Annotated[int, Meta(ge=1, le=10000)]
AccountId = Annotated[str, Meta(pattern=r"^\d{12}$")]
Region = Annotated[str, Meta(pattern=REGION_PATTERN)]


class StandbyGlobalDatabase(Model, **_FORBID):
    """The workload's Aurora global database: its secondary cluster in the standby region becomes
    the writer before traffic moves (actions/failover_global_database.py)."""

    global_cluster_identifier: RdsIdentifier
    db_cluster_arn: Annotated[DbClusterArn, Meta(description="the secondary DB cluster, in the standby region")]
    allow_data_loss: Annotated[
        bool,
        Meta(description="when the primary's region does not answer, fail over losing what it had not replicated"),
    ] = False


class StandbyReadReplica(Model, **_FORBID):
    """The workload's cross-region read replica in the standby region, promoted on failover
    (actions/promote_read_replica.py: irreversible, so approval is required by default)."""

    db_instance_identifier: RdsIdentifier


class ProbeEcsService(Model, **_FORBID):
    """An ECS service: the workload's, probed in its region; or, with its desired count, its standby."""

    cluster: Name
    service: Name
    desired_count: Annotated[Capacity | None, Meta(description="the standby's, on failover")] = None


class ProbeStandby(Model, **_FORBID):
    """Where the probed workload fails over to, in this (the standby) region: a standby group, an
    ECS service, or both."""

    region: Region
    auto_scaling_group: Name | None = None
    desired_capacity: Capacity | None = None
    ecs_service: ProbeEcsService | None = None
    target_group_arn: Annotated[str, Meta(min_length=1)] | None = None
    global_database: StandbyGlobalDatabase | None = None
    read_replica: StandbyReadReplica | None = None

    def _check(self) -> None:
        if bool(self.auto_scaling_group) != bool(self.desired_capacity):
            raise ValueError("desired_capacity: auto_scaling_group and desired_capacity go together")
        if self.ecs_service and not self.ecs_service.desired_count:
            raise ValueError("ecs_service.desired_count: the standby service's count on failover is required")
        if not (self.auto_scaling_group or self.ecs_service):
            raise ValueError("a standby needs an auto_scaling_group or an ecs_service")


class ProbeDns(Model, **_FORBID):
    """The workload's Route 53 failover records, for the failover step (failover kind dns)."""

    hosted_zone_id: Annotated[str, Meta(min_length=1, max_length=32)]
    record_name: Name
    record_type: Annotated[str, Meta(min_length=1, max_length=8)]
    primary_set_identifier: Annotated[str, Meta(min_length=1, max_length=128)]
    secondary_set_identifier: Annotated[str, Meta(min_length=1, max_length=128)]


class RegionProbe(Model, **_FORBID):
    """A workload whose region (`region`) this region watches, being its standby
    (detectors/region_probe.py): its Auto Scaling group there, else its ECS service, is described
    every minute."""

    workload: Annotated[str, Meta(min_length=1, max_length=128)]
    region: Annotated[Region, Meta(description="the watched region: the workload's own")]
    account_id: Annotated[AccountId | None, Meta(description="the workload's member account")] = None
    auto_scaling_group: Annotated[Name | None, Meta(description="the workload's group, probed")] = None
    ecs_service: Annotated[ProbeEcsService | None, Meta(description="probed when the workload has no group")] = None
    failures_to_impair: Annotated[
        int, Meta(ge=1, le=60, description="consecutive failed probes that make an impairment")
    ]
    standby: ProbeStandby
    dns: ProbeDns | None = None

    def _check(self) -> None:
        if self.standby.region == self.region:
            raise ValueError(f"probe of {self.workload}: the standby region is the probed region {self.region}")
        if not (self.auto_scaling_group or self.ecs_service):
            raise ValueError(f"probe of {self.workload}: nothing to probe (an auto_scaling_group or an ecs_service)")

    @property
    def probed(self) -> str:
        """What the probe describes, for logs and the impairment's description."""
        if self.auto_scaling_group:
            return f"Auto Scaling group {self.auto_scaling_group}"
        assert self.ecs_service is not None  # _check
        return f"ECS service {self.ecs_service.cluster}/{self.ecs_service.service}"


class ReadinessDns(ProbeDns, **_FORBID):
    """A workload's failover records and the health checks they use, for the readiness check."""

    health_check_ids: tuple[str, ...] = ()


class ReadinessTarget(Model, **_FORBID):
    """What the readiness check (readiness/) needs of a workload its plans may act on: where it
    runs and the resources their steps would touch."""

    workload: Annotated[str, Meta(min_length=1, max_length=128)]
    account_id: AccountId | None = None
    auto_scaling_group: Name | None = None
    standby_group: Name | None = None
    standby_desired_capacity: Capacity | None = None
    dns: ReadinessDns | None = None
    scope_keys: Annotated[
        tuple[str, ...] | None,
        Meta(
            description=(
                "the keys of the scope its impairments carry, when known (a region impairment's): a plan's "
                "step that needs another (when_scope_has) does not run for it and is not judged"
            )
        ),
    ] = None


class RuntimeConfig(Model, **_FORBID):
    plans: list[Plan] = []
    guardrails: Guardrails = field(default_factory=Guardrails)
    maintenance: Annotated[dict[str, Maintenance], Meta(description="by workload name")] = {}
    rto_seconds: Annotated[dict[str, int], Meta(description="recovery time objectives by workload name")] = {}
    probes: Annotated[
        list[RegionProbe], Meta(description="the workloads whose region this region watches (it is their standby)")
    ] = []
    readiness: Annotated[
        list[ReadinessTarget], Meta(description="the workloads whose plans the readiness check judges")
    ] = []

    def maintenance_of(self, workload: str) -> Maintenance:
        return self.maintenance.get(workload) or Maintenance()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True)


def build(
    plans: list[dict[str, Any]],
    guardrails: dict[str, Any],
    maintenance: dict[str, Any],
    probes: list[dict[str, Any]] | None = None,
    rto_seconds: dict[str, int] | None = None,
    readiness: list[dict[str, Any]] | None = None,
) -> RuntimeConfig:
    """Validate the parts into a RuntimeConfig (raises PlanError or InvalidInput)."""
    parsed = parse_plans(plans)
    try:
        return RuntimeConfig(
            plans=parsed,
            guardrails=guardrails or {},
            maintenance=maintenance or {},
            probes=probes or [],
            rto_seconds=rto_seconds or {},
            readiness=readiness or [],
        )
    except ValidationError as exc:
        from core.problems import from_validation  # only once it failed

        problems = "; ".join(str(p) for p in from_validation(exc))
        raise InvalidInput(f"invalid recovery configuration: {problems}") from exc


def path() -> Path:
    name = os.environ.get(ENV) or FILE_NAME
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate
    root = os.environ.get("LAMBDA_TASK_ROOT") or str(Path(__file__).resolve().parent.parent)
    return Path(root) / candidate


def load() -> RuntimeConfig:
    """The configuration the function was deployed with (cached while the file is unchanged)."""
    file = path()
    try:
        stat = file.stat()
    except OSError as exc:
        raise InvalidInput(f"the recovery configuration {file} is missing: redeploy the stack") from exc
    return _load(str(file), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load(file: str, mtime_ns: int, size: int) -> RuntimeConfig:
    try:
        data = json.loads(Path(file).read_text())
        return build(
            data.get("plans", []),
            data.get("guardrails", {}),
            data.get("maintenance", {}),
            data.get("probes", []),
            data.get("rto_seconds", {}),
            data.get("readiness", []),
        )
    except (OSError, ValueError, PlanError) as exc:
        raise InvalidInput(f"the recovery configuration {file} does not validate: {exc}") from exc
