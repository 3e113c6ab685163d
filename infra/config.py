"""The deployment's configuration: which workloads are protected (infra/workload_config.py) and the
recovery plans.

Read from cdk.json's context key "recovery", or from a JSON file named by `-c recovery_config=PATH`.
Everything is validated before a single construct is built, so a bad configuration fails
`cdk synth` with a message that names what to fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actions.plans import Plan, parse_plans
from core.guardrails import Guardrails
from core.problems import Problem
from core.runtime_config import REGION_PATTERN, ProbeDns, ProbeEcsService, ProbeStandby, RegionProbe, RuntimeConfig
from infra.workload_config import AlarmSettings as AlarmSettings  # imported from here by the constructs
from infra.workload_config import Workload as Workload
from infra.workload_config import readiness_targets

# Said at every synth of a configuration without a subscriber (a warning, or with
# require_escalation_subscriber an error): see infra/constructs/escalation.py.
NO_SUBSCRIBER = (
    "no escalation subscriber is configured (escalation_emails is empty), so no human receives a page: escalations, "
    "approval requests and the system's own alarms reach the escalation topic and are dropped"
)


class ConfigError(ValueError):
    """The configuration does not validate: every problem, a line each."""

    def __init__(self, problems: list[Problem] | str) -> None:
        self.problems = [Problem("", problems)] if isinstance(problems, str) else list(problems)
        if isinstance(problems, str):
            super().__init__(problems)
        else:
            super().__init__("invalid recovery configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


# Commercial, GovCloud and China partitions' region names: "us-east-1", "us-gov-west-1", "cn-north-1".
_REGION = REGION_PATTERN


class Regions(BaseModel):
    """The regions the system runs in: one stack in each, built from this one configuration. The
    primary's stack owns the recovery table (a DynamoDB global table with a replica in each standby
    region); every region runs its own bus, detectors, state machine and escalation topic, so that a
    standby region detects and recovers while the primary region is impaired (docs/regions.md)."""

    model_config = ConfigDict(extra="forbid")

    primary: str = Field(pattern=_REGION, description='e.g. "us-east-1"')
    standby: list[str] = Field(min_length=1, max_length=10, description='e.g. ["us-west-2"]')

    @field_validator("standby")
    @classmethod
    def _standby(cls, value: list[str]) -> list[str]:
        bad = [r for r in value if not re.match(_REGION, r)]
        if bad:
            raise ValueError(f"not a region name: {', '.join(map(repr, bad))} (e.g. 'us-west-2')")
        duplicates = sorted({r for r in value if value.count(r) > 1})
        if duplicates:
            raise ValueError(f"standby regions listed twice: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Regions:
        if self.primary in self.standby:
            raise ValueError(f"the primary region {self.primary} cannot also be a standby region")
        return self

    @property
    def all(self) -> list[str]:
        """The primary, then the standby regions in the order given."""
        return [self.primary, *self.standby]


_SCHEDULE = re.compile(
    r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+( \S+){5}\)|at\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\))$"
)


class PracticeDrill(BaseModel):
    """A scheduled practice drill: EventBridge Scheduler sets one of a workload's alarms to ALARM
    (state reason "[practice drill] ..."), and the real recovery runs, recorded as a drill."""

    model_config = ConfigDict(extra="forbid")

    workload: str = Field(min_length=1, description="a workload of this configuration, designated for drills")
    alarm: str = Field(
        min_length=1,
        max_length=255,
        description='the alarm to set: its name ("<workload>-status-check") or its kind ("status_check")',
    )
    schedule: str = Field(description='as EventBridge Scheduler takes it: "rate(7 days)", "cron(0 10 ? * TUE *)"')
    timezone: str = Field(default="UTC", description="IANA time zone of a cron schedule, e.g. Europe/Paris")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not _SCHEDULE.match(value):
            raise ValueError(f'not a schedule expression: {value!r} (e.g. "rate(7 days)" or "cron(0 10 ? * TUE *)")')
        if value.startswith("rate(") and int(value[5:].split()[0]) < 1:
            raise ValueError(f"a rate must be at least 1: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value


class MemberAccount(BaseModel):
    """An account of the organisation whose workloads the central (recovery) account protects."""

    model_config = ConfigDict(extra="forbid")

    account_id: str = Field(pattern=r"^\d{12}$")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="names its stack: <stack_name>-Member-<name>")


class Accounts(BaseModel):
    """Multi-account: the central account receives the members' signals on its default bus (from
    the organisation only) and acts in them through a role deployed into each (infra/member_stack.py)."""

    model_config = ConfigDict(extra="forbid")

    organization_id: str = Field(pattern=r"^o-[a-z0-9]{10,32}$")
    central_account_id: str = Field(
        pattern=r"^\d{12}$", description="the account the recovery stack is deployed to (the members trust it)"
    )
    members: list[MemberAccount] = Field(min_length=1)
    role_name: str = Field(default="ImpairmentRecoveryMember", pattern=r"^[\w+=,.@-]{1,64}$")

    @model_validator(mode="after")
    def _unique(self) -> Accounts:
        ids = [m.account_id for m in self.members]
        names = [m.name for m in self.members]
        duplicates = sorted({i for i in ids if ids.count(i) > 1} | {n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"member accounts and names must be unique: {', '.join(duplicates)}")
        if self.central_account_id in ids:
            raise ValueError(f"the central account {self.central_account_id} cannot also be a member")
        return self

    @property
    def member_ids(self) -> list[str]:
        return [m.account_id for m in self.members]


class ReservedConcurrency(BaseModel):
    """Concurrency reserved for the functions that detect and start recoveries, so that a storm of
    invocations of another function in the account cannot throttle them. Off by default: Lambda
    refuses a reservation that leaves the account less than 100 unreserved executions, which a new
    account's quota (as low as 10) or other reservations may not allow (synth warns while it is off).
    A reservation is also each function's ceiling: invocations over it are throttled and retried."""

    model_config = ConfigDict(extra="forbid")

    detectors: int | None = Field(
        default=None, ge=1, le=1000, description="reserved for each detector function (e.g. 5); absent: none"
    )
    start_recovery: int | None = Field(
        default=None, ge=1, le=1000, description="reserved for StartRecovery (e.g. 5); absent: none"
    )


