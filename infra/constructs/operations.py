"""Operations: who watches the watcher.

A dashboard of the recovery system, alarms on the recovery system itself (notifying the
escalation topic, carrying none of the recovery tags so the system never "recovers" itself), and
scheduled practice drills that set a designated workload alarm to ALARM.

Design: docs/operations.md#alarms-on-the-recovery-system (and #dashboard, #practice-drills)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack, TimeZone
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from detectors.declaration import Declaration, Schedule
from infra.config import ConfigError, PracticeDrill
from infra.constructs.dashboard import FIVE_MINUTES, recovery_dashboard
from infra.constructs.dashboard import custom_metric as _custom
from infra.readiness import plan_alarms

DRILL_REASON_PREFIX = "[practice drill]"  # functions/detectors/alarm.py DRILL_REASON_PREFIXES
# A CloudWatch alarm's metric math may use at most 10 metrics.
_ALARM_METRICS_LIMIT = 10
# The alarm of each kind is named "<workload>-<suffix>" (infra/constructs/workloads.py).
_KIND_SUFFIX = {"error_rate": "5xx-rate", "route53_health_check": "route53", "canary": "canary"}


@dataclass(frozen=True)
class WatchedRule:
    """An EventBridge rule whose deliveries are watched; bus_name for a rule on a custom bus."""

    rule: events.IRule
    bus_name: str | None = None


class Operations(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        dead_letters: sqs.IQueue,
        topic: sns.ITopic,
        topic_key: kms.IKey | None,
        detectors: Sequence[tuple[Declaration, lambda_.IFunction]],
        functions: dict[str, lambda_.IFunction],
        rules: list[WatchedRule],
        workload_alarms: dict[str, list[str]],
        practice_drills: list[PracticeDrill],
        objectives: dict[str, int] | None = None,
        paging_dead_letters: sqs.IQueue | None = None,
        readiness_plans: Sequence[str] = (),
        readiness_interval_minutes: int = 0,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._prefix = f"{stack.stack_name}-recovery-system"
        self._notify = cw_actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []
        self._allow_alarms_to_publish(topic, topic_key)

        self._workflow_alarms(state_machine)
        self._dead_letter_alarm(dead_letters)
        if paging_dead_letters is not None:
            self._paging_alarms(paging_dead_letters)
        for declaration, function in sorted(detectors, key=lambda pair: pair[0].name):
            self._detector_alarm(declaration, function)
        # What a detector's own errors do not show (an account the sweep could not look in, a
        # region the probe cannot watch): the alarms it declares on the metrics it emits.
        for declaration, _ in detectors:
            for declared in declaration.alarms:
                self._alarm(declared.construct_id, declared.name, _custom(declared.metric), declared.description)
        by_name = {declaration.name: function for declaration, function in detectors}
        self._throttle_alarms({**functions, **by_name})
        self._rule_alarms(rules)
        for workload, rto in sorted((objectives or {}).items()):
            self._objective_alarm(workload, rto)
        if readiness_interval_minutes > 0:
            plan_alarms(self, readiness_plans, readiness_interval_minutes)
        self.dashboard = recovery_dashboard(self, state_machine, dead_letters, {**functions, **by_name}, self.alarms)
        self.drills = [self._practice_drill(drill, workload_alarms) for drill in practice_drills]

    @classmethod
    def for_stack(
        cls,
        scope: Construct,
        construct_id: str,
        *,
        detection: Any,
        workflow: Any,
        escalation: Any,
        bus: events.IEventBus,
        paging: Any = None,
        workloads: list[Any],
        practice_drills: list[PracticeDrill],
        readiness_plans: Sequence[str] = (),
        readiness_interval_minutes: int = 0,
    ) -> Operations:
        """Watch the stack's own constructs (Detection, RecoveryWorkflow, Escalation, the
        ProtectedWorkloads), so the stack wires this with one call. The detectors are the ones
        Detection built from their declarations."""
        # The detectors' rules, those of AWS events before the schedules (the order the rule
        # alarm's metrics have had), then the workflow's.
        built = sorted(detection.built, key=lambda d: isinstance(d.declaration.trigger, Schedule))
        rules = [WatchedRule(d.rule) for d in built if d.rule is not None]
        rules.append(WatchedRule(workflow.trigger, bus.event_bus_name))
        rules.append(WatchedRule(workflow.ended_rule))
        return cls(
            scope,
            construct_id,
            state_machine=workflow.state_machine,
            dead_letters=escalation.dead_letters,
            topic=escalation.topic,
            topic_key=getattr(escalation, "key", None),
            detectors=[(d.declaration, d.function) for d in detection.built],
            functions={**workflow.functions, **({"Notifier": paging.notifier} if paging and paging.notifier else {})},
            rules=rules,
            workload_alarms={w.workload.name: [_alarm_name(a) for a in w.alarms] for w in workloads},
            practice_drills=practice_drills,
            objectives={w.workload.name: w.workload.rto_seconds for w in workloads if w.workload.rto_seconds},
            paging_dead_letters=paging.dead_letters if paging else None,
            readiness_plans=readiness_plans,
            readiness_interval_minutes=readiness_interval_minutes,
        )

    @property
    def prefix(self) -> str:
        return self._prefix

    def notify(self, alarm: cloudwatch.Alarm) -> None:
        """Send an alarm made elsewhere (infra/readiness.py) to the escalation topic, as the others."""
        alarm.add_alarm_action(self._notify)
        alarm.add_ok_action(self._notify)
        self.alarms.append(alarm)

    # --- alarms on the recovery system ---------------------------------------------------------

    def _alarm(
        self,
        construct_id: str,
        suffix: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        threshold: float = 1,
    ) -> cloudwatch.Alarm:
        """An alarm on the system itself: breaching at `threshold` or more in one 5-minute period,
        missing data is fine (these metrics are only published when non-zero), notifying the
        escalation topic on ALARM and again when it is OK."""
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self._prefix}-{suffix}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._notify)
        alarm.add_ok_action(self._notify)
        self.alarms.append(alarm)
        return alarm

    def _workflow_alarms(self, state_machine: sfn.StateMachine) -> None:
        # Every escalation ends its execution in the Fail state "Escalated", and counts one
        # RecoveriesEscalated: those already paged a human. A failed execution beyond them is one
        # that broke before or inside Escalate, and paged no one.
        unpaged = cloudwatch.MathExpression(
            expression="FILL(failed, 0) - FILL(escalated, 0)",
            using_metrics={
                "failed": state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
                "escalated": _custom("RecoveriesEscalated"),
            },
            label="failed executions that paged no one",
            period=FIVE_MINUTES,
        )
        self._alarm(
            "WorkflowFailedUnpaged",
            "workflow-failed",
            unpaged,
            "A recovery execution failed without paging anyone (failed executions beyond escalations): the "
            "workflow itself broke, e.g. the Escalate task failed or the input was rejected. What to do: open the "
            "state machine's failed executions (Step Functions console, filter Failed), read the failed state's "
            "error, fix its cause; the workload may still be impaired, so check it by hand.",
        )
        self._alarm(
            "WorkflowTimedOut",
            "workflow-timed-out",
            state_machine.metric_timed_out(period=FIVE_MINUTES, statistic="Sum"),
            "A recovery execution ran past its timeout and was stopped wherever it was: nothing escalated, locks "
            "stay until their TTL, an action may be half done. What to do: open the timed-out execution, see "
            "which state it was in, check the workload and any action's state before and after (recoveryctl "
            "show ID), and raise the plan's timeout if the recovery legitimately takes longer.",
        )
        self._alarm(
            "WorkflowAborted",
            "workflow-aborted",
            state_machine.metric_aborted(period=FIVE_MINUTES, statistic="Sum"),
            "A recovery execution was aborted (StopExecution, by a person or a script): it stopped wherever it "
            "was. The ExecutionEnded function records it, rolls back what it had changed and pages; this alarm "
            "says it happened. What to do: recoveryctl show ID for what it had done and what was undone, and "
            "check the workload.",
        )
        self._alarm(
            "ExecutionsDied",
            "executions-died",
            _custom("ExecutionsDied"),
            "A recovery execution died outside its own failure path (failed in a state with no catch, timed out, "
            "or was aborted). Its locks were released and what it had applied is being rolled back by the cleanup "
            "state machine, or a human was paged to look. What to do: recoveryctl show ID (the reason names the "
            "state and the error), check the workload, and fix the cause if it is the workflow's.",
        )
        self._alarm(
            "PagesFailed",
            "pages-failed",
            _custom("PagesFailed"),
            "A page could not be published on the escalation topic (the topic or its key missing, SNS throttling "
            "or refusing): a human may not know about an escalation. The outcome is recorded regardless and the "
            "page is retried. What to do: check the topic and its KMS key policy; recoveryctl status lists the "
            "escalations whose page_status is failed.",
        )
        self._alarm(
            "WorkflowThrottled",
            "workflow-throttled",
            state_machine.metric_throttled(period=FIVE_MINUTES, statistic="Sum"),
            "Step Functions throttled the recovery workflow (state transitions or StartExecution above the "
            "account's quota): recoveries start late or not at all. What to do: look for a storm of impairments "
            "(the dashboard's detections), consider pausing (recoveryctl pause) while it lasts, and request a "
            "higher Step Functions quota if this is normal load.",
        )

    def _objective_alarm(self, workload: str, rto: int) -> None:
        """A recovery of the workload took longer than its recovery time objective (Finalize counts
        RecoveryTimeObjectiveMissed by workload; drills are not counted)."""
        self._alarm(
            f"RtoMissed-{workload}",
            f"rto-missed-{workload}",
            _custom("RecoveryTimeObjectiveMissed", workload=workload),
            f"A recovery of {workload} took longer than its recovery time objective ({rto} s) from detection to "
            "verified recovery. The workload is recovered; the objective was not met. What to do: `recoveryctl "
            f"report --workload {workload}` shows MTTR against the objective; `recoveryctl show ID` shows which step "
            "took the time (a slow launch, a long verification wait, an approval).",
        )

    def _dead_letter_alarm(self, dead_letters: sqs.IQueue) -> None:
        self._alarm(
            "DeadLetters",
            "dead-letters",
            dead_letters.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            "Events that could not be delivered or processed after every retry are in the dead-letter queue: a "
            "signal was lost to automatic recovery. What to do: read the messages (their ErrorMessage attribute "
            "says why), fix the cause, check the workloads they were about, then redrive or delete them.",
        )

    def _paging_alarms(self, dead_letters: sqs.IQueue) -> None:
        """The notifier's: pages it could not deliver after every retry, and pages PagerDuty refused."""
        self._alarm(
            "PagingDeadLetters",
            "paging-dead-letters",
            dead_letters.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            "Pages or resolves the notifier could not deliver to PagerDuty or OpsCenter for an hour are in its "
            "dead-letter queue: the on-call was not paged there (email and chat still were). What to do: read the "
            "notifier's logs (why: throttled, PagerDuty down, the secret unreadable), fix it, then redrive the "
            "queue to its source (pages repeat harmlessly: PagerDuty deduplicates by impairment id).",
        )
        self._alarm(
            "NotificationsDropped",
            "notifications-dropped",
            _custom("NotificationsDropped"),
            "The notifier dropped a page PagerDuty or OpsCenter refused as invalid (a 400: a wrong routing key, a "
            "malformed event): retrying cannot help, so the on-call was not paged there. What to do: read the "
            "notifier's error log (PagerDuty's errors are in it), fix the secret or the integration.",
        )

    def _detector_alarm(self, declaration: Declaration, function: lambda_.IFunction) -> None:
        name = declaration.name
        self._alarm(
            f"{name}Errors",
            declaration.error_alarm,
            function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            f"The {name} function failed (an AWS API error or a bug; bad input is never an error): its events are "
            "retried, then go to the dead-letter queue, and impairments it would have found are not detected. "
            "What to do: read the function's logs (errors, by correlation_id), fix the cause; the dead-letter "
            "alarm tells whether events were lost.",
        )

    def _throttle_alarms(self, functions: dict[str, lambda_.IFunction]) -> None:
        names = sorted(functions)
        chunks = [names[i : i + _ALARM_METRICS_LIMIT] for i in range(0, len(names), _ALARM_METRICS_LIMIT)]
        for number, chunk in enumerate(chunks, start=1):
            throttles = cloudwatch.MathExpression(
                expression=" + ".join(f"FILL(t{i}, 0)" for i in range(len(chunk))),
                using_metrics={
                    f"t{i}": functions[name].metric_throttles(period=FIVE_MINUTES, statistic="Sum")
                    for i, name in enumerate(chunk)
                },
                label="throttled invocations",
                period=FIVE_MINUTES,
            )
            self._alarm(
                f"Throttles{number}",
                f"lambda-throttles-{number}",
                throttles,
                f"Lambda throttled functions of the recovery system ({', '.join(chunk)}): detection or recovery is "
                "delayed, and events may end in the dead-letter queue. What to do: check the account's "
                "concurrency (other functions may use it all), reserve concurrency for these functions or raise "
                "the quota.",
            )

    def _rule_alarms(self, rules: list[WatchedRule]) -> None:
        """One alarm per 10 rules (a metric math alarm's limit): RuleDeliveries, RuleDeliveries2, ..."""
        for number, start in enumerate(range(0, len(rules), _ALARM_METRICS_LIMIT), start=1):
            self._rule_alarm(rules[start : start + _ALARM_METRICS_LIMIT], "" if number == 1 else str(number))

    def _rule_alarm(self, rules: list[WatchedRule], number: str) -> None:
        failed = cloudwatch.MathExpression(
            expression=" + ".join(f"FILL(r{i}, 0)" for i in range(len(rules))),
            using_metrics={f"r{i}": _failed_invocations(watched) for i, watched in enumerate(rules)},
            label="failed invocations",
            period=FIVE_MINUTES,
        )
        self._alarm(
            f"RuleDeliveries{number}",
            f"rule-deliveries-{number}" if number else "rule-deliveries",
            failed,
            "An EventBridge rule of the recovery system could not deliver an event to its target, even to the "
            "dead-letter queue (permissions, a deleted target, the queue's policy): a signal or an impairment "
            "event was lost. What to do: in the EventBridge console find the rule with FailedInvocations, check "
            "its target and the target's permissions; check the workloads by hand meanwhile.",
        )

    def _allow_alarms_to_publish(self, topic: sns.ITopic, key: kms.IKey | None) -> None:
        """CloudWatch publishes alarm notifications as its service principal: the topic's policy
        and its encryption key must let it (for this account's alarms only)."""
        stack = Stack.of(self)
        principal = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        conditions = {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"},
        }
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[principal], actions=["sns:Publish"], resources=[topic.topic_arn], conditions=conditions
            )
        )
        if key is not None:
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[principal],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],  # in a key policy, "*" is this key
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
                )
            )

    # --- practice drills -----------------------------------------------------------------------

    def _practice_drill(self, drill: PracticeDrill, workload_alarms: dict[str, list[str]]) -> scheduler.Schedule:
        stack = Stack.of(self)
        alarm_name = resolve_drill_alarm(drill, workload_alarms)
        alarm_arn = f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:{alarm_name}"
        construct_id = f"Drill-{drill.workload}-{_kebab(alarm_name.removeprefix(drill.workload + '-'))}"
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"Practice drill of {drill.workload}: may only set the state of {alarm_name}",
        )
        statement = iam.PolicyStatement(actions=["cloudwatch:SetAlarmState"], resources=[alarm_arn])
        return scheduler.Schedule(
            self,
            construct_id,
            description=f"Practice drill: {alarm_name} to ALARM ({drill.schedule}, {drill.timezone})",
            schedule=scheduler.ScheduleExpression.expression(drill.schedule, TimeZone.of(drill.timezone)),
            target=scheduler_targets.Universal(
                service="cloudwatch",
                action="setAlarmState",
                role=role,
                policy_statements=[statement],
                retry_attempts=2,
                max_event_age=Duration.hours(1),
                input=scheduler.ScheduleTargetInput.from_object(
                    {
                        "AlarmName": alarm_name,
                        "StateValue": "ALARM",
                        "StateReason": f"{DRILL_REASON_PREFIX} scheduled drill of {drill.workload} "
                        f"({drill.schedule}) at {scheduler.ContextAttribute.scheduled_time}",
                    }
                ),
            ),
        )


