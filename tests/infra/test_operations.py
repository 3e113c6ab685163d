"""Who watches the watcher: the dashboard, the alarms on the recovery system itself, and the
scheduled practice drills, read from the synthesized template."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from detectors.alarm import AlarmStateChangeEvent, classify
from infra.config import ConfigError, PracticeDrill, validate
from tests.builders import FakeInventory
from tests.infra import cfn

SELF_ALARM_PREFIX = "ImpairmentRecovery-recovery-system-"


def _name(alarm: dict[str, Any]) -> str:
    return cfn.resolve(alarm["Properties"]["AlarmName"])


@pytest.fixture(scope="module")
def self_alarms(resources) -> dict[str, dict[str, Any]]:
    found = {
        _name(a): a
        for a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()
        if _name(a).startswith(SELF_ALARM_PREFIX)
    }
    assert found, "no alarm on the recovery system"
    return found


def _metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric an alarm reads: its single metric, or those of its metric math."""
    props = alarm["Properties"]
    if "MetricName" in props:
        return [{"Namespace": props["Namespace"], "MetricName": props["MetricName"], "Dimensions": props["Dimensions"]}]
    return [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]


def _dimension(metric: dict[str, Any], name: str) -> Any:
    return next(d["Value"] for d in metric["Dimensions"] if d["Name"] == name)


def _by_metric(self_alarms, namespace: str, metric_name: str) -> list[dict[str, Any]]:
    return [
        a
        for a in self_alarms.values()
        if any(m["Namespace"] == namespace and m["MetricName"] == metric_name for m in _metrics(a))
    ]


# --- the alarms -----------------------------------------------------------------------------


def test_every_self_alarm_notifies_the_escalation_topic_and_says_what_to_do(self_alarms, resources):
    topic, _ = cfn.only(resources, "AWS::SNS::Topic")
    for name, alarm in self_alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": topic}], name
        assert props["OKActions"] == [{"Ref": topic}], name
        assert "What to do:" in props["AlarmDescription"], name
        # A plan's readiness alarm keeps its state between checks (a late check is not "ready")
        expected = "ignore" if "-plan-not-ready-" in name else "notBreaching"
        assert props["TreatMissingData"] == expected, name


def test_the_workflow_is_watched_for_unpaged_failures_timeouts_and_throttling(self_alarms, resources):
    machine, _ = cfn.state_machine(resources)
    for metric_name in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled"):
        (alarm,) = _by_metric(self_alarms, "AWS/States", metric_name)
        metric = next(m for m in _metrics(alarm) if m["MetricName"] == metric_name)
        assert _dimension(metric, "StateMachineArn") == {"Ref": machine}
    # Failed executions beyond escalations: an escalation already paged someone
    (failed,) = _by_metric(self_alarms, "AWS/States", "ExecutionsFailed")
    expression = next(m["Expression"] for m in failed["Properties"]["Metrics"] if "Expression" in m)
    assert expression == "FILL(failed, 0) - FILL(escalated, 0)"
    assert any(m["MetricName"] == "RecoveriesEscalated" for m in _metrics(failed))


def test_dead_executions_aborts_and_failed_pages_alarm(self_alarms, resources):
    machine, _ = cfn.state_machine(resources)
    (aborted,) = _by_metric(self_alarms, "AWS/States", "ExecutionsAborted")
    assert _dimension(_metrics(aborted)[0], "StateMachineArn") == {"Ref": machine}
    for metric_name in ("ExecutionsDied", "PagesFailed"):
        (alarm,) = _by_metric(self_alarms, "ImpairmentRecovery", metric_name)
        assert alarm["Properties"]["Threshold"] == 1


