"""Drill scenarios: files a user can write. See docs/scenarios.md for the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from actions.registry import ACTIONS

BUILT_IN = Path(__file__).resolve().parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario cannot be found or does not validate."""


class GroupShape(BaseModel):
    """An Auto Scaling group's size, as the drill builds it."""

    model_config = ConfigDict(extra="forbid")

    min_size: int = Field(default=2, ge=0, le=1000)
    max_size: int = Field(default=6, ge=1, le=1000)
    desired: int = Field(default=3, ge=0, le=1000)

    @model_validator(mode="after")
    def _desired_within_bounds(self) -> GroupShape:
        # Auto Scaling refuses such a group: said here, with the scenario's field, not by moto.
        if not self.min_size <= self.desired <= self.max_size:
            raise ValueError(
                f"desired ({self.desired}) must be between min_size ({self.min_size}) and max_size ({self.max_size})"
            )
        return self


class InstanceFault(BaseModel):
    """What happens to instances of the group at the start of a round, before its signals fire."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["stop", "fail_health_check", "task_crash", "zone_outage", "node_not_ready"] = Field(
        description="stop: instances stop (status checks and target health fail); fail_health_check: "
        "instances keep running but fail the load balancer's health check; task_crash: tasks of "
        "the ECS service crash (it runs fewer than desired until redeployed); zone_outage: every "
        "instance in the first instance's Availability Zone stops; node_not_ready: nodes of the EKS node group "
        "go NotReady (their instances keep running)"
    )
    # node_not_ready: evictions of a pod on each node its disruption budget refuses (-1: all)
    pdb_refusals: int = Field(default=0, ge=-1, le=100, description="node_not_ready: evictions a budget refuses")
    count: int = Field(default=1, ge=1, le=1000)
    pick: Literal["first", "newest"] = Field(
        default="first", description="which instances: the first in service, or the newest (a replacement)"
    )
    index: int | None = Field(
        default=None,
        ge=0,
        le=999,
        description="which instances instead: the group's instances at the drill's start (the report's "
        "before.in_service, sorted by id) from this index on",
    )
    round: int | None = Field(default=None, ge=1, le=20, description="only in this round (default: every round)")
    group: Literal["main", "second"] = Field(
        default="main",
        description="whose instances: the workload's group (main), or the scenario's second_group sharing its "
        "target group (second); count, index and pick count in that group. A zone_outage takes the zone of that "
        "group's first instance, and stops every instance of both groups there",
    )

    @model_validator(mode="after")
    def _index_or_pick(self) -> InstanceFault:
        if self.index is not None and self.pick != "first":
            raise ValueError("an instance fault picks by index or by pick, not both")
        if self.kind == "task_crash" and self.group != "main":
            raise ValueError("task_crash crashes the ECS service's tasks: it has no group to choose")
        if self.pdb_refusals and self.kind != "node_not_ready":
            raise ValueError("pdb_refusals guards a pod on a NotReady EKS node: only with kind node_not_ready")
        return self


class ApiFault(BaseModel):
    """An AWS API operation the functions call that fails, or slows down, while the drill runs
    (botocore names). The drill's own calls (building and reading the workload) are not affected."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(examples=["auto-scaling", "elastic-load-balancing", "ec2"])
    operation: str = Field(examples=["TerminateInstanceInAutoScalingGroup", "*"], description='"*": every one')
    error_code: str | None = Field(
        default=None, examples=["AccessDenied", "Throttling"], description="none: the call only slows down"
    )
    message: str = "injected by the drill"
    status: int = Field(default=400, ge=400, le=599)
    times: int | None = Field(default=None, ge=1, description="fail only N calls (default: all)")
    after: int = Field(default=0, ge=0, le=100_000, description="fail only after N successful calls")
    account: str | None = Field(default=None, pattern=r"^\d{12}$", description="only calls made in this account")
    region: str | None = Field(default=None, min_length=1, description="only calls to this region")
    latency_seconds: float = Field(
        default=0, ge=0, le=3600, description="each call takes this much longer (virtual time)"
    )

    @model_validator(mode="after")
    def _does_something(self) -> ApiFault:
        if self.error_code is None and not self.latency_seconds:
            raise ValueError("an API fault needs an error_code, a latency_seconds, or both")
        return self


