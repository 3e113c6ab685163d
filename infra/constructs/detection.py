"""Detection: every detector the registry declares (functions/detectors/registry.py), built the
same way: a Lambda with its own least-privilege role, the rule that triggers it (on the default
bus, where AWS services put their events, or a schedule), a retry policy and a dead-letter queue
on both the rule's delivery and the function's asynchronous calls. Nothing here names a detector.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from detectors import registry
from detectors.declaration import ENVIRONMENT_BUDGET, Declaration, Deployment, Events, Reads, decided
from infra.config import ConfigError
from infra.constructs.bus import grant_put_detections
from infra.constructs.functions import FunctionFactory


@dataclass(frozen=True)
class Detector:
    """A detector as built: its declaration, its function, and its rule (None while nothing
    triggers it, e.g. the alarm rule before any workload is protected)."""

    declaration: Declaration
    function: lambda_.Function
    rule: events.Rule | None


class Detection(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: FunctionFactory,
        bus: events.IEventBus,
        dead_letters: sqs.IQueue,
        workload_names: list[str],
        workload_groups: dict[str, str] | None = None,
        workload_resources: dict[str, list[str]] | None = None,
        sweep_interval_minutes: int = 1,
        region_probes: int = 0,
        readiness_interval_minutes: int = 30,
        eks_nodegroups: Sequence[dict[str, str]] = (),
        table: dynamodb.ITableV2 | None = None,
        declarations: Sequence[Declaration] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._functions, self._bus, self._dead_letters, self._table = functions, bus, dead_letters, table
        self.deployment = Deployment(
            workload_names=tuple(workload_names),
            # Groups without a recovery:workload tag resolve to the workload the configuration declares.
            workload_groups=dict(workload_groups or {}),
            workload_resources=dict(workload_resources or {}),
            sweep_interval_minutes=sweep_interval_minutes,
            region_probes=region_probes,
            readiness_interval_minutes=readiness_interval_minutes,
            eks_nodegroups=tuple(eks_nodegroups),
        )
        declared = registry.DETECTORS if declarations is None else declarations
        self.built = [self._build(d) for d in declared if decided(d.deployed, self.deployment)]
        # Every function that may put detections on the recovery bus: the bus's policy admits
        # exactly their roles (infra/constructs/bus.py).
        self.detectors: list[lambda_.Function] = [d.function for d in self.built if d.declaration.publishes]

    def _build(self, declaration: Declaration) -> Detector:
        environment = declaration.environment_in(self.deployment)
        if sum(len(k) + len(v) for k, v in environment.items()) > ENVIRONMENT_BUDGET:
            label = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", declaration.name).lower()  # "alarm detector"
            raise ConfigError(
                f"the workloads declare too many resources for the {label}'s environment (Lambda holds 4 KB of "
                f"environment variables in all; {' and '.join(sorted(environment))} may take {ENVIRONMENT_BUDGET} "
                "bytes): split the workloads across deployments"
            )
        retry = decided(declaration.invoke_retry, self.deployment)
        function = self._functions.create(
            declaration.name,
            handler=declaration.handler,
            description=declaration.description,
            environment=environment,
            timeout_seconds=declaration.timeout_seconds,
            dead_letter_queue=self._dead_letters,
            retry_attempts=retry.attempts,
            max_event_age=Duration.seconds(retry.max_age_seconds),
        )
        if declaration.publishes:
            grant_put_detections(self._bus, function)
        for reads in declaration.reads:
            function.add_to_role_policy(self._statement(reads))
        if declaration.uses_table:
            if self._table is None:
                raise ValueError(f"{declaration.name} needs the recovery table")
            self._table.grant_read_write_data(function)
        return Detector(declaration, function, self._rule(declaration, function))

    def _statement(self, reads: Reads) -> iam.PolicyStatement:
        stack = Stack.of(self)
        resources = [
            r.format(partition=stack.partition, region=stack.region, account=stack.account) for r in reads.resources
        ]
        return iam.PolicyStatement(actions=list(reads.actions), resources=resources)

    def _rule(self, declaration: Declaration, function: lambda_.Function) -> events.Rule | None:
        trigger = declaration.trigger
        if isinstance(trigger, Events):
            pattern = trigger.pattern(self.deployment)
            if pattern is None:
                return None
            rule = events.Rule(
                self,
                trigger.rule,
                description=trigger.description,
                event_pattern=events.EventPattern(
                    source=pattern["source"], detail_type=pattern["detail-type"], detail=pattern.get("detail")
                ),
            )
        else:
            rule = events.Rule(
                self,
                trigger.rule,
                description=decided(trigger.description, self.deployment),
                schedule=events.Schedule.rate(Duration.minutes(decided(trigger.minutes, self.deployment))),
            )
        retry = decided(declaration.target_retry, self.deployment)
        rule.add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=self._dead_letters,
                retry_attempts=retry.attempts,
                max_event_age=Duration.seconds(retry.max_age_seconds),
            )
        )
        return rule