def test_the_dead_letter_queue_alarms_on_its_first_message(self_alarms, resources):
    queues = cfn.of_type(resources, "AWS::SQS::Queue")
    (alarm,) = _by_metric(self_alarms, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    queue = _dimension(_metrics(alarm)[0], "QueueName")
    assert cfn.get_att(queue) in queues
    assert alarm["Properties"]["Threshold"] == 1
    assert alarm["Properties"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_each_detector_has_an_error_alarm_and_every_function_a_throttle_alarm(self_alarms, resources):
    by_handler = cfn.functions_by_handler(resources)
    from detectors.registry import DETECTORS

    detectors = {by_handler[d.handler] for d in DETECTORS if d.handler in by_handler}
    assert len(detectors) >= 5
    errors = {
        _dimension(_metrics(a)[0], "FunctionName")["Ref"] for a in _by_metric(self_alarms, "AWS/Lambda", "Errors")
    }
    assert errors == detectors
    throttled = {
        _dimension(m, "FunctionName")["Ref"]
        for a in _by_metric(self_alarms, "AWS/Lambda", "Throttles")
        for m in _metrics(a)
    }
    assert throttled == set(cfn.of_type(resources, "AWS::Lambda::Function"))
    for alarm in _by_metric(self_alarms, "AWS/Lambda", "Throttles"):
        assert len(alarm["Properties"]["Metrics"]) <= 11  # at most 10 metrics and their sum


def test_each_detector_s_alarms_are_named_as_it_declares(self_alarms, synthesized, resources):
    # Its errors alarm, and the alarms on the metrics it emits, by the names docs/operations.md lists
    by_handler = cfn.functions_by_handler(resources)
    for built in synthesized.stack.detection.built:
        declaration = built.declaration
        errors = self_alarms[SELF_ALARM_PREFIX + declaration.error_alarm]
        assert _dimension(_metrics(errors)[0], "FunctionName") == {"Ref": by_handler[declaration.handler]}
        for declared in declaration.alarms:
            (alarm,) = _by_metric(self_alarms, "ImpairmentRecovery", declared.metric)
            assert _name(alarm) == SELF_ALARM_PREFIX + declared.name


def test_an_account_the_sweep_could_not_look_in_alarms(self_alarms):
    # The sweep function succeeds when only one of its accounts fails: its error alarm stays OK
    (alarm,) = _by_metric(self_alarms, "ImpairmentRecovery", "SweepAccountFailed")
    assert alarm["Properties"]["Threshold"] == 1
    assert "account not swept" in alarm["Properties"]["AlarmDescription"]


def test_every_rule_is_watched_for_failed_deliveries(self_alarms, resources):
    (alarm,) = _by_metric(self_alarms, "AWS/Events", "FailedInvocations")
    watched = {_dimension(m, "RuleName")["Ref"] for m in _metrics(alarm)}
    assert watched == set(cfn.of_type(resources, "AWS::Events::Rule"))
    # The rule on the recovery bus is named with its bus, as EventBridge publishes it
    bus, _ = cfn.only(resources, "AWS::Events::EventBus")
    on_bus = [m for m in _metrics(alarm) if any(d["Name"] == "EventBusName" for d in m["Dimensions"])]
    assert len(on_bus) == 1 and _dimension(on_bus[0], "EventBusName") == {"Ref": bus}


def test_cloudwatch_may_publish_alarms_to_the_encrypted_topic(resources):
    _, policy = cfn.only(resources, "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Allow"
        and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and s["Action"] == "sns:Publish"
        for s in statements
    )
    keys = cfn.of_type(resources, "AWS::KMS::Key")
    assert any(
        s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and "kms:GenerateDataKey*" in s["Action"]
        for key in keys.values()
        for s in key["Properties"]["KeyPolicy"]["Statement"]
    )


def test_self_alarms_never_start_a_recovery_of_the_recovery_system(self_alarms, resources, config):
    # Given the alarms on the recovery system, with exactly the tags the template gives them
    workload_prefixes = [f"{w.name}-" for w in config.workloads]
    for name, alarm in self_alarms.items():
        tags = {t["Key"]: t["Value"] for t in alarm["Properties"].get("Tags", [])}
        assert not any(key.startswith("recovery:") for key in tags), name
        # They are not named like a workload's alarms (the alarm rule matches those by prefix)
        assert not any(name.startswith(prefix) for prefix in workload_prefixes), name
        # When one goes to ALARM, the alarm detector finds it is not managed: no impairment
        arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
        event = AlarmStateChangeEvent.model_validate(
            {
                "version": "0",
                "id": "0d2f7a52-0000-4000-8000-000000000001",
                "detail-type": "CloudWatch Alarm State Change",
                "source": "aws.cloudwatch",
                "account": "123456789012",
                "time": "2026-11-20T10:00:00Z",
                "region": "us-east-1",
                "resources": [arn],
                "detail": {
                    "alarmName": name,
                    "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2026-11-20T10:00:00Z"},
                    "previousState": {"value": "OK", "reason": "", "timestamp": "2026-11-20T09:00:00Z"},
                },
            }
        )
        outcome = classify(
            event,
            FakeInventory(tags={arn: tags}),
            (config.managed_tag_key, config.managed_tag_value),
            datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC),
        )
        assert outcome.model is None, name
        assert "not managed" in outcome.reason


# --- the dashboard --------------------------------------------------------------------------