def resolve_drill_alarm(drill: PracticeDrill, workload_alarms: dict[str, list[str]]) -> str:
    """The name of the workload alarm a drill sets: the alarm named, or the one alarm of the kind
    named. Raises ConfigError naming what exists when there is no such alarm."""
    alarms = workload_alarms.get(drill.workload, [])
    if drill.alarm in alarms:
        return drill.alarm
    suffix = _KIND_SUFFIX.get(drill.alarm, drill.alarm.replace("_", "-"))
    exact = f"{drill.workload}-{suffix}"
    matches = [a for a in alarms if a == exact or a.startswith(f"{exact}-")]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(alarms) or "none"
    if len(matches) > 1:
        raise ConfigError(
            f"invalid recovery configuration:\n  - practice_drills: {drill.workload} has several {drill.alarm} "
            f"alarms ({', '.join(matches)}): name one"
        )
    raise ConfigError(
        f"invalid recovery configuration:\n  - practice_drills: workload {drill.workload} has no alarm "
        f"{drill.alarm!r} (it has: {available})"
    )


def _failed_invocations(watched: WatchedRule) -> cloudwatch.Metric:
    dimensions = {"RuleName": watched.rule.rule_name}
    if watched.bus_name:
        dimensions["EventBusName"] = watched.bus_name
    return cloudwatch.Metric(
        namespace="AWS/Events",
        metric_name="FailedInvocations",
        dimensions_map=dimensions,
        statistic="Sum",
        period=FIVE_MINUTES,
    )


def _alarm_name(alarm: cloudwatch.Alarm) -> str:
    """The name a workload alarm was given (the L1 property: the L2 attribute is a reference)."""
    return alarm.node.default_child.alarm_name  # type: ignore[union-attr]


def _kebab(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            out.append("-")
        out.append(ch.lower())
    return "".join(out).replace("_", "-")