class Encryption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_managed_key: bool = Field(
        default=False,
        description="encrypt the table, the queues, the log groups and the topic with one customer managed KMS key "
        "of the stack (default: AWS owned and service managed keys; the topic has its own key)",
    )


# A Secrets Manager secret's name, or its ARN (complete, or partial without the random suffix).
_NAME_OR_ARN = (
    r"^([A-Za-z0-9/_+=.@-]{1,512}|arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512})$"
)


class PagerDuty(BaseModel):
    """PagerDuty through its Events API v2 (functions/notify/): the integration's routing key is a
    secret of Secrets Manager, read at run time; it never appears in the configuration or the template."""

    model_config = ConfigDict(extra="forbid")

    routing_key_secret: str = Field(
        pattern=_NAME_OR_ARN,
        description='the secret\'s name or ARN (e.g. "recovery/pagerduty"): its value is the routing key, or JSON '
        'with a "routing_key" field',
    )

    @field_validator("routing_key_secret")
    @classmethod
    def _not_the_key_itself(cls, value: str) -> str:
        if re.fullmatch(r"[A-Za-z0-9]{32}", value):
            raise ValueError(
                "this looks like a routing key itself: store it in Secrets Manager and give the secret's name or ARN"
            )
        return value


class SlackChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: str = Field(pattern=r"^[0-9A-Z]{1,255}$", description="e.g. T0123ABCD (authorized in the console)")
    channel_id: str = Field(pattern=r"^[A-Za-z0-9]{1,255}$", description="e.g. C0123ABCD")


_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class TeamsChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: str = Field(pattern=_UUID)
    tenant_id: str = Field(pattern=_UUID)
    channel_id: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^([a-zA-Z0-9-_=+/.,])*%3[aA]([a-zA-Z0-9-_=+/.,])*%40([a-zA-Z0-9-_=+/.,])*$",
    )


class Chatbot(BaseModel):
    """AWS Chatbot (Amazon Q Developer in chat applications) channels subscribed to the escalation
    topic: pages render as its custom notifications. The workspace or team must be authorized in
    the Chatbot console first (once per account)."""

    model_config = ConfigDict(extra="forbid")

    slack: SlackChannel | None = None
    teams: TeamsChannel | None = None

    @model_validator(mode="after")
    def _a_channel(self) -> Chatbot:
        if self.slack is None and self.teams is None:
            raise ValueError("name a slack or a teams channel (or remove chatbot)")
        return self


class Paging(BaseModel):
    """Where pages go besides the topic's email subscribers (docs/operations.md#paging)."""

    model_config = ConfigDict(extra="forbid")

    pagerduty: PagerDuty | None = None
    chatbot: Chatbot | None = None
    ops_items: bool = Field(
        default=False, description="an OpsCenter OpsItem per escalated impairment, resolved when the impairment is"
    )

    @property
    def reaches_someone(self) -> bool:
        """Whether pages reach a human without an email subscriber (PagerDuty, a chat channel)."""
        return self.pagerduty is not None or self.chatbot is not None

    @property
    def notifier(self) -> bool:
        """Whether the stack runs the notifier (PagerDuty or OpsItems)."""
        return self.pagerduty is not None or self.ops_items


class RecoveryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    stack_name: str = Field(default="ImpairmentRecovery", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    managed_tag_key: str = "recovery:managed"
    managed_tag_value: str = "true"
    escalation_emails: list[str] = Field(
        default_factory=list,
        description="email addresses subscribed to the escalation topic (each confirms by email before it is paged)",
    )
    require_escalation_subscriber: bool = Field(
        default=False,
        description="fail the synth when no escalation subscriber is configured (else it warns): every page, approval "
        "request and self-alarm goes to the escalation topic, and a topic without a subscriber drops them",
    )
    archive_retention_days: int = Field(default=30, ge=1, le=3650)
    log_retention_days: int = Field(default=30, ge=1)
    reserved_concurrency: ReservedConcurrency = Field(default_factory=ReservedConcurrency)
    lock_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    dry_run: bool = Field(default=False, description="every plan runs as a dry run")
    sweep_interval_minutes: int = Field(
        default=1, ge=0, le=1440, description="how often the backstop health sweep runs; 0 disables it"
    )
    readiness_interval_minutes: int = Field(
        default=30, ge=0, le=1440, description="how often each plan is checked ready to act (readiness); 0 disables it"
    )
    correlation_window_seconds: int = Field(
        default=300, ge=0, le=86400, description="signals about one resource within this window are one impairment"
    )
    storm_window_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="escalations of one cause within this window page once, then one summary lists them at its end "
        "(a single escalation still pages at once); 0 pages each escalation on its own",
    )
    paging: Paging = Field(default_factory=Paging)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    workloads: list[Workload] = Field(default_factory=list)
    plans: list[dict[str, Any]] = Field(default_factory=list)
    audit_retention_days: int = Field(
        default=365, ge=0, le=36500, description="how long impairment and action records are kept; 0: forever"
    )
    practice_drills: list[PracticeDrill] = Field(default_factory=list)
    encryption: Encryption = Field(default_factory=Encryption)
    regions: Regions | None = Field(
        default=None, description="a primary and standby regions; absent: one stack, deployed to any region"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_public_layer(cls, data: Any) -> Any:
        if isinstance(data, dict) and "powertools_layer_version" in data:
            raise ValueError(
                "powertools_layer_version is no longer used: the functions' dependencies (Powertools, pydantic, "
                "boto3) are a layer built from requirements.txt (`make layer`); remove the key"
            )
        return data

    @property
    def table_name(self) -> str | None:
        """The recovery table's name: fixed when several regions share it (each standby stack finds its
        replica by name), left to CloudFormation otherwise."""
        return f"{self.stack_name}-recovery" if self.regions else None

    def stack_name_in(self, region: str) -> str:
        """The name of the stack in a region: the primary's is `stack_name`."""
        if self.regions is None or region == self.regions.primary:
            return self.stack_name
        return f"{self.stack_name}-{region}"

    def region_of(self, workload: Workload) -> str | None:
        """The region a workload runs in (the primary unless it says otherwise); None with no `regions`."""
        if self.regions is None:
            return None
        return workload.region or self.regions.primary

    def workloads_in(self, region: str | None) -> list[Workload]:
        """The workloads whose alarms a stack creates: all of them in a single-region deployment."""
        if self.regions is None:
            return list(self.workloads)
        return [w for w in self.workloads if self.region_of(w) == region]

    accounts: Accounts | None = Field(default=None, description="member accounts this deployment recovers in")

    def parsed_plans(self) -> list[Plan]:
        return parse_plans(self.plans)

    def region_probes(self, region: str | None) -> list[RegionProbe]:
        """The probes a region's stack runs: those of the workloads whose standby is in that region
        (none in a single-region deployment)."""
        if self.regions is None or region is None:
            return []
        probes = []
        for w in self.workloads:
            if w.standby is None or w.standby.region != region:
                continue
            # Workload._probed: the group, else the ECS service
            probed_service = ProbeEcsService(**w.ecs_service.model_dump()) if w.ecs_service else None
            probes.append(
                RegionProbe(
                    workload=w.name,
                    region=self.region_of(w) or self.regions.primary,
                    account_id=w.account_id,
                    auto_scaling_group=w.auto_scaling_group,
                    ecs_service=None if w.auto_scaling_group else probed_service,
                    failures_to_impair=w.standby.probe_failures,
                    standby=ProbeStandby(**w.standby.model_dump(exclude={"probe_failures"})),
                    dns=ProbeDns(**w.dns.model_dump(exclude={"health_check_id"})) if w.dns else None,
                )
            )
        return probes

    def runtime_config(self, region: str | None = None) -> RuntimeConfig:
        """What the functions of a region's stack read at run time (core/runtime_config.py)."""
        return RuntimeConfig(
            plans=self.parsed_plans(),
            guardrails=self.guardrails,
            maintenance={w.name: w.maintenance for w in self.workloads},
            rto_seconds={w.name: w.rto_seconds for w in self.workloads if w.rto_seconds},
            probes=self.region_probes(region),
            readiness=readiness_targets(self.workloads_in(region), self.region_probes(region)),
        )


def load(context: Any) -> RecoveryConfig:
    """Build the configuration from the app's context (cdk.json, or -c recovery_config=FILE)."""
    path = context("recovery_config")
    if path:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the configuration file {path}: {exc}") from exc
    else:
        raw = context("recovery") or {}
    if isinstance(raw, str):
        raw = json.loads(raw)
    return validate(raw)


def validate(raw: Any) -> RecoveryConfig:
    """The configuration, or a ConfigError listing every problem, each with its field's path
    (infra/validation.py)."""
    from infra.validation import check

    checked = check(raw)
    if checked.config is None:
        raise ConfigError(checked.problems)
    return checked.config