def test_the_dashboard_shows_detection_recovery_actions_and_the_system_health(resources):
    _, dashboard = cfn.only(resources, "AWS::CloudWatch::Dashboard")
    body = json.loads(cfn.resolve(dashboard["Properties"]["DashboardBody"]))
    titles = {w["properties"].get("title") for w in body["widgets"]}
    for title in (
        "MTTD (seconds)",
        "MTTR (seconds)",
        "Recovery outcomes",
        "Detections by type and severity",
        "Actions: succeeded and failed, by action and phase",
        "Action duration p90 (ms), by action and phase",
        "Workflow executions",
        "Function errors",
        "Function throttles",
        "Dead-letter queue depth",
        "Alarms on the recovery system",
    ):
        assert title in titles
    widgets = {w["properties"].get("title"): w["properties"] for w in body["widgets"]}
    mttd = json.dumps(widgets["MTTD (seconds)"]["metrics"])
    assert all(stat in mttd for stat in ('"p50"', '"p90"', '"p99"'))
    outcomes = json.dumps(widgets["Recovery outcomes"]["metrics"])
    for name in (
        "RecoveriesSucceeded",
        "RecoveriesFailed",
        "RecoveriesRolledBack",
        "RecoveriesEscalated",
        "RecoveriesSkipped",
    ):
        assert name in outcomes
    detections = json.dumps(widgets["Detections by type and severity"]["metrics"])
    assert "impairment_type,severity" in detections and "ImpairmentsDetected" in detections
    executions = json.dumps(widgets["Workflow executions"]["metrics"])
    for name in ("ExecutionsStarted", "ExecutionsFailed", "ExecutionThrottled"):
        assert name in executions
    assert len(widgets["Alarms on the recovery system"]["alarms"]) == len(
        [a for a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values() if _name(a).startswith(SELF_ALARM_PREFIX)]
    )


# --- practice drills ------------------------------------------------------------------------

WORKLOAD = {"name": "drill-target", "auto_scaling_group": "drill-target-asg"}


def _drill_config(**drill: Any) -> dict[str, Any]:
    return {
        "workloads": [WORKLOAD],
        "practice_drills": [{"workload": "drill-target", "alarm": "status_check", "schedule": "rate(7 days)", **drill}],
    }


@pytest.mark.parametrize(
    ("drill", "message"),
    [
        ({"workload": "nope"}, "practice_drills.0.workload: no workload is named 'nope' (workloads: drill-target)"),
        ({"schedule": "every week"}, "not a schedule expression"),
        ({"schedule": "rate(0 days)"}, "a rate must be at least 1"),
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
    ],
)
def test_a_bad_practice_drill_fails_validation_naming_what_to_fix(drill, message):
    with pytest.raises(ConfigError) as caught:
        validate(_drill_config(**drill))
    assert message in str(caught.value)
    assert "practice_drills" in str(caught.value) or "unknown workload" in str(caught.value)


def test_a_drill_names_an_alarm_or_a_kind_the_workload_has():
    from infra.constructs.operations import resolve_drill_alarm

    alarms = {"web": ["web-status-check", "web-cpu", "web-5xx-rate", "web-canary-home", "web-canary-login"]}

    def resolve(alarm: str) -> str:
        return resolve_drill_alarm(PracticeDrill(workload="web", alarm=alarm, schedule="rate(1 day)"), alarms)

    assert resolve("status_check") == "web-status-check"
    assert resolve("web-cpu") == "web-cpu"
    assert resolve("error_rate") == "web-5xx-rate"
    assert resolve("web-canary-login") == "web-canary-login"
    with pytest.raises(ConfigError, match="several canary alarms"):
        resolve("canary")
    with pytest.raises(ConfigError, match=r"web has no alarm 'unhealthy_hosts' \(it has: web-status-check"):
        resolve("unhealthy_hosts")


@pytest.fixture(scope="module")
def drill_template() -> dict[str, Any]:
    """A stack with practice drills: synthesized once for the tests below."""
    import aws_cdk as cdk

    from infra.stack import RecoveryStack
    from tests.conftest import cdk_context

    context = cdk_context()
    config = validate(
        {
            "stack_name": "DrillStack",
            "workloads": [{**WORKLOAD, "rto_seconds": 600}],
            "practice_drills": [
                {"workload": "drill-target", "alarm": "status_check", "schedule": "rate(7 days)"},
                {
                    "workload": "drill-target",
                    "alarm": "drill-target-cpu",
                    "schedule": "cron(0 10 ? * TUE *)",
                    "timezone": "Europe/Paris",
                },
            ],
        }
    )
    app = cdk.App(context={k: v for k, v in context.items() if k != "recovery"})
    stack = RecoveryStack(app, config.stack_name, config=config)
    errors = [m for m in app.synth().get_stack_artifact(stack.artifact_id).messages if m.level == "error"]
    assert not errors, [m.entry.data for m in errors]  # cdk-nag included
    from aws_cdk.assertions import Template

    return Template.from_stack(stack).to_json()


