"""What a detector declares, so that the stack builds every detector the same way: its trigger,
the calls it makes, its environment, what member accounts forward to it and its alarms.

Standard library only: the stack imports the declarations at synthesis, without boto3 or
Powertools. A value that the configuration decides is a function of the Deployment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# Of Lambda's 4 KB of environment variables, what a detector's own may take (the stack's common
# settings, table and topic names among them, take the rest).
ENVIRONMENT_BUDGET = 3072


@dataclass(frozen=True)
class Deployment:
    """What the configuration says that a declaration may depend on (the stack fills it in)."""

    workload_names: tuple[str, ...] = ()
    workload_groups: Mapping[str, str] = field(default_factory=dict)  # group -> workload
    workload_resources: Mapping[str, Sequence[str]] = field(default_factory=dict)  # workload -> resource keys
    sweep_interval_minutes: int = 1
    region_probes: int = 0
    readiness_interval_minutes: int = 30
    # The declared EKS node groups the EKS check reads: {workload, cluster, nodegroup[, account_id]}.
    eks_nodegroups: tuple[Mapping[str, str], ...] = ()


def decided(value: T | Callable[[Deployment], T], deployment: Deployment) -> T:
    """A declared value, or what it is in this deployment."""
    return value(deployment) if callable(value) else value  # type: ignore[return-value]


@dataclass(frozen=True)
class Reads:
    """One IAM statement of calls the detector makes: on "*" (describe calls support no
    resource-level permissions) or on ARNs, written with {partition}, {region} and {account}."""

    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)

    @property
    def anywhere(self) -> bool:
        return self.resources == ("*",)


@dataclass(frozen=True)
class Retry:
    """How often an event is retried, and for how long, before it goes to the dead-letter queue."""

    attempts: int
    max_age_seconds: int


@dataclass(frozen=True)
class Events:
    """AWS events on the default bus, where AWS services put theirs: a rule (construct id `rule`)
    of the source, the detail types and, narrowing it, `detail`; none while `when` says no."""

    rule: str
    description: str
    source: str
    detail_types: tuple[str, ...]
    detail: Mapping[str, Any] | Callable[[Deployment], Mapping[str, Any]] | None = None
    when: Callable[[Deployment], bool] | None = None

    def pattern(self, deployment: Deployment) -> dict[str, Any] | None:
        """The rule's event pattern in this deployment; None: no rule (nothing to match yet)."""
        if self.when is not None and not self.when(deployment):
            return None
        pattern: dict[str, Any] = {"source": [self.source], "detail-type": list(self.detail_types)}
        detail = decided(self.detail, deployment)
        return {**pattern, "detail": dict(detail)} if detail else pattern


@dataclass(frozen=True)
class Schedule:
    """A schedule rule (construct id `rule`): every `minutes` minutes."""

    rule: str
    description: str | Callable[[Deployment], str]
    minutes: int | Callable[[Deployment], int]


@dataclass(frozen=True)
class MetricAlarm:
    """An alarm on a metric the detector emits: a failure in its work that its own errors do not
    show. Named "<stack>-recovery-system-<name>", on the escalation topic like the others."""

    construct_id: str
    name: str
    metric: str
    description: str


@dataclass(frozen=True)
class Declaration:
    """One detector: a Lambda function (construct id `name`) with its own role, triggered by its
    rule, retried into the dead-letter queue, with an errors alarm named `error_alarm`."""

    name: str
    handler: str
    description: str
    trigger: Events | Schedule
    error_alarm: str
    reads: tuple[Reads, ...] = ()
    # Beyond WORKLOAD_GROUPS, which every detector gets.
    environment: Mapping[str, str] | Callable[[Deployment], Mapping[str, str]] = field(default_factory=dict)
    # Member accounts forward the trigger's events (its source and detail types) to the central
    # account's default bus, in a rule Forward<forward>; None: nothing to forward.
    forward: str | None = None
    alarms: tuple[MetricAlarm, ...] = ()
    deployed: bool | Callable[[Deployment], bool] = True
    timeout_seconds: int = 30
    invoke_retry: Retry | Callable[[Deployment], Retry] = Retry(2, 3600)  # the function's asynchronous calls
    target_retry: Retry | Callable[[Deployment], Retry] = Retry(8, 7200)  # the rule's delivery
    uses_table: bool = False  # reads and writes the recovery table
    # Puts detections on the recovery bus (the bus admits its role); False: a scheduled check
    # that only records and counts (readiness).
    publishes: bool = True

    def environment_in(self, deployment: Deployment) -> dict[str, str]:
        groups = json.dumps(dict(sorted(deployment.workload_groups.items())))
        return {"WORKLOAD_GROUPS": groups, **decided(self.environment, deployment)}

    def forwarding_pattern(self) -> dict[str, list[str]] | None:
        """What a member account forwards for this detector (the central rule narrows it)."""
        if self.forward is None or not isinstance(self.trigger, Events):
            return None
        return {"source": [self.trigger.source], "detail-type": list(self.trigger.detail_types)}
