"""The stack's resources in moto: deploying the template (tables, functions, rules, schedules,
alarms, topics, queues, the state machine), the runtime config, and CloudWatch alarms changing
state as CloudWatch announces it."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recoveryctl.emulator.hooks import outage_exempt
from recoveryctl.emulator.template import TemplateError


@dataclass
class FunctionSpec:
    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    dead_letter_arn: str | None = None


@dataclass
class Route:
    rule: str
    bus: str
    pattern: Any
    targets: list[dict[str, Any]]


class Resources:
    """Deploying and reading a stack's resources (a mixin of the runtime, runtime.py)."""

    def deploy(self) -> None:
        t = self.template
        ddb, sns, sqs, events, sfn, cw = (
            self.client(s) for s in ("dynamodb", "sns", "sqs", "events", "stepfunctions", "cloudwatch")
        )
        for logical_id in t.of_type("AWS::SQS::Queue"):
            sqs.create_queue(QueueName=t.names[logical_id])
        for logical_id in t.of_type("AWS::SNS::Topic"):
            sns.create_topic(Name=t.names[logical_id])
        for kind in ("AWS::DynamoDB::GlobalTable", "AWS::DynamoDB::Table"):
            for logical_id, resource in t.of_type(kind).items():
                self._create_table(ddb, t.names[logical_id], resource["Properties"])
        if self._root is not self:
            # The primary's global table has a replica here (a standby stack declares no table).
            root = self._root.template
            for logical_id, resource in root.of_type("AWS::DynamoDB::GlobalTable").items():
                replicas = [r.get("Region") for r in resource["Properties"].get("Replicas", [])]
                if self.region in replicas:
                    self._create_table(ddb, root.names[logical_id], resource["Properties"])
        for logical_id in t.of_type("AWS::Events::EventBus"):
            events.create_event_bus(Name=t.names[logical_id])
        for logical_id, resource in t.of_type("AWS::Lambda::Function").items():
            props = t.resolve(resource["Properties"])
            spec = FunctionSpec(
                name=t.names[logical_id],
                arn=t.arn(logical_id),
                handler=props["Handler"],
                environment={k: str(v) for k, v in (props.get("Environment") or {}).get("Variables", {}).items()},
                dead_letter_arn=(props.get("DeadLetterConfig") or {}).get("TargetArn"),
            )
            self.functions[spec.name] = spec
        self._install_runtime_config()
        for logical_id, resource in t.of_type("AWS::StepFunctions::StateMachine").items():
            props = t.resolve(resource["Properties"])
            definition = props.get("DefinitionString")
            if not isinstance(definition, str):
                definition = json.dumps(definition)
            sfn.create_state_machine(
                name=t.names[logical_id], definition=definition, roleArn=props["RoleArn"], type="STANDARD"
            )
        for logical_id, resource in t.of_type("AWS::Events::Rule").items():
            props = t.resolve(resource["Properties"])
            if props.get("State", "ENABLED") != "ENABLED":
                continue
            from moto.events.models import EventPattern

            bus = props.get("EventBusName", "default").split("/")[-1]
            if "EventPattern" not in props:
                # A schedule: fired on demand (fire_schedules), not by events.
                self.schedules.append(
                    Route(t.names[logical_id], bus, props.get("ScheduleExpression"), props.get("Targets", []))
                )
                continue
            self.routes.append(
                Route(
                    t.names[logical_id],
                    bus,
                    EventPattern.load(json.dumps(props["EventPattern"])),
                    props.get("Targets", []),
                )
            )
        for resource in t.of_type("AWS::CloudWatch::Alarm").values():
            self._create_alarm(cw, t.resolve(resource["Properties"]))
        self.outputs = {k: str(t.resolve(v["Value"])) for k, v in t.body.get("Outputs", {}).items()}
        # A human's inbox for escalations: an SQS queue subscribed to every topic.
        inbox = sqs.create_queue(QueueName="escalation-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for logical_id in t.of_type("AWS::SNS::Topic"):
            sns.subscribe(
                TopicArn=t.arn(logical_id),
                Protocol="sqs",
                Endpoint=inbox_arn,
                Attributes={"RawMessageDelivery": "true"},
            )
        self.escalation_inbox = inbox
        self._pages: list[Any] = []  # received on the escalation topic, not yet returned by escalations()
        self._page_resolves: list[Any] = []
        self._subscribe_queues(t, sns)

    def _subscribe_queues(self, t: Any, sns: Any) -> None:
        """The template's SQS subscriptions to its topics (the notifier's queue), and its SQS event
        source mappings, polled when the emulator is idle (routing.py, poll_queues)."""
        for resource in t.of_type("AWS::SNS::Subscription").values():
            props = t.resolve(resource["Properties"])
            if props.get("Protocol") == "sqs":
                raw = str(props.get("RawMessageDelivery", "false")).lower()
                sns.subscribe(
                    TopicArn=props["TopicArn"],
                    Protocol="sqs",
                    Endpoint=props["Endpoint"],
                    Attributes={"RawMessageDelivery": raw},
                )
        self.queue_mappings: list[tuple[str, str]] = []  # (queue ARN, function name)
        for resource in t.of_type("AWS::Lambda::EventSourceMapping").values():
            props = t.resolve(resource["Properties"])
            if ":sqs:" in str(props.get("EventSourceArn")):
                self.queue_mappings.append((props["EventSourceArn"], str(props["FunctionName"]).split(":")[-1]))
        if self.queue_mappings:
            self.idle_hooks.append(self.poll_queues)

    def _install_runtime_config(self) -> None:
        """The functions read plans and guardrails from a file in their code asset
        (core/runtime_config.py); the emulator writes the same configuration, from the template's
        metadata, into a file of its own and points the functions at it."""
        if not any("RECOVERY_CONFIG" in f.environment for f in self.functions.values()):
            return
        folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="recovery-emulator-")))
        self.runtime_config_path = folder / "recovery-config.json"
        self.write_runtime_config()
        for function in self.functions.values():
            if "RECOVERY_CONFIG" in function.environment:
                function.environment["RECOVERY_CONFIG"] = str(self.runtime_config_path)

    def write_runtime_config(self, **overrides: Any) -> None:
        """(Re)write the functions' recovery configuration; `overrides` replace its parts
        (plans, guardrails, maintenance), e.g. a drill scenario's own plans."""
        from core import runtime_config

        declared = self.template.metadata.get("ImpairmentRecovery", {})
        parts = {
            "plans": declared.get("plans", []),
            "guardrails": _json_or_value(declared.get("guardrails", {})),
            "maintenance": {w["name"]: w.get("maintenance") or {} for w in declared.get("workloads", [])},
            "probes": declared.get("probes", []),  # a standby region's probes of the regions it stands by for
            **overrides,
        }
        readiness = parts.get("readiness")
        if readiness is None:
            readiness = _readiness_targets(declared.get("workloads", []), parts["probes"])
        config = runtime_config.build(
            parts["plans"], parts["guardrails"], parts["maintenance"], parts["probes"], readiness=readiness
        )
        self.runtime_config_path.write_text(config.to_json())

    @staticmethod
    def _create_table(ddb: Any, name: str, props: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        indexes = [
            {
                "IndexName": g["IndexName"],
                "KeySchema": g["KeySchema"],
                "Projection": g.get("Projection", {"ProjectionType": "ALL"}),
            }
            for g in props.get("GlobalSecondaryIndexes", [])
        ]
        if indexes:
            kwargs["GlobalSecondaryIndexes"] = indexes
        ddb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )

    @staticmethod
    def _create_alarm(cw: Any, props: dict[str, Any]) -> None:
        keys = (
            "AlarmName",
            "AlarmDescription",
            "MetricName",
            "Namespace",
            "Statistic",
            "Period",
            "Threshold",
            "ComparisonOperator",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "TreatMissingData",
            "Dimensions",
            "Metrics",
            "Tags",
            "ExtendedStatistic",
            "Unit",
        )
        cw.put_metric_alarm(**{k: props[k] for k in keys if k in props})

    # --- CloudWatch: an alarm changes state the way CloudWatch announces it ---
    def set_alarm_state(
        self,
        alarm_name: str,
        state: str,
        reason: str = "Threshold Crossed: injected by a drill",
        deliveries: int = 1,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Put the alarm into `state` and put its "CloudWatch Alarm State Change" event on the
        default bus (`deliveries` times: EventBridge delivers at least once)."""
        from core import clock

        cw = self.client("cloudwatch")
        alarms = cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        if not alarms:
            raise TemplateError(f"no alarm named {alarm_name}")
        alarm = alarms[0]
        # The previous state as CloudWatch announced it (its timestamp is part of the impairment id).
        previous = self._alarm_states.get(alarm_name) or {
            "value": alarm.get("StateValue", "INSUFFICIENT_DATA"),
            "reason": alarm.get("StateReason", "Unchecked: Initial alarm creation"),
            "timestamp": _cw_time(alarm.get("StateUpdatedTimestamp") or clock.utc_now()),
        }
        cw.set_alarm_state(AlarmName=alarm_name, StateValue=state, StateReason=reason)
        now = at or clock.utc_now()
        current = {"value": state, "reason": reason, "timestamp": _cw_time(now)}
        self._alarm_states[alarm_name] = current
        event = {
            "version": "0",
            "id": self.new_id(),
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": self.account,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [alarm["AlarmArn"]],
            "detail": {
                "alarmName": alarm_name,
                "state": current,
                "previousState": previous,
                "configuration": _alarm_configuration(alarm),
            },
        }
        for _ in range(deliveries):
            self.put_event(json.loads(json.dumps(event)))
        return event

    def escalations(self) -> list[dict[str, Any]]:
        """Pages a human received on the escalation topic since the last call, each the sender's
        message read out of its chat notification (core/paging.py); resolves are in `resolves()`."""
        self._drain_inbox()
        pages, self._pages = self._pages, []
        return pages

    def resolves(self) -> list[dict[str, Any]]:
        """Every resolve received on the escalation topic (an impairment that paged ended well)."""
        self._drain_inbox()
        return list(self._page_resolves)

    def _drain_inbox(self) -> None:
        from core import paging

        sqs = self.client("sqs")
        while True:
            batch = sqs.receive_message(QueueUrl=self.escalation_inbox, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return
            for message in batch:
                body = message["Body"]
                with contextlib.suppress(ValueError):
                    body = paging.details(json.loads(body))
                resolve = isinstance(body, dict) and body.get("event_action") == paging.RESOLVE
                (self._page_resolves if resolve else self._pages).append(body)
                sqs.delete_message(QueueUrl=self.escalation_inbox, ReceiptHandle=message["ReceiptHandle"])

    # --- Step Functions ---
    @property
    def state_machine_arn(self) -> str:
        return self.outputs.get("RecoveryStateMachineArn") or next(
            self.template.arn(k) for k in self.template.of_type("AWS::StepFunctions::StateMachine")
        )

    def executions(self) -> list[dict[str, Any]]:
        """This stack's recovery executions, as ListExecutions lists them."""
        with outage_exempt():
            sfn = self.client("stepfunctions")
            found: list[dict[str, Any]] = []
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn):
                found.extend(page["executions"])
        return found

    def wait_for_executions(self, timeout: float = 120.0, quiet: bool = False) -> None:
        """Run until everything settled (pump); `quiet`: give up without raising after `timeout`."""
        try:
            self.pump(timeout=timeout)
        except TimeoutError:
            if not quiet:
                raise

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        with outage_exempt():
            sfn = self.client("stepfunctions")
            events: list[dict[str, Any]] = []
            for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
                events.extend(page["events"])
        return events