def test_each_practice_drill_is_a_schedule_setting_its_alarm_to_alarm(drill_template):
    resources = drill_template["Resources"]
    schedules = sorted(
        cfn.of_type(resources, "AWS::Scheduler::Schedule").values(),
        key=lambda s: s["Properties"]["ScheduleExpression"],
    )
    assert [
        (s["Properties"]["ScheduleExpression"], s["Properties"]["ScheduleExpressionTimezone"]) for s in schedules
    ] == [
        ("cron(0 10 ? * TUE *)", "Europe/Paris"),
        ("rate(7 days)", "UTC"),
    ]
    for schedule, alarm in zip(schedules, ["drill-target-cpu", "drill-target-status-check"], strict=True):
        target = schedule["Properties"]["Target"]
        assert cfn.resolve(target["Arn"]) == "arn:${AWS::Partition}:scheduler:::aws-sdk:cloudwatch:setAlarmState"
        request = json.loads(target["Input"])
        assert request["AlarmName"] == alarm
        assert request["StateValue"] == "ALARM"
        assert request["StateReason"].startswith("[practice drill] ")
        assert "<aws.scheduler.scheduled-time>" in request["StateReason"]
        # Its own role, allowed only to set the state of that one alarm
        role = resources[cfn.get_att(target["RoleArn"])]
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "scheduler.amazonaws.com"
        }
        policies = [
            p
            for p in cfn.of_type(resources, "AWS::IAM::Policy").values()
            if {"Ref": cfn.get_att(target["RoleArn"])} in p["Properties"]["Roles"]
        ]
        statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
        assert [s["Action"] for s in statements] == ["cloudwatch:SetAlarmState"]
        (resource,) = [cfn.resolve(s["Resource"]) for s in statements]
        assert resource.endswith(f":alarm:{alarm}")


def test_the_alarm_detector_marks_what_a_scheduled_drill_sets_as_a_drill(drill_template):
    from detectors.alarm import is_drill

    (schedule, *_) = cfn.of_type(drill_template["Resources"], "AWS::Scheduler::Schedule").values()
    reason = json.loads(schedule["Properties"]["Target"]["Input"])["StateReason"]
    assert is_drill(reason.replace("<aws.scheduler.scheduled-time>", "2026-11-24T10:00:00Z"))


def test_a_drill_of_an_alarm_the_workload_lacks_fails_the_synthesis_clearly():
    import aws_cdk as cdk

    from infra.stack import RecoveryStack
    from tests.conftest import cdk_context

    # A workload without a load balancer has no unhealthy-hosts alarm
    config = validate(_drill_config(alarm="unhealthy_hosts") | {"stack_name": "BadDrill"})
    context = {k: v for k, v in cdk_context().items() if k != "recovery"}
    with pytest.raises(ConfigError, match="workload drill-target has no alarm 'unhealthy_hosts'"):
        RecoveryStack(cdk.App(context=context), config.stack_name, config=config)


def test_audit_retention_is_configurable_and_defaults_to_a_year():
    assert validate({}).audit_retention_days == 365
    assert validate({"audit_retention_days": 0}).audit_retention_days == 0
    with pytest.raises(ConfigError, match="audit_retention_days"):
        validate({"audit_retention_days": -1})


def test_every_function_knows_the_audit_retention(resources, config):
    for key, function in cfn.of_type(resources, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["AUDIT_RETENTION_DAYS"] == str(config.audit_retention_days), key


def test_the_audit_table_expires_records_and_keeps_point_in_time_recovery(resources):
    (_, table) = next(iter(cfn.of_type(resources, "AWS::DynamoDB::GlobalTable").items()))
    props = table["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert all(r["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] for r in props["Replicas"])


def test_a_workload_with_a_recovery_time_objective_has_an_alarm_on_recoveries_beyond_it(drill_template):
    resources = drill_template["Resources"]
    (alarm,) = [
        a
        for a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()
        if cfn.resolve(a["Properties"]["AlarmName"]) == "DrillStack-recovery-system-rto-missed-drill-target"
    ]
    props = alarm["Properties"]
    (metric,) = _metrics(alarm)
    assert metric["MetricName"] == "RecoveryTimeObjectiveMissed"
    assert {d["Name"]: d["Value"] for d in metric["Dimensions"]} == {
        "service": "impairment-recovery",
        "workload": "drill-target",
    }
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert props["AlarmActions"] and "600 s" in props["AlarmDescription"]


def test_the_functions_are_given_each_workloads_objective_and_no_alarm_for_workloads_without_one(self_alarms):
    config = validate({"workloads": [{**WORKLOAD, "rto_seconds": 900}, {**WORKLOAD, "name": "other"}]})
    assert config.runtime_config().rto_seconds == {"drill-target": 900}
    assert not [name for name in self_alarms if "rto-missed" in name]  # the default stack declares none