class ZoneFault(BaseModel):
    """An Availability Zone where the group cannot get healthy new instances."""

    model_config = ConfigDict(extra="forbid")

    zone: str = Field(
        min_length=1,
        examples=["us-east-1a", "a", "{zone}"],
        description='a zone name, its letter in the workload\'s region ("a"), or "{zone}": the first '
        "impaired instance's",
    )
    kind: Literal["insufficient_capacity", "unhealthy"] = Field(
        description="insufficient_capacity: launches there fail (a failed scaling activity, "
        "InsufficientInstanceCapacity), the group tries its other zones; unhealthy: instances launched "
        "there fail the load balancer's health check"
    )


class InstanceRefresh(BaseModel):
    """An Auto Scaling instance refresh of the workload's group, running when the drill starts
    (as DescribeInstanceRefreshes shows it; moto has none): blocking conditions wait for it."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"] = "InProgress"
    ends_after_seconds: float | None = Field(
        default=None, ge=0, le=86400, description="when it ends (virtual time from the start; none: never)"
    )
    ends_as: Literal["Successful", "Cancelled", "Failed", "RollbackSuccessful"] = "Successful"


DrillActionName = Literal["pause", "resume", "enable_plan", "disable_plan", "approve", "reject", "stop_execution"]


class DrillAction(BaseModel):
    """What an operator does at a moment of the drill, as recoveryctl would."""

    model_config = ConfigDict(extra="forbid")

    at_seconds: float = Field(ge=0, le=86400, description="when, relative to the round's start (virtual time)")
    action: DrillActionName = Field(
        description="pause / resume: the kill switch; enable_plan / disable_plan: a plan (`plan`); approve / "
        "reject: every recovery waiting for approval then (SendTaskSuccess / SendTaskFailure with its task "
        "token); stop_execution: every recovery execution running then (StopExecution)"
    )
    reason: str = Field(default="", max_length=500)
    plan: str | None = Field(default=None, description="enable_plan, disable_plan: the plan's name")
    region: str | None = Field(
        default=None,
        description='in one region\'s stack only ("primary", "standby" or a region name; default: every region)',
    )
    round: int = Field(default=1, ge=1, le=20, description="in this round")

    @model_validator(mode="after")
    def _plan_named(self) -> DrillAction:
        if (self.action in ("enable_plan", "disable_plan")) != (self.plan is not None):
            raise ValueError("enable_plan and disable_plan name a plan; other actions do not")
        return self


class SignalSpec(BaseModel):
    """An alarm changing state, or any AWS event as EventBridge delivers it (an ECS task state
    change, an AWS Health event, ...). Strings in an event may use placeholders: {workload},
    {account}, {region}, {now} (ISO time), {instance} / {instance1} (the impaired instances),
    {zone} and {zone_id} (the impaired instance's Availability Zone name and id)."""

    model_config = ConfigDict(extra="forbid")

    alarm: str | None = Field(default=None, description='alarm name; "{workload}" is replaced by the workload name')
    state: Literal["ALARM", "OK", "INSUFFICIENT_DATA"] = "ALARM"
    event: dict[str, Any] | None = Field(default=None, description="an AWS event, put on the default bus")
    schedule: Literal["sweep"] | None = Field(
        default=None,
        description="sweep: the stack's scheduled rules fire (the backstop health sweep, and in a standby "
        "region the probe of the regions it stands by for)",
    )
    times: int = Field(default=1, ge=1, le=60, description="a schedule: how many times its rules fire")
    interval_seconds: float = Field(
        default=60, ge=1, le=3600, description="a schedule: virtual time between two firings (its rate)"
    )
    region: str | None = Field(
        default=None,
        description='which region\'s stack receives the signal: "primary", "standby" (the workload\'s standby '
        "region) or a region name; default: the workload's region",
    )
    account: str | None = Field(
        default=None,
        pattern=r"^\d{12}$",
        description="an event's account when it is not the workload's (say, an account outside the organisation)",
    )
    deliveries: int = Field(default=1, ge=1, le=100, description="times EventBridge delivers the event")
    at_seconds: float = Field(
        default=0,
        ge=-3600,
        le=3600,
        description="when the signal fires, relative to the round's start (virtual time): it is delivered then, "
        "so it may arrive while a recovery runs; a negative one fired before the drill started (its time is in "
        "the past) and is delivered at the start",
    )

    @model_validator(mode="after")
    def _one(self) -> SignalSpec:
        if sum(x is not None for x in (self.alarm, self.event, self.schedule)) != 1:
            raise ValueError("a signal is one of: an alarm, an event, a schedule")
        return self


Outcome = Literal["recovered", "rolled_back", "escalated", "skipped", "dry_run", "nothing_started"]
Guardrail = Literal[
    "blast_radius", "fail_open", "rate_limit", "concurrency", "flapping", "maintenance_window", "paused", "approval"
]
# The actions this deployment's code registers (functions/actions/registry.py: the one place).
ActionType = Literal[tuple(sorted(ACTIONS))]  # type: ignore[valid-type]
# What every drill must leave behind, checked after it by default (recoveryctl/expect.py says how).
Invariant = Literal[
    "no_lock_held",
    "no_concurrency_slot_held",
    "no_correlation_window_held",
    "every_execution_recorded",
    "every_action_recorded",
    "no_dead_letters",
    "no_capacity_change_under_way",
]


class FinalState(BaseModel):
    """What the workload looks like once the drill settled, as a user would check it in the
    console. Every field is optional: only those given are compared."""

    model_config = ConfigDict(extra="forbid")

    in_service: int | None = Field(default=None, ge=0, description="instances InService in the workload's group")
    impaired_in_service: int | None = Field(
        default=None,
        ge=0,
        description="of the instances the drill impaired, how many are still in service (in the group, or in "
        "the second group)",
    )
    desired_capacity: int | None = Field(default=None, ge=0, description="the group's desired capacity")
    zonal_shifts: int | None = Field(default=None, ge=0, description="active ARC zonal shifts")
    dns: Literal["primary", "standby"] | None = Field(
        default=None,
        description="where the workload's DNS failover record sends traffic: primary (its PRIMARY record still "
        "points at the endpoint it pointed at before the drill) or standby (at the one that was SECONDARY)",
    )
    second_in_service: int | None = Field(
        default=None, ge=0, description="instances InService in the scenario's second_group"
    )
    second_desired_capacity: int | None = Field(default=None, ge=0, description="the second group's desired capacity")
    standby_in_service: int | None = Field(default=None, ge=0, description="instances InService in the standby group")
    standby_desired_capacity: int | None = Field(default=None, ge=0, description="the standby group's desired capacity")
    standby_ecs_running: int | None = Field(default=None, ge=0, description="tasks the standby ECS service runs")
    standby_ecs_desired: int | None = Field(default=None, ge=0, description="tasks the standby ECS service wants")
    ecs_running: int | None = Field(default=None, ge=0, description="tasks the ECS service runs")
    ecs_desired: int | None = Field(default=None, ge=0, description="tasks the ECS service wants")
    database_status: str | None = Field(default=None, description="the database's status, e.g. available")
    database_moved: bool | None = Field(
        default=None, description="the database's writer or zone is not the one it was before the drill"
    )
    database_writer: Literal["primary", "standby"] | None = Field(
        default=None,
        description="where the writable database is: the region whose cluster is the writer of the standby's "
        "global database, or, for a standby read replica, the standby's once it is promoted (standalone and "
        "available), else the workload's (primary), whose source instance it still replicates",
    )
    eks_ready_nodes: int | None = Field(default=None, ge=0, description="Ready, schedulable EKS node group nodes")
    eks_desired_size: int | None = Field(default=None, ge=0, description="the EKS node group's desired size")
    eks_cordoned_nodes: int | None = Field(default=None, ge=0, description="EKS nodes cordoned (unschedulable)")
    eks_impaired_nodes: int | None = Field(default=None, ge=0, description="nodes of the impaired instances registered")
    routing_controls: dict[str, Literal["On", "Off"]] | None = Field(
        default=None,
        description='ARC routing controls by name ("{workload}" is replaced), e.g. {"web-api-us-east-1": "Off"}',
    )


class ExpectedAction(BaseModel):
    """One action step the drill must show, in order: every given field must match."""

    model_config = ConfigDict(extra="forbid")

    type: ActionType
    phase: Literal["apply", "rollback", "return"] | None = Field(
        default=None,
        description="apply; rollback (undone after a failure); return (emergency capacity given back, or shifted "
        "weights put back, after a recovery that held)",
    )
    result: Literal["changed", "unchanged", "irreversible", "would_change", "failed", "started"] | None = None
    targets: Literal["impaired", "group", "standby_group"] | list[str] | None = Field(
        default=None,
        description="impaired: only instances the drill impaired (at least one); group / standby_group: the "
        "workload's group / standby group; or the exact targets ({workload} is replaced)",
    )
    target_count: int | None = Field(default=None, ge=0, description="how many targets")


class Expectation(BaseModel):
    """What the drill must show; every field is optional, and the invariants are checked unless
    switched off with a reason."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome | None = Field(default=None, description="with several executions: the worst of their outcomes")
    executions_started: int | None = Field(default=None, ge=0)
    outcomes: dict[Outcome, int] | None = Field(default=None, description="executions by outcome, e.g. {recovered: 3}")
    guardrails_tripped: list[Guardrail] | None = Field(default=None, description="exactly these, in any order")
    region: str | None = Field(default=None, description="the region whose stack ran the recovery")
    plan: str | None = Field(default=None, description="the plan chosen (by every execution that chose one)")
    final_state: FinalState | None = None
    actions: list[ExpectedAction] | None = Field(
        default=None, description="every action step of every execution, in the order they started"
    )
    pages: int | None = Field(default=None, ge=0, description="messages a human received (escalations, approvals)")
    correlated: int | None = Field(
        default=None, ge=0, description="impairments linked to another one's recovery instead of starting their own"
    )
    invariants_off: dict[Invariant, str] = Field(
        default_factory=dict,
        description="invariants this scenario does not check, each with the written reason why",
    )

    @model_validator(mode="after")
    def _reasons(self) -> Expectation:
        for name, reason in self.invariants_off.items():
            if len(reason.strip()) < 20:
                raise ValueError(f"invariants_off.{name}: say why it is off (a sentence, at least 20 characters)")
        return self


class RoutingControl(BaseModel):
    """An ARC routing control the emulator's cluster serves (moto has none), with its state."""

    model_config = ConfigDict(extra="forbid")

    arn: str = Field(
        pattern=r"^arn:aws[-a-z]*:route53-recovery-control::\d{12}:controlpanel/[0-9a-f]+/routingcontrol/[0-9a-z]+$"
    )
    state: Literal["On", "Off"]
    name: str | None = None


class SafetyRule(BaseModel):
    """An assertion rule of the control panel: at least `at_least` of these routing controls On."""

    model_config = ConfigDict(extra="forbid")

    arn: str = Field(min_length=1)
    routing_controls: list[str] = Field(min_length=1)
    at_least: int = Field(default=1, ge=1)


class Deployment(BaseModel):
    """How the drilled deployment differs from cdk.json's (synthesized for the drill, see
    recoveryctl/regional.py): several regions, and changes to workloads by name."""

    model_config = ConfigDict(extra="forbid")

    regions: dict[str, Any] | None = Field(
        default=None, description='as cdk.json\'s: {"primary": "us-east-1", "standby": ["us-west-2"]}'
    )
    accounts: dict[str, Any] | None = Field(
        default=None,
        description="as cdk.json's: the central account, the organisation and the member accounts (their "
        "stacks are deployed in the emulator too)",
    )
    workloads: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='fields set on a workload, by name, e.g. {"web-api": {"standby": {...}}}',
    )
    paging: dict[str, Any] | None = Field(
        default=None, description='as cdk.json\'s, e.g. {"pagerduty": {"routing_key_secret": "recovery/pagerduty"}}'
    )


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    workload: str | None = Field(default=None, description="default: the first protected workload")
    group: GroupShape = Field(default_factory=GroupShape)
    second_group: GroupShape | None = Field(
        default=None,
        description="a second Auto Scaling group registered on the workload's target group (a blue/green pair): "
        "named {group}-green, same launch template, subnets, tags and ELB health check; none by default",
    )
    instance_faults: list[InstanceFault] = Field(default_factory=list)
    api_faults: list[ApiFault] = Field(default_factory=list)
    signals: list[SignalSpec] = Field(min_length=1)
    dry_run: bool = Field(default=False, description="run every plan as a dry run (changes nothing)")
    paused: bool = Field(default=False, description="automatic recovery is paused (the kill switch) during the drill")
    plans: list[dict[str, Any]] | None = Field(
        default=None, description="plans to drill instead of the deployment's (validated like cdk.json's)"
    )
    guardrails: dict[str, Any] | None = Field(
        default=None, description="guardrail settings to drill instead of the deployment's (as in cdk.json)"
    )
    approval: Literal["approve", "reject", "none"] = Field(
        default="none",
        description="how the on-call answers a plan that needs approval: approve, reject, or no answer (time-box)",
    )
    approval_after_seconds: float = Field(default=60, ge=0, le=86400, description="when the answer comes")
    member_account: str | None = Field(
        default=None,
        pattern=r"^\d{12}$",
        description="the workload lives in this member account: configured as a member (as `accounts` in "
        "cdk.json does), built there, its signals forwarded to the central account",
    )
    rounds: int = Field(
        default=1, ge=1, le=20, description="inject the faults and fire the signals again after each round settles"
    )
    round_interval_seconds: float = Field(default=600, ge=0, le=86400, description="virtual time between rounds")
    deployment: Deployment | None = Field(
        default=None, description="drill another deployment than cdk.out's: cdk.json with these changes"
    )
    region_outage: str | None = Field(
        default=None,
        description='a region whose APIs fail for the functions while the drill runs: "primary" or a region name',
    )
    region_outage_global: list[str] = Field(
        default_factory=list,
        description="global services whose control plane fails with the region (botocore endpoint prefixes, "
        'e.g. ["route53"]: Route 53\'s control plane runs in us-east-1)',
    )
    routing_controls: list[RoutingControl] = Field(
        default_factory=list, description="ARC routing controls the emulator's cluster serves, with their states"
    )
    safety_rules: list[SafetyRule] = Field(default_factory=list, description="the control panel's assertion rules")
    standby_failure: Literal["none", "at_start", "under_load"] = Field(
        default="none",
        description="the workload's standby is broken: every target of the standby's target group fails its "
        "health check (a standby ECS service's tasks keep stopping) from the start (at_start: the failover "
        "waits for it, then gives up before moving traffic), "
        "or once traffic moves to it (under_load: verification in the new region fails, and it fails back)",
    )
    zone_faults: list[ZoneFault] = Field(
        default_factory=list, description="zones where new instances fail to launch or come up unhealthy"
    )
    instance_refresh: InstanceRefresh | None = Field(
        default=None, description="an instance refresh of the workload's group in progress from the start"
    )
    actions: list[DrillAction] = Field(
        default_factory=list, description="what the operator does, and when: pause, approve, stop an execution..."
    )
    workers: int | None = Field(
        default=None, ge=1, le=256, description="Lambda invocations in flight at once (default 8; --workers)"
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="the interleaving's seed (default: random; --seed); the report says which ran",
    )
    expect: Expectation = Field(default_factory=Expectation)

    @model_validator(mode="after")
    def _second_group_declared(self) -> Scenario:
        # A fault on a group the drill does not build would silently impair nothing.
        for index, fault in enumerate(self.instance_faults):
            if fault.group == "second" and self.second_group is None:
                raise ValueError(f"instance_faults[{index}] hits the second group: declare second_group")
        return self


def built_in() -> list[str]:
    return sorted(p.stem for p in BUILT_IN.glob("*.json"))


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = BUILT_IN / f"{name_or_path}.json"
        if not path.exists():
            raise ScenarioError(
                f"no scenario named {name_or_path!r}; built-in scenarios: {', '.join(built_in())} "
                "(or pass the path of a scenario file)"
            )
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ScenarioError(f"scenario file {path} is not valid JSON: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"scenario file {path} is invalid: {problems}") from None