def _alarm_configuration(alarm: dict[str, Any]) -> dict[str, Any]:
    if alarm.get("Metrics"):
        metrics = []
        for query in alarm["Metrics"]:
            item: dict[str, Any] = {"id": query["Id"], "returnData": query.get("ReturnData", True)}
            if "Expression" in query:
                item["expression"] = query["Expression"]
            if "MetricStat" in query:
                stat = query["MetricStat"]
                item["metricStat"] = {
                    "metric": {
                        "namespace": stat["Metric"]["Namespace"],
                        "name": stat["Metric"]["MetricName"],
                        "dimensions": {d["Name"]: d["Value"] for d in stat["Metric"].get("Dimensions", [])},
                    },
                    "period": stat["Period"],
                    "stat": stat["Stat"],
                }
            metrics.append(item)
    else:
        metrics = [
            {
                "id": "m1",
                "metricStat": {
                    "metric": {
                        "namespace": alarm.get("Namespace"),
                        "name": alarm.get("MetricName"),
                        "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                    },
                    "period": alarm.get("Period"),
                    "stat": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
                },
                "returnData": True,
            }
        ]
    return {"description": alarm.get("AlarmDescription", ""), "metrics": metrics}


def _cw_time(value: datetime) -> str:
    """CloudWatch's timestamp format in alarm events: 2026-11-20T09:14:31.104+0000."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _json_or_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _readiness_targets(workloads: list[dict[str, Any]], probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the readiness check knows of the workloads, as the stack writes it (infra's own rule)."""
    from core.runtime_config import RegionProbe
    from recoveryctl import infra_importable

    infra_importable()
    from infra.workload_config import Workload, readiness_targets

    declared = [Workload.model_validate(w) for w in workloads]
    targets = readiness_targets(declared, [RegionProbe.model_validate(p) for p in probes])
    return [t.model_dump(mode="json") for t in targets]
