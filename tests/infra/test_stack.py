"""What users of the deployment rely on, read from the synthesized template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from actions.registry import ACTIONS, ALIASES
from core.contract import CLEARED, DETECTED, EVENT_SOURCE, ImpairmentType, json_schema
from detectors.registry import DETECTORS, EKS_CHECK, REGION_PROBE
from infra import constants
from infra.permissions import ZONE_SCOPED, hosted_zones
from tests.infra import cfn

ACTION_TASKS = ["ReplaceInstance", "ScaleOut", "RollbackReplaceInstance", "RollbackScaleOut"]
FLOW_STATES = [
    "Admit",
    "RunActions",
    "WaitBeforeVerify",
    "Verify",
    "Verified?",
    "Finalize",
    "PrepareRollback",
    "Rollback",
    "Escalate",
]


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource["Properties"].get("Tags", [])}


@pytest.fixture(scope="module")
def definition(resources) -> dict[str, Any]:
    _, state_machine = cfn.state_machine(resources)
    return cfn.state_machine_definition(state_machine)


@pytest.fixture(scope="module")
def states(definition) -> dict[str, dict[str, Any]]:
    return cfn.all_states(definition)


# --- the bus and the contract -------------------------------------------------------------


def test_custom_bus_with_an_archive_of_impairment_events(resources):
    bus_id, bus = cfn.only(resources, "AWS::Events::EventBus")
    assert bus["Properties"]["Name"] != "default"
    _, archive = cfn.only(resources, "AWS::Events::Archive")
    assert cfn.get_att(archive["Properties"]["SourceArn"]) == bus_id
    assert archive["Properties"]["EventPattern"] == {"source": [EVENT_SOURCE]}
    assert archive["Properties"]["RetentionDays"] >= 1


def test_schema_registry_publishes_the_impairment_contract(resources):
    _, registry = cfn.only(resources, "AWS::EventSchemas::Registry")
    _, schema = cfn.only(resources, "AWS::EventSchemas::Schema")
    properties = schema["Properties"]
    assert properties["RegistryName"] == registry["Properties"]["RegistryName"] == constants.SCHEMA_REGISTRY
    assert properties["Type"] == "JSONSchemaDraft4"
    assert properties["SchemaName"] == constants.SCHEMA_NAME
    assert json.loads(properties["Content"]) == json_schema()


# --- detection ----------------------------------------------------------------------------


def _rule_for(resources, function_handler: str) -> dict[str, Any]:
    function_id = cfn.functions_by_handler(resources)[function_handler]
    rules = [
        rule
        for rule in cfn.of_type(resources, "AWS::Events::Rule").values()
        if any(cfn.get_att(t["Arn"]) == function_id for t in rule["Properties"].get("Targets", []))
    ]
    assert len(rules) == 1, f"expected one rule targeting {function_handler}, found {len(rules)}"
    return rules[0]


def _assert_target_is_safe(rule: dict[str, Any], resources) -> None:
    """Undeliverable events land in the dead-letter queue after bounded retries."""
    (target,) = rule["Properties"]["Targets"]
    queue_id = cfn.get_att(target["DeadLetterConfig"]["Arn"])
    assert resources[queue_id]["Type"] == "AWS::SQS::Queue"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] >= 60


def test_alarm_rule_on_the_default_bus_sends_protected_alarms_to_the_detector(resources, config):
    rule = _rule_for(resources, "detectors.alarm.handler")
    properties = rule["Properties"]
    assert properties.get("EventBusName", "default") == "default"  # AWS sends alarm events there
    assert properties["EventPattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": f"{w.name}-"} for w in sorted(config.workloads, key=lambda w: w.name)]},
    }
    assert properties["State"] == "ENABLED"
    _assert_target_is_safe(rule, resources)


def test_every_alarm_of_the_stack_reaches_the_detector(resources):
    prefixes = [
        p["prefix"]
        for p in _rule_for(resources, "detectors.alarm.handler")["Properties"]["EventPattern"]["detail"]["alarmName"]
    ]
    for alarm_id, alarm in _workload_alarms(resources).items():
        name = alarm["Properties"]["AlarmName"]
        assert any(name.startswith(p) for p in prefixes), f"{alarm_id} ({name}) matches no prefix of {prefixes}"


def test_impairment_events_on_the_bus_start_a_recovery(resources):
    rule = _rule_for(resources, "orchestration.start.handler")
    properties = rule["Properties"]
    bus_id, _ = cfn.only(resources, "AWS::Events::EventBus")
    assert properties["EventBusName"] == {"Ref": bus_id}
    assert properties["EventPattern"]["source"] == [EVENT_SOURCE]
    assert sorted(properties["EventPattern"]["detail-type"]) == sorted([DETECTED, CLEARED])
    _assert_target_is_safe(rule, resources)


# --- storage and escalation ---------------------------------------------------------------


def test_table_keeps_its_history_encrypted_and_expires_locks(template):
    template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "SSESpecification": {"SSEEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            "GlobalSecondaryIndexes": Match.array_with([Match.object_like({"IndexName": "gsi1"})]),
            "Replicas": [Match.object_like({"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})],
        },
    )


def test_escalation_topic_is_encrypted_with_a_rotated_key(resources):
    _, topic = cfn.only(resources, "AWS::SNS::Topic")
    key_id = cfn.get_att(topic["Properties"]["KmsMasterKeyId"])
    assert resources[key_id]["Type"] == "AWS::KMS::Key"
    assert resources[key_id]["Properties"]["EnableKeyRotation"] is True


def test_dead_letter_queue_is_encrypted(resources):
    _, queue = cfn.only(resources, "AWS::SQS::Queue")
    properties = queue["Properties"]
    assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties
    assert properties["MessageRetentionPeriod"] == 14 * 24 * 3600  # the longest SQS keeps a message


# --- protected workloads ------------------------------------------------------------------


def _workload_alarm(resources, workload: str, metric: str) -> dict[str, Any]:
    found = [
        alarm
        for alarm in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == metric and _tags(alarm).get("recovery:workload") == workload
    ]
    assert len(found) == 1, f"expected one {metric} alarm for {workload}, found {len(found)}"
    return found[0]


def _assert_alarm_tags(alarm: dict[str, Any], config, workload, impairment_type: str, severity: str) -> None:
    tags = _tags(alarm)
    assert tags[config.managed_tag_key] == config.managed_tag_value
    assert tags["recovery:workload"] == workload.name
    assert tags["recovery:impairment-type"] == impairment_type
    assert ImpairmentType(impairment_type)  # a type the contract knows
    assert tags["recovery:severity"] == severity


def test_unhealthy_hosts_alarm_per_workload_behind_a_load_balancer(resources, config):
    workloads = [w for w in config.workloads if w.target_group_arn]
    assert workloads, "cdk.json protects no workload behind a load balancer: nothing to check"
    for workload in workloads:
        alarm = _workload_alarm(resources, workload.name, "UnHealthyHostCount")
        properties = alarm["Properties"]
        # CloudWatch dimensions are the ARN's resource part ("targetgroup/...", "app/...").
        expected = {
            "TargetGroup": workload.target_group_arn.rsplit(":", 1)[1],
            "LoadBalancer": workload.load_balancer_arn.rsplit(":", 1)[1].removeprefix("loadbalancer/"),
        }
        assert {d["Name"]: d["Value"] for d in properties["Dimensions"]} == expected
        assert properties["Namespace"] == (
            "AWS/NetworkELB" if workload.load_balancer_type == "net" else "AWS/ApplicationELB"
        )
        assert properties["Period"] == 60  # ELB publishes its metrics every 60 s; faster is the target health sweep
        _assert_alarm_tags(
            alarm, config, workload, "service_degradation", workload.alarms.unhealthy_hosts.severity.value
        )


def test_status_check_alarm_per_workload(resources, config):
    workloads = [w for w in config.workloads if w.auto_scaling_group]
    assert workloads, "cdk.json protects no Auto Scaling group: nothing to check"
    for workload in workloads:
        alarm = _workload_alarm(resources, workload.name, "StatusCheckFailed")
        properties = alarm["Properties"]
        assert properties["Namespace"] == "AWS/EC2"
        assert properties["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": workload.auto_scaling_group}]
        _assert_alarm_tags(alarm, config, workload, "instance_failure", workload.alarms.status_check.severity.value)


# --- functions ----------------------------------------------------------------------------


def test_every_function_is_traced_and_uses_the_layer_built_for_its_runtime(resources):
    functions = cfn.of_type(resources, "AWS::Lambda::Function")
    assert functions
    layer_id, layer = cfn.only(resources, "AWS::Lambda::LayerVersion")
    for function_id, function in functions.items():
        properties = function["Properties"]
        assert properties["TracingConfig"] == {"Mode": "Active"}, function_id
        assert properties["Layers"] == [{"Ref": layer_id}], function_id
        # The layer is built for one Python version and architecture: they must be the function's.
        assert layer["Properties"]["CompatibleRuntimes"] == [properties["Runtime"]], function_id
        assert layer["Properties"]["CompatibleArchitectures"] == properties["Architectures"], function_id


def test_no_function_depends_on_a_public_layer(synthesized):
    # A public layer's ARN names one partition and its versions differ by region: none is referenced.
    assert ":layer:" not in json.dumps(synthesized.template_json)


def test_every_function_calls_sts_in_its_own_region(resources):
    # A member role assumed through the global STS endpoint (us-east-1) fails with us-east-1:
    # every function uses its region's endpoint, whatever its runtime's boto3 defaults to.
    functions = cfn.of_type(resources, "AWS::Lambda::Function")
    assert functions
    for function_id, function in functions.items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert variables.get("AWS_STS_REGIONAL_ENDPOINTS") == "regional", function_id


def test_every_function_has_its_own_role(resources):
    functions = cfn.of_type(resources, "AWS::Lambda::Function")
    roles = {function_id: cfn.get_att(f["Properties"]["Role"]) for function_id, f in functions.items()}
    shared = {role for role in roles.values() if list(roles.values()).count(role) > 1}
    assert not shared, f"roles shared between functions: {shared}"
    other_users = [
        key
        for key, resource in resources.items()
        if resource["Type"] != "AWS::Lambda::Function" and set(roles.values()) & _role_refs(resource)
    ]
    assert not other_users, f"function roles also used by {other_users}"
    for function_id, role_id in roles.items():
        trust = resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}], function_id


def _role_refs(resource: dict[str, Any]) -> set[str]:
    """Roles a non-function resource assumes (its Role/RoleArn), not the policies attached to them."""
    properties = resource.get("Properties", {})
    refs = set()
    for key in ("Role", "RoleArn"):
        if isinstance(properties.get(key), dict):
            refs.add(cfn.get_att(properties[key]))
    return refs


# --- the recovery workflow ----------------------------------------------------------------


def test_state_machine_is_standard_traced_and_logs_everything(resources):
    _, state_machine = cfn.state_machine(resources)
    properties = state_machine["Properties"]
    assert properties["StateMachineType"] == "STANDARD"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert properties["LoggingConfiguration"]["Level"] == "ALL"
    (destination,) = properties["LoggingConfiguration"]["Destinations"]
    log_group = cfn.get_att(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"


def test_the_state_machine_outlives_every_plans_approval_time_and_capacity_return(definition, config):
    # The backstop time-box must not cut a recovery short: the az plan waits 2 h to return its
    # emergency capacity after a 30 min plan; the region failover waits up to 30 min for approval.
    longest = 0
    for plan in config.parsed_plans():
        returns = [
            s.params.get("return_after_seconds", 3600)
            for s in plan.steps
            if s.action == "scale_out" and not s.params.get("keep")
        ]
        approval = plan.approval_timeout_seconds if plan.requires_approval else 0
        longest = max(longest, approval + plan.timeout_seconds + max(returns, default=0))
    assert longest == 1800 + 7200
    assert definition["TimeoutSeconds"] > longest


def test_definition_has_the_recovery_flow(definition, states):
    assert definition["StartAt"] == "Admit"
    missing = [name for name in FLOW_STATES + ACTION_TASKS if name not in states]
    assert not missing, f"missing states: {missing}; present: {sorted(states)}"
    for name in ACTION_TASKS:
        assert states[name]["Type"] == "Task", name


def test_admit_selects_the_plan_in_the_same_task_and_its_result_is_the_state(states):
    # One task for both (issue 16): its result replaces the state (the handler adds $.admission
    # and $.plan to the execution's input), and guardrails come next, with no state between.
    admit = states["Admit"]
    assert "SelectPlan" not in states
    assert admit["ResultPath"] == "$"
    assert admit["Next"] == "CheckGuardrails"
    assert admit["Parameters"]["input.$"] == "$$.Execution.Input"
    catches = {error: catch["Next"] for catch in admit["Catch"] for error in catch["ErrorEquals"]}
    assert catches == {
        "RecoveryInProgress": "Skipped",
        "RecoveryPaused": "Escalate",
        "InvalidInput": "Rejected",
        "States.ALL": "Escalate",  # NoMatchingPlan and InvalidPlan among them: a human decides
    }
    assert all(catch["ResultPath"] == "$.error" for catch in admit["Catch"])


def test_every_state_that_can_fail_has_a_way_out(definition):
    # A task or map that fails without a catch ends the execution with its locks held and no one
    # told: every one catches States.ALL, but the last resorts, Escalate and CapacityNotReturned
    # (should they fail, ExecutionEnded pages again from the record).
    for name, state in definition["States"].items():
        if state["Type"] not in ("Task", "Map") or name in ("Escalate", "CapacityNotReturned"):
            continue
        caught = [error for catch in state.get("Catch", []) for error in catch["ErrorEquals"]]
        assert "States.ALL" in caught, f"{name} has no catch-all: {caught}"


def test_a_plan_approved_after_a_wait_is_checked_again_before_it_acts(states, definition):
    assert states["RequestApproval"]["Next"] == "RecheckGuardrails"
    assert states["RecheckGuardrails"]["Resource"] == states["CheckGuardrails"]["Resource"]
    assert states["RecheckGuardrails"]["Next"] == "BlockedAfterApproval?"
    assert states["BlockedAfterApproval?"]["Default"] == "RunActions"
    assert any(c["Next"] == "Escalate" for c in states["RecheckGuardrails"]["Catch"])


def test_a_blocked_recovery_waits_and_checks_again_and_an_unblocked_one_goes_straight_on(states):
    # Blocking conditions (core/blocking.py): the first rule of the Choice an unblocked recovery
    # passes anyway, so it makes no more transitions; a blocked one loops Wait -> CheckGuardrails.
    assert states["CheckGuardrails"]["Next"] == "ApprovalRequired?"
    first = states["ApprovalRequired?"]["Choices"][0]
    assert first == {"Variable": "$.guardrails.blocked", "IsPresent": True, "Next": "WaitWhileBlocked"}
    assert states["WaitWhileBlocked"]["SecondsPath"] == "$.guardrails.blocked.wait_seconds"
    assert states["WaitWhileBlocked"]["Next"] == "CheckGuardrails"
    after_approval = states["BlockedAfterApproval?"]["Choices"][0]
    assert after_approval["Next"] == "WaitWhileBlockedAfterApproval"
    assert states["WaitWhileBlockedAfterApproval"]["Next"] == "RecheckGuardrails"


def test_capacity_not_returned_is_told_and_the_recovery_stands(states):
    (catch,) = states["ReturnCapacity"]["Catch"]
    assert catch["Next"] == "CapacityNotReturned" and catch["ResultPath"] == "$.return_error"
    assert states["CapacityNotReturned"]["Resource"] == states["Escalate"]["Resource"]
    assert states["CapacityNotReturned"]["Next"] == "Recovered"


@pytest.mark.parametrize("prefix", ["", "Cleanup"])
def test_a_storms_leader_waits_for_the_window_then_pages_the_summary(resources, prefix):
    # The first escalation of a storm pages at once; its execution, holding nothing, waits for
    # the window's end and sends the one summary (orchestration/storm.py); any other ends at once.
    name = "RecoveryCleanup" if prefix else "Recovery"
    states = cfn.all_states(cfn.state_machine_definition(cfn.state_machine(resources, name)[1]))
    choice = states[f"{prefix}StormLeader?"]
    assert states[f"{prefix}Escalate"]["Next"] == f"{prefix}StormLeader?"
    (leader,) = choice["Choices"]
    assert leader["Next"] == f"{prefix}WaitForStorm" and choice["Default"] == f"{prefix}Escalated"
    assert states[f"{prefix}WaitForStorm"]["TimestampPath"] == "$.escalation.storm.summary_at"
    summarize = states[f"{prefix}SummarizeStorm"]
    assert summarize["Next"] == f"{prefix}Escalated"
    assert summarize["Parameters"]["storm.$"] == "$.escalation.storm"
    assert [c["Next"] for c in summarize["Catch"]] == [f"{prefix}Escalated"]


def test_the_state_machine_outlives_a_storms_wait(definition, config):
    assert config.storm_window_seconds == 300
    # the longest plan's time (above), and the wait of a storm's leader after it escalated
    assert definition["TimeoutSeconds"] > 1800 + 7200 + config.storm_window_seconds


def test_a_dead_execution_is_cleaned_up(resources):
    # The cleanup state machine: the recovery's rollback path alone, with the same functions
    _, cleanup = cfn.state_machine(resources, "RecoveryCleanup")
    definition = cfn.state_machine_definition(cleanup)
    states = cfn.all_states(definition)
    recovery = cfn.all_states(cfn.state_machine_definition(cfn.state_machine(resources)[1]))
    assert definition["StartAt"] == "CleanupPrepareRollback"
    assert states["CleanupPrepareRollback"]["Next"] == "CleanupRollback"
    assert states["CleanupRollback"]["Next"] == "CleanupEscalate"
    assert states["CleanupEscalate"]["Resource"] == recovery["Escalate"]["Resource"]
    for action in ACTIONS:
        assert (
            states[f"CleanupRollback{_pascal(action)}"]["Resource"]
            == recovery[f"Rollback{_pascal(action)}"]["Resource"]
        )
    # started by ExecutionEnded on a rule for every execution of either machine that died
    function_id = cfn.functions_by_handler(resources)["orchestration.execution_ended.handler"]
    (rule,) = [
        r
        for r in cfn.of_type(resources, "AWS::Events::Rule").values()
        if any(cfn.get_att(t["Arn"]) == function_id for t in r["Properties"].get("Targets", []))
    ]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    machines = {cfn.get_att(arn) for arn in pattern["detail"]["stateMachineArn"]}
    assert machines == {cfn.state_machine(resources)[0], cfn.state_machine(resources, "RecoveryCleanup")[0]}
    (target,) = rule["Properties"]["Targets"]
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] > 0


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_registered_action_phase_is_its_own_task_invoking_its_own_function(action, states, resources):
    by_handler = cfn.functions_by_handler(resources)
    for state_name, phase in ((_pascal(action), "apply"), (f"Rollback{_pascal(action)}", "rollback")):
        state = states[state_name]
        assert state["Type"] == "Task"
        function_id = by_handler[f"actions.{action}.{phase}_handler"]
        assert state["Resource"] == f"${{{function_id}.Arn}}", (state_name, state["Resource"])


def test_every_task_retries_transient_errors_with_capped_jittered_backoff(states):
    tasks = {name: state for name, state in states.items() if state["Type"] == "Task"}
    assert set(ACTION_TASKS) <= set(tasks)
    for name, task in tasks.items():
        retries = [r for r in task.get("Retry", []) if "TransientError" in r["ErrorEquals"]]
        assert len(retries) == 1, f"{name}: no single Retry on TransientError: {task.get('Retry')}"
        retry = retries[0]
        assert retry["MaxDelaySeconds"] > 0, name
        assert retry["JitterStrategy"] == "FULL", name
        assert retry["MaxAttempts"] >= 1, name
        assert "States.ALL" not in retry["ErrorEquals"], f"{name} retries permanent errors too"


def test_verify_outlasts_reading_routing_controls_through_every_cluster_endpoint(resources):
    from actions import failover_routing_control

    by_handler = cfn.functions_by_handler(resources)
    verify = resources[by_handler["orchestration.verify.handler"]]
    assert verify["Properties"]["Timeout"] > failover_routing_control._CLUSTER_BUDGET_SECONDS


def test_actions_waiting_for_capacity_are_asked_again_slowly_before_the_quick_retries(states):
    # A booting instance takes minutes: every 30 s for 10 minutes, no Lambda running in between
    for name in ACTION_TASKS:
        retries = states[name]["Retry"]
        assert retries[0]["ErrorEquals"] == ["CapacityNotReady"], name
        assert retries[0]["IntervalSeconds"] == 30 and retries[0]["MaxAttempts"] == 20, name  # 10 minutes
        assert retries[0]["BackoffRate"] == 1, name
        assert any("TransientError" in r["ErrorEquals"] for r in retries[1:]), name


def test_a_failing_action_rolls_back(states):
    catches = states["RunActions"].get("Catch", [])
    assert any(c["ErrorEquals"] == ["States.ALL"] and c["Next"] == "PrepareRollback" for c in catches), catches
    assert states["PrepareRollback"]["Next"] == "Rollback"
    assert states["Rollback"]["Next"] == "Escalate"


# --- least privilege ----------------------------------------------------------------------


def _is_key_admin_delegation(resource_type: str, statement: dict[str, Any]) -> bool:
    """The KMS default key policy: the account root may use IAM policies for this key
    ("kms:*" to arn:...:iam::<this account>:root). Without it no IAM grant on the key works."""
    principal = statement.get("Principal", {})
    root = cfn.resolve(principal.get("AWS")) if isinstance(principal, dict) else None
    return (
        resource_type == "AWS::KMS::Key"
        and statement.get("Action") == "kms:*"
        and isinstance(root, str)
        and root.endswith(":iam::${AWS::AccountId}:root")
    )


def test_no_policy_allows_every_action_of_a_service(resources):
    offending = []
    for resource_id, resource_type, statement in cfn.policy_statements(resources):
        if statement["Effect"] != "Allow":
            continue  # a Deny of "sqs:*" over plain HTTP is the point of enforce_ssl
        assert "NotAction" not in statement, f"{resource_id}: Allow with NotAction: {statement}"
        wildcards = [a for a in cfn.as_list(statement["Action"]) if a == "*" or a.endswith(":*")]
        if wildcards and not _is_key_admin_delegation(resource_type, statement):
            offending.append((resource_id, wildcards))
    assert not offending, f"wildcard actions: {offending}"


def test_iam_policies_name_every_action_they_allow(resources):
    # No "*" anywhere in an action of an identity policy (not even kms:GenerateDataKey*): every
    # permission the system holds is one its code names.
    offending = [
        (resource_id, action)
        for resource_id, resource_type, statement in cfn.policy_statements(resources)
        if resource_type in ("AWS::IAM::Policy", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy")
        and statement["Effect"] == "Allow"
        for action in cfn.as_list(statement.get("Action", []))
        if "*" in action
    ]
    assert not offending, f"actions with a wildcard: {offending}"


def test_only_detectors_may_put_events_on_the_bus_and_only_of_the_detection_source(resources):
    put = [
        (resource_id, statement)
        for resource_id, resource_type, statement in cfn.policy_statements(resources)
        if resource_type == "AWS::IAM::Policy" and "events:PutEvents" in cfn.as_list(statement.get("Action", []))
    ]
    assert put, "the detectors put events on the bus"
    for resource_id, statement in put:
        assert statement.get("Condition") == {"StringEquals": {"events:source": "recovery.detection"}}, resource_id
    # and the bus's own policy denies everyone else (tests/infra/test_bus_policy.py)


def _function_role(resources, handler: str) -> str:
    function_id = cfn.functions_by_handler(resources)[handler]
    return cfn.get_att(resources[function_id]["Properties"]["Role"])


def test_replace_instance_may_terminate_only_managed_instances(resources, config):
    role_id = _function_role(resources, "actions.replace_instance.apply_handler")
    granting = [
        s
        for s in cfn.role_statements(resources, role_id)
        if "autoscaling:TerminateInstanceInAutoScalingGroup" in cfn.as_list(s["Action"])
    ]
    assert granting, "replace_instance.apply may not terminate instances at all"
    for statement in granting:
        assert statement["Effect"] == "Allow"
        assert statement.get("Condition") == {
            "StringEquals": {f"aws:ResourceTag/{config.managed_tag_key}": config.managed_tag_value}
        }


def test_every_declared_mutating_action_is_limited_to_managed_resources(resources, config):
    mutating = {
        a
        for spec in ACTIONS.values()
        for a in spec.iam_actions
        if not a.split(":", 1)[1].startswith(("Describe", "List", "Get"))
    }
    condition = {"StringEquals": {f"aws:ResourceTag/{config.managed_tag_key}": config.managed_tag_value}}
    for resource_id, resource_type, statement in cfn.policy_statements(resources):
        if resource_type != "AWS::IAM::Policy" or statement["Effect"] != "Allow":
            continue
        granted = mutating & set(cfn.as_list(statement["Action"]))
        if granted and statement.get("Resource") != _EKS_GROUPS:  # declared on EKS's eks-* groups only
            assert statement.get("Condition") == condition, f"{resource_id} grants {granted} unconditionally"


_EKS_GROUPS = {
    "Fn::Sub": "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
    "autoScalingGroupName/eks-*"
}


# --- outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "resource_type"),
    [
        (constants.OUTPUT_BUS, "AWS::Events::EventBus"),
        (constants.OUTPUT_TABLE, "AWS::DynamoDB::GlobalTable"),
        (constants.OUTPUT_STATE_MACHINE, "AWS::StepFunctions::StateMachine"),
        (constants.OUTPUT_TOPIC, "AWS::SNS::Topic"),
    ],
)
def test_outputs_name_the_deployment(output, resource_type, synthesized):
    outputs = synthesized.template_json["Outputs"]
    assert output in outputs, f"missing output {output}; present: {sorted(outputs)}"
    assert synthesized.resources[cfn.get_att(outputs[output]["Value"])]["Type"] == resource_type


# --- detectors of AWS events and the sweeps -------------------------------------------------


def _allowed_actions(resources, handler: str) -> set[str]:
    role_id = _function_role(resources, handler)
    return {
        a for s in cfn.role_statements(resources, role_id) if s["Effect"] == "Allow" for a in cfn.as_list(s["Action"])
    }


def _environment(resources, handler: str) -> dict[str, Any]:
    function = resources[cfn.functions_by_handler(resources)[handler]]
    return function["Properties"]["Environment"]["Variables"]


def test_ec2_state_rule_sends_instances_stopping_or_terminating_to_its_detector(resources):
    rule = _rule_for(resources, "detectors.ec2_state.handler")
    properties = rule["Properties"]
    assert properties.get("EventBusName", "default") == "default"  # AWS sends EC2 events there
    assert properties["EventPattern"] == {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"state": ["stopping", "stopped", "shutting-down", "terminated"]},
    }
    _assert_target_is_safe(rule, resources)


def test_health_rule_sends_aws_health_events_to_its_detector(resources):
    rule = _rule_for(resources, "detectors.health.handler")
    properties = rule["Properties"]
    assert properties.get("EventBusName", "default") == "default"
    assert properties["EventPattern"] == {
        "source": ["aws.health"],
        "detail-type": ["AWS Health Event"],
        "detail": {"eventTypeCategory": ["issue", "scheduledChange", "accountNotification"]},
    }
    _assert_target_is_safe(rule, resources)


def test_sweep_keeps_its_ids_stable_over_a_window_of_at_least_its_interval(resources, config):
    assert config.sweep_interval_minutes >= 1, "cdk.json disables the sweep: nothing to check"
    window = int(_environment(resources, "detectors.sweeps.handler")["SWEEP_WINDOW_SECONDS"])
    assert window >= max(300, config.sweep_interval_minutes * 60)


@pytest.mark.parametrize(
    ("handler", "describe_actions"),
    [
        (
            "detectors.ec2_state.handler",
            {
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeScalingActivities",
                "ec2:DescribeTags",
            },
        ),
        (
            "detectors.health.handler",
            {
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeAutoScalingGroups",
                "ec2:DescribeTags",
                "ec2:DescribeAvailabilityZones",
            },
        ),
        (
            "detectors.sweeps.handler",
            {"autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth"},
        ),
    ],
)
def test_each_detector_may_describe_exactly_what_it_reads_and_put_events_on_the_bus(
    handler, describe_actions, resources
):
    allowed = _allowed_actions(resources, handler)
    service_actions = {a for a in allowed if not a.startswith(("logs:", "xray:"))}
    # and send what it could not process to the dead-letter queue
    assert service_actions == describe_actions | {"events:PutEvents", "sqs:SendMessage"}


# Every detector the registry declares, built from its declaration (cdk.json's stack probes no
# other region: the region probe's is tests/infra/test_region_probe.py; and declares no EKS
# workload: the EKS check's is tests/infra/test_eks_check_stack.py).
BUILT_HERE = [d for d in DETECTORS if d not in (REGION_PROBE, EKS_CHECK)]


@pytest.mark.parametrize("declaration", BUILT_HERE, ids=[d.name for d in BUILT_HERE])
def test_each_detector_is_built_as_it_declares(declaration, synthesized, resources):
    from detectors.declaration import Events, decided

    deployment = synthesized.stack.detection.deployment
    function_id = cfn.functions_by_handler(resources)[declaration.handler]
    function = resources[function_id]["Properties"]
    assert function_id.startswith(declaration.name)
    assert function["Timeout"] == declaration.timeout_seconds
    assert function["DeadLetterConfig"]["TargetArn"]
    (invoke,) = [
        r["Properties"]
        for r in cfn.of_type(resources, "AWS::Lambda::EventInvokeConfig").values()
        if r["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    retry = decided(declaration.invoke_retry, deployment)
    assert (invoke["MaximumRetryAttempts"], invoke["MaximumEventAgeInSeconds"]) == (
        retry.attempts,
        retry.max_age_seconds,
    )

    # Its rule: the declared pattern (on the default bus) or schedule, a dead-letter queue, the declared retries
    rule = _rule_for(resources, declaration.handler)["Properties"]
    if isinstance(declaration.trigger, Events):
        assert rule.get("EventBusName", "default") == "default"
        assert rule["EventPattern"] == declaration.trigger.pattern(deployment)
    else:
        minutes = decided(declaration.trigger.minutes, deployment)
        assert rule["ScheduleExpression"] == f"rate({minutes} minute{'s' if minutes > 1 else ''})"
    (target,) = rule["Targets"]
    assert target["DeadLetterConfig"]["Arn"]
    retry = decided(declaration.target_retry, deployment)
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": retry.attempts,
        "MaximumEventAgeInSeconds": retry.max_age_seconds,
    }


@pytest.mark.parametrize("declaration", BUILT_HERE, ids=[d.name for d in BUILT_HERE])
def test_each_detector_may_make_exactly_the_calls_it_declares(declaration, resources):
    place = {"partition": "${AWS::Partition}", "region": "${AWS::Region}", "account": "${AWS::AccountId}"}
    declared = {
        (action, resource.format(**place))
        for reads in declaration.reads
        for action in reads.actions
        for resource in reads.resources
    }
    granted = set()
    for statement in cfn.role_statements(resources, _function_role(resources, declaration.handler)):
        assert statement["Effect"] == "Allow"
        for action in cfn.as_list(statement["Action"]):
            if action.split(":", 1)[0] in ("logs", "xray", "events", "sqs"):
                continue  # its logs, tracing, the bus and the dead-letter queue: every detector has them
            if declaration.uses_table and action.startswith("dynamodb:"):
                continue  # the recovery table's grant
            if declaration.handler == "readiness.handler.handler" and action == "iam:SimulatePrincipalPolicy":
                continue  # on the plans' action roles, not a read it declares (tests/infra/test_readiness.py)
            granted |= {(action, cfn.resolve(r)) for r in cfn.as_list(statement["Resource"])}
    assert granted == declared


def test_detectors_know_the_workload_each_configured_group_belongs_to(resources, config):
    expected = {w.auto_scaling_group: w.name for w in config.workloads if w.auto_scaling_group}
    for handler in ("detectors.ec2_state.handler", "detectors.health.handler", "detectors.sweeps.handler"):
        assert json.loads(_environment(resources, handler)["WORKLOAD_GROUPS"]) == expected, handler


def test_the_alarm_detector_knows_each_workload_and_the_resources_it_declares(resources, config):
    # The alarm detector checks an alarm's workload tag against its resources (detectors/alarm.py)
    environment = _environment(resources, "detectors.alarm.handler")
    groups = {w.auto_scaling_group: w.name for w in config.workloads if w.auto_scaling_group}
    assert json.loads(environment["WORKLOAD_GROUPS"]) == groups
    declared = json.loads(environment["WORKLOAD_RESOURCES"])
    assert sorted(declared) == sorted(w.name for w in config.workloads)
    # as the detector names them: cdk.json's target group, service, databases and health check
    assert "elasticloadbalancing:targetgroup:web-api/73e2d6bc24d8a067" in declared["web-api"]
    assert "route53:healthcheck:5f1d7e0a-1b2c-4d3e-8f90-a1b2c3d4e5f6" in declared["web-api"]
    assert declared["checkout"] == ["ecs:service:checkout/checkout-api"]
    assert declared["orders"] == ["rds:db:orders-db"]
    assert declared["ledger"] == ["rds:cluster:ledger-cluster"]


def test_the_alarm_detector_may_read_what_says_which_workload_a_resource_belongs_to(resources):
    allowed = _allowed_actions(resources, "detectors.alarm.handler")
    assert {
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeTags",
        "ecs:ListTagsForResource",
        "rds:ListTagsForResource",
    } <= allowed


def test_too_many_declared_resources_for_the_alarm_detector_s_environment_fail_the_synth():
    import aws_cdk as cdk

    from infra.config import ConfigError, validate
    from infra.stack import RecoveryStack
    from tests.conftest import cdk_context

    raw = cdk_context()["recovery"]
    many = [
        {
            "name": f"shop-{n}",
            "auto_scaling_group": f"shop-{n}-asg",
            "canaries": [f"shop-{n}-canary-{c}" for c in range(4)],
        }
        for n in range(40)
    ]
    config = validate({**raw, "workloads": raw["workloads"] + many, "practice_drills": []})

    with pytest.raises(ConfigError, match="alarm detector's environment"):
        RecoveryStack(cdk.App(), "TooMany", config=config)


# --- failover and restart_service -----------------------------------------------------------

FAILOVER_AND_RESTART = [
    "failover_dns",
    "failover_database",
    "failover_routing_control",
    "restart_ecs_service",
    "restart_systemd_unit",
]
_TRACING = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}  # every traced function


def _action_grants(resources, handler: str) -> dict[tuple[str, str], set[str]]:
    """What a function's role allows, as {(resource, condition) as JSON: actions}, leaving out
    its own log group and the recovery table (checked for every function above)."""
    granted: dict[tuple[str, str], set[str]] = {}
    for statement in cfn.role_statements(resources, _function_role(resources, handler)):
        assert statement["Effect"] == "Allow", statement
        actions = set(cfn.as_list(statement["Action"]))
        if all(a.startswith(("logs:", "dynamodb:")) for a in actions):
            assert statement["Resource"] != "*", statement
            continue
        for resource in cfn.as_list(statement["Resource"]):
            key = (json.dumps(resource, sort_keys=True), json.dumps(statement.get("Condition"), sort_keys=True))
            granted.setdefault(key, set()).update(actions)
    return granted


@pytest.mark.parametrize("action", FAILOVER_AND_RESTART)
def test_failover_and_restart_service_have_apply_and_rollback_tasks(action, states, resources):
    by_handler = cfn.functions_by_handler(resources)
    for state_name, phase in ((_pascal(action), "apply"), (f"Rollback{_pascal(action)}", "rollback")):
        assert states[state_name]["Type"] == "Task", state_name
        assert states[state_name]["Resource"] == f"${{{by_handler[f'actions.{action}.{phase}_handler']}.Arn}}"


@pytest.mark.parametrize("phase", ["apply", "rollback"])
@pytest.mark.parametrize("action", FAILOVER_AND_RESTART)
def test_failover_and_restart_service_roles_hold_exactly_the_declared_permissions(action, phase, resources, config):
    # Given what the action declares
    spec = ACTIONS[action]
    tag_condition = {"StringEquals": {f"aws:ResourceTag/{config.managed_tag_key}": config.managed_tag_value}}
    reads = {a for a in spec.iam_actions if a.split(":", 1)[1].startswith(("Describe", "List", "Get"))}
    untagged = set(spec.iam_actions_without_tag_condition)
    expected: dict[tuple[str, str], set[str]] = {
        ('"*"', "null"): reads | (untagged - ZONE_SCOPED) | _TRACING,
        ('"*"', json.dumps(tag_condition, sort_keys=True)): set(spec.iam_actions) - reads,
    }
    # Record changes (no tag condition in Route 53): on the configured hosted zones only
    for zone in hosted_zones(config.workloads, config.parsed_plans()) if untagged & ZONE_SCOPED else ():
        arn = {"Fn::Sub": f"arn:${{AWS::Partition}}:route53:::hostedzone/{zone}"}
        expected.setdefault((json.dumps(arn), "null"), set()).update(untagged & ZONE_SCOPED)
    for grant in spec.iam_grants:
        condition = (
            {"StringEquals": {f"{grant.tag_condition_key}/{config.managed_tag_key}": config.managed_tag_value}}
            if grant.tag_condition_key
            else None
        )
        for arn in grant.resources:
            key = (json.dumps({"Fn::Sub": arn} if "${" in arn else arn), json.dumps(condition, sort_keys=True))
            expected.setdefault(key, set()).update(grant.actions)
    expected = {key: actions for key, actions in expected.items() if actions}

    # Then its role grants that and nothing more: reads on any resource, mutating calls only on
    # resources carrying the managed tag, but for those a service cannot tag-scope
    assert _action_grants(resources, f"actions.{action}.{phase}_handler") == expected


def test_failover_may_change_records_only_because_route53_has_no_tag_condition(resources, config):
    # Route 53 record changes cannot be tag-scoped: the action checks the zone's tag itself
    assert ACTIONS["failover_dns"].iam_actions_without_tag_condition == ("route53:ChangeResourceRecordSets",)
    granted = _action_grants(resources, "actions.failover_dns.apply_handler")
    condition = {"StringEquals": {f"aws:ResourceTag/{config.managed_tag_key}": config.managed_tag_value}}
    tagged = ('"*"', json.dumps(condition, sort_keys=True))
    assert tagged not in granted  # nothing else it changes: its role has no RDS or ARC permission
    # on the hosted zones the configuration names, never on *
    assert "route53:ChangeResourceRecordSets" not in granted.get(('"*"', "null"), set())
    zoned = {a for (resource, _), actions in granted.items() if "hostedzone/" in resource for a in actions}
    assert "route53:ChangeResourceRecordSets" in zoned
    database = _action_grants(resources, "actions.failover_database.apply_handler")
    assert database[tagged] == {"rds:FailoverDBCluster", "rds:RebootDBInstance"}


# Each kind of an alias is an action of its own: its role holds none of its sibling kinds'
# permissions that it does not need itself (failover_dns may not fail a database over).
_SIBLINGS = {
    alias: sorted(kinds.values())
    for alias, kinds in {
        "failover": ALIASES["failover"].kinds,
        "redirect_traffic": ALIASES["redirect_traffic"].kinds,
        "provision_backup": ALIASES["provision_backup"].kinds,
        "restart_service": ALIASES["restart_service"].kinds,
    }.items()
}


def _granted_actions(resources, handler: str) -> set[str]:
    return {a for actions in _action_grants(resources, handler).values() for a in actions}


@pytest.mark.parametrize("alias", sorted(_SIBLINGS))
def test_each_kinds_role_lacks_the_permissions_only_its_sibling_kinds_need(alias, resources):
    for action in _SIBLINGS[alias]:
        own = set(ACTIONS[action].iam_actions) | set(ACTIONS[action].iam_actions_without_tag_condition)
        own |= {a for grant in ACTIONS[action].iam_grants for a in grant.actions}
        others = set()
        for sibling in _SIBLINGS[alias]:
            if sibling != action:
                spec = ACTIONS[sibling]
                others |= set(spec.iam_actions) | set(spec.iam_actions_without_tag_condition)
                others |= {a for grant in spec.iam_grants for a in grant.actions}
        for phase in ("apply", "rollback"):
            granted = _granted_actions(resources, f"actions.{action}.{phase}_handler")
            assert not (others - own) & granted, f"{action}.{phase} holds {sorted((others - own) & granted)}"


def test_the_failover_kinds_roles_name_what_they_lack(resources):
    dns = _granted_actions(resources, "actions.failover_dns.apply_handler")
    assert "rds:FailoverDBCluster" not in dns
    assert "route53-recovery-cluster:UpdateRoutingControlStates" not in dns
    database = _granted_actions(resources, "actions.failover_database.apply_handler")
    assert "route53:ChangeResourceRecordSets" not in database
    routing = _granted_actions(resources, "actions.failover_routing_control.rollback_handler")
    assert not {a for a in routing if a.startswith(("rds:", "route53:"))}
    systemd = _granted_actions(resources, "actions.restart_systemd_unit.apply_handler")
    assert "ecs:UpdateService" not in systemd
    zonal = _granted_actions(resources, "actions.redirect_zonal_shift.apply_handler")
    assert "elasticloadbalancing:DeregisterTargets" not in zonal


# --- provision_backup, redirect_traffic, replace_instance outside a group -----------------

# The mutating calls of these actions, each on a resource type whose service supports the
# aws:ResourceTag condition (ELB target groups, listeners and rules; the load balancer behind an
# ARC zonal shift; Auto Scaling groups; EC2 instances).
TAG_SCOPED_PERMISSIONS = {
    "provision_warm_pool": ["autoscaling:SetDesiredCapacity"],
    "provision_standby_group": ["autoscaling:SetDesiredCapacity"],
    "provision_standby_instances": ["autoscaling:ExitStandby", "autoscaling:EnterStandby"],
    "redirect_deregister_targets": ["elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"],
    "redirect_shift_weights": ["elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyRule"],
    "redirect_zonal_shift": ["arc-zonal-shift:StartZonalShift", "arc-zonal-shift:CancelZonalShift"],
    "replace_instance": ["ec2:RebootInstances", "ec2:StopInstances", "ec2:StartInstances"],
}


@pytest.mark.parametrize(
    "action",
    [name for alias in ("provision_backup", "redirect_traffic") for name in sorted(ALIASES[alias].kinds.values())],
)
def test_provision_backup_and_redirect_traffic_have_apply_and_rollback_tasks(action, states, resources):
    by_handler = cfn.functions_by_handler(resources)
    for state_name, phase in ((_pascal(action), "apply"), (f"Rollback{_pascal(action)}", "rollback")):
        assert states[state_name]["Type"] == "Task", state_name
        assert states[state_name]["Resource"] == f"${{{by_handler[f'actions.{action}.{phase}_handler']}.Arn}}"


@pytest.mark.parametrize(("action", "permissions"), sorted(TAG_SCOPED_PERMISSIONS.items()))
def test_mutating_permissions_of_these_actions_are_limited_to_managed_resources(action, permissions, resources, config):
    condition = {"StringEquals": {f"aws:ResourceTag/{config.managed_tag_key}": config.managed_tag_value}}
    assert not set(permissions) & set(ACTIONS[action].iam_actions_without_tag_condition)
    for phase in ("apply", "rollback"):
        role_id = _function_role(resources, f"actions.{action}.{phase}_handler")
        allowed = [s for s in cfn.role_statements(resources, role_id) if s["Effect"] == "Allow"]
        for permission in permissions:
            granting = [s for s in allowed if permission in cfn.as_list(s["Action"])]
            assert granting, f"{action}.{phase} may not call {permission}"
            for statement in granting:
                assert statement.get("Condition") == condition, f"{action}.{phase}: {permission} unconditioned"


# --- the standard alarms of every kind of workload ----------------------------------------
# A second synthesis, of workloads that declare everything the onboarding construct watches.

_TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/{id}"
_LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/{kind}/{name}/{id}"
HEALTH_CHECK = "8f2c1d3e-1111-2222-3333-444455556666"
ONBOARDED_WORKLOADS = [
    {
        "name": "web-api",
        "auto_scaling_group": "web-api-asg",
        "target_group_arn": _TG.format(name="web-api", id="73e2d6bc24d8a067"),
        "load_balancer_arn": _LB.format(kind="app", name="web-api", id="50dc6c495c0c9188"),
        "cloudwatch_agent": {"metrics_collection_interval": 10},
        "route53_health_checks": [HEALTH_CHECK],
        "canaries": ["web-api-home"],
    },
    {
        "name": "checkout",
        "ecs_service": {"cluster": "checkout", "service": "checkout-api"},
        "target_group_arn": _TG.format(name="checkout", id="1a2b3c4d5e6f7a8b"),
        "load_balancer_arn": _LB.format(kind="net", name="checkout", id="9f8e7d6c5b4a3f2e"),
        "database": {"db_instance_identifier": "orders-db"},
    },
    {
        "name": "batch",
        "auto_scaling_group": "batch-asg",
        "database": {"db_cluster_identifier": "ledger"},
        "alarms": {"cpu": {"enabled": False}, "status_check": {"severity": "critical"}},
    },
]


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory):
    """The stack synthesized for ONBOARDED_WORKLOADS (cdk.json's plans and settings otherwise)."""
    from pathlib import Path
    from types import SimpleNamespace

    import aws_cdk as cdk

    from infra.config import validate
    from infra.stack import RecoveryStack
    from tests.conftest import cdk_context

    context = cdk_context()
    raw = {**context["recovery"], "workloads": ONBOARDED_WORKLOADS}
    config = validate(raw)
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("onboarded")), context={**context, "recovery": raw})
    stack = RecoveryStack(app, "Onboarded", config=config)
    path = Path(app.synth().get_stack_artifact(stack.artifact_id).template_full_path)
    template = json.loads(path.read_text())
    return SimpleNamespace(stack=stack, config=config, path=path, template=template, resources=template["Resources"])


def _alarms_by_name(resources) -> dict[str, dict[str, Any]]:
    """The workload alarms by name (not the alarms on the recovery system itself: test_operations.py)."""
    return {a["Properties"]["AlarmName"]: a for a in _workload_alarms(resources).values()}


def _workload_alarms(resources) -> dict[str, dict[str, Any]]:
    return {
        k: a
        for k, a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").items()
        if "-recovery-system-" not in cfn.resolve(a["Properties"]["AlarmName"])
    }


def _metric_stats(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A metric-math alarm's metrics by id: {"namespace", "metric", "dimensions", "stat", "period"}."""
    found = {}
    for query in alarm["Properties"].get("Metrics", []):
        if "MetricStat" in query:
            stat = query["MetricStat"]
            found[query["Id"]] = {
                "namespace": stat["Metric"]["Namespace"],
                "metric": stat["Metric"]["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in stat["Metric"].get("Dimensions", [])},
                "stat": stat["Stat"],
                "period": stat["Period"],
            }
    return found


def _expression(alarm: dict[str, Any]) -> str:
    (expression,) = [q["Expression"] for q in alarm["Properties"].get("Metrics", []) if "Expression" in q]
    return expression


WEB_API_SCOPE = {
    "recovery:auto-scaling-group": "web-api-asg",
    "recovery:target-group-arn": _TG.format(name="web-api", id="73e2d6bc24d8a067"),
}
CHECKOUT_SCOPE = {
    "recovery:target-group-arn": _TG.format(name="checkout", id="1a2b3c4d5e6f7a8b"),
    "recovery:ecs-cluster": "checkout",
    "recovery:ecs-service": "checkout-api",
}
WEB_API_ELB = {"TargetGroup": "targetgroup/web-api/73e2d6bc24d8a067", "LoadBalancer": "app/web-api/50dc6c495c0c9188"}
CHECKOUT_ELB = {"TargetGroup": "targetgroup/checkout/1a2b3c4d5e6f7a8b", "LoadBalancer": "net/checkout/9f8e7d6c5b4a3f2e"}

# alarm name -> (impairment type, severity, scope tags, comparison, threshold, evaluation periods)
STANDARD_ALARMS = {
    "web-api-unhealthy-hosts": ("service_degradation", "high", WEB_API_SCOPE, "GreaterThanOrEqualToThreshold", 1, 2),
    "web-api-healthy-hosts": ("service_degradation", "high", WEB_API_SCOPE, "LessThanThreshold", 1, 2),
    "web-api-status-check": ("instance_failure", "high", WEB_API_SCOPE, "GreaterThanOrEqualToThreshold", 1, 2),
    "web-api-cpu": ("resource_exhaustion", "medium", WEB_API_SCOPE, "GreaterThanOrEqualToThreshold", 90, 3),
    "web-api-memory": ("resource_exhaustion", "medium", WEB_API_SCOPE, "GreaterThanOrEqualToThreshold", 90, 3),
    "web-api-disk": ("resource_exhaustion", "medium", WEB_API_SCOPE, "GreaterThanOrEqualToThreshold", 90, 3),
    "web-api-5xx-rate": ("application_error", "high", WEB_API_SCOPE, "GreaterThanOrEqualToThreshold", 5, 3),
    "web-api-latency-p99": ("application_error", "medium", WEB_API_SCOPE, "GreaterThanOrEqualToThreshold", 2, 3),
    "web-api-latency-anomaly": ("application_error", "medium", WEB_API_SCOPE, "GreaterThanUpperThreshold", None, 3),
    f"web-api-route53-{HEALTH_CHECK}": ("network_issue", "high", WEB_API_SCOPE, "LessThanThreshold", 1, 1),
    "web-api-canary-web-api-home": ("network_issue", "high", WEB_API_SCOPE, "LessThanThreshold", 100, 1),
    "checkout-unhealthy-hosts": ("service_degradation", "high", CHECKOUT_SCOPE, "GreaterThanOrEqualToThreshold", 1, 2),
    "checkout-healthy-hosts": ("service_degradation", "high", CHECKOUT_SCOPE, "LessThanThreshold", 1, 2),
    "checkout-ecs-running-tasks": (
        "service_degradation",
        "high",
        {"recovery:ecs-cluster": "checkout", "recovery:ecs-service": "checkout-api"},
        "GreaterThanOrEqualToThreshold",
        1,
        3,
    ),
    "checkout-db-free-storage": ("database_issue", "high", {}, "LessThanThreshold", 5 * 1024**3, 2),
    "batch-status-check": (
        "instance_failure",
        "critical",
        {"recovery:auto-scaling-group": "batch-asg"},
        "GreaterThanOrEqualToThreshold",
        1,
        2,
    ),
}


def test_each_workload_gets_exactly_the_standard_alarms_it_has_something_for(onboarded):
    # Not for an NLB: HTTP codes and latency; not without the agent: memory, disk; not when
    # disabled: batch's CPU; not for an Aurora cluster: free storage (it grows by itself).
    assert sorted(_alarms_by_name(onboarded.resources)) == sorted(STANDARD_ALARMS)


@pytest.mark.parametrize("name", sorted(STANDARD_ALARMS))
def test_each_standard_alarm_is_tagged_for_the_alarm_detector(name, onboarded):
    impairment_type, severity, scope, comparison, threshold, periods = STANDARD_ALARMS[name]
    alarm = _alarms_by_name(onboarded.resources)[name]
    properties = alarm["Properties"]

    tags = _tags(alarm)
    workload = name.split("-", 1)[0] if not name.startswith("web-api") else "web-api"
    assert tags == {
        onboarded.config.managed_tag_key: onboarded.config.managed_tag_value,
        "recovery:workload": workload,
        "recovery:impairment-type": impairment_type,
        "recovery:severity": severity,
        **scope,
    }
    assert ImpairmentType(impairment_type)
    assert properties["ComparisonOperator"] == comparison
    assert properties.get("Threshold") == threshold
    assert properties["EvaluationPeriods"] == properties["DatapointsToAlarm"] == periods
    assert properties["TreatMissingData"] == "notBreaching"  # missing data is not a failure


# alarm name -> (namespace, metric, dimensions, statistic, period): the single-metric alarms
SINGLE_METRICS = {
    "web-api-unhealthy-hosts": ("AWS/ApplicationELB", "UnHealthyHostCount", WEB_API_ELB, "Maximum", 60),
    "web-api-healthy-hosts": ("AWS/ApplicationELB", "HealthyHostCount", WEB_API_ELB, "Minimum", 60),
    "web-api-status-check": ("AWS/EC2", "StatusCheckFailed", {"AutoScalingGroupName": "web-api-asg"}, "Maximum", 60),
    "web-api-cpu": ("AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": "web-api-asg"}, "Average", 60),
    # the agent collects every 10 s: high-resolution metrics, so a 10-second period
    "web-api-memory": ("CWAgent", "mem_used_percent", {"AutoScalingGroupName": "web-api-asg"}, "Maximum", 10),
    "web-api-disk": ("CWAgent", "disk_used_percent", {"AutoScalingGroupName": "web-api-asg"}, "Maximum", 10),
    "web-api-latency-p99": ("AWS/ApplicationELB", "TargetResponseTime", WEB_API_ELB, "p99", 60),
    f"web-api-route53-{HEALTH_CHECK}": (
        "AWS/Route53",
        "HealthCheckStatus",
        {"HealthCheckId": HEALTH_CHECK},
        "Minimum",
        60,
    ),
    "web-api-canary-web-api-home": (
        "CloudWatchSynthetics",
        "SuccessPercent",
        {"CanaryName": "web-api-home"},
        "Average",
        60,
    ),
    "checkout-unhealthy-hosts": ("AWS/NetworkELB", "UnHealthyHostCount", CHECKOUT_ELB, "Maximum", 60),
    "checkout-healthy-hosts": ("AWS/NetworkELB", "HealthyHostCount", CHECKOUT_ELB, "Minimum", 60),
    "checkout-db-free-storage": ("AWS/RDS", "FreeStorageSpace", {"DBInstanceIdentifier": "orders-db"}, "Minimum", 60),
}


@pytest.mark.parametrize("name", sorted(SINGLE_METRICS))
def test_each_single_metric_alarm_watches_its_metric_at_the_resolution_aws_publishes(name, onboarded):
    namespace, metric, dimensions, statistic, period = SINGLE_METRICS[name]
    properties = _alarms_by_name(onboarded.resources)[name]["Properties"]

    assert (properties["Namespace"], properties["MetricName"]) == (namespace, metric)
    assert {d["Name"]: d["Value"] for d in properties["Dimensions"]} == dimensions
    assert properties.get("Statistic", properties.get("ExtendedStatistic")) == statistic
    assert properties["Period"] == period


def test_5xx_rate_is_metric_math_over_the_workload_target_group(onboarded):
    alarm = _alarms_by_name(onboarded.resources)["web-api-5xx-rate"]

    assert _expression(alarm) == "100 * FILL(m1, 0) / m2"
    assert _metric_stats(alarm) == {
        "m1": {
            "namespace": "AWS/ApplicationELB",
            "metric": "HTTPCode_Target_5XX_Count",
            "dimensions": WEB_API_ELB,
            "stat": "Sum",
            "period": 60,
        },
        "m2": {
            "namespace": "AWS/ApplicationELB",
            "metric": "RequestCount",
            "dimensions": WEB_API_ELB,
            "stat": "Sum",
            "period": 60,
        },
    }


def test_ecs_running_tasks_alarm_counts_the_tasks_missing_from_the_desired_count(onboarded):
    alarm = _alarms_by_name(onboarded.resources)["checkout-ecs-running-tasks"]
    service = {"ClusterName": "checkout", "ServiceName": "checkout-api"}

    assert _expression(alarm) == "m2 - m1"
    stats = _metric_stats(alarm)
    assert {k: (v["namespace"], v["metric"], v["dimensions"]) for k, v in stats.items()} == {
        "m1": ("ECS/ContainerInsights", "RunningTaskCount", service),
        "m2": ("ECS/ContainerInsights", "DesiredTaskCount", service),
    }


def test_latency_anomaly_alarm_uses_a_learned_band_whose_model_the_stack_owns(onboarded):
    resources = onboarded.resources
    alarm_id, alarm = next(
        (k, a)
        for k, a in cfn.of_type(resources, "AWS::CloudWatch::Alarm").items()
        if a["Properties"]["AlarmName"] == "web-api-latency-anomaly"
    )
    properties = alarm["Properties"]
    band = next(q for q in properties["Metrics"] if "Expression" in q)
    (metric_id,) = _metric_stats(alarm)

    # The alarm compares the metric with its band's upper edge (2 standard deviations wide)
    assert properties["ThresholdMetricId"] == band["Id"]
    assert band["Expression"] == f"ANOMALY_DETECTION_BAND({metric_id}, 2)"
    assert _metric_stats(alarm)[metric_id]["metric"] == "TargetResponseTime"
    # and the model of that metric is a resource of the stack, created before the alarm
    (detector_id, detector) = cfn.only(resources, "AWS::CloudWatch::AnomalyDetector")
    single = detector["Properties"]["SingleMetricAnomalyDetector"]
    assert (single["Namespace"], single["MetricName"], single["Stat"]) == (
        "AWS/ApplicationELB",
        "TargetResponseTime",
        "Average",
    )
    assert {d["Name"]: d["Value"] for d in single["Dimensions"]} == WEB_API_ELB
    assert detector_id in cfn.as_list(alarm.get("DependsOn", []))
    assert alarm_id


def test_route53_alarms_are_in_a_stack_that_may_be_deployed_only_where_route53_publishes(onboarded):
    # The region-agnostic stack holds the alarm, unconditionally (no silent absence elsewhere)...
    alarms = _alarms_by_name(onboarded.resources)
    assert f"web-api-route53-{HEALTH_CHECK}" in alarms
    assert [a for a in alarms.values() if "Condition" in a] == []
    # ...and a rule refuses to deploy it outside us-east-1, naming the workload
    (assertion,) = onboarded.template["Rules"]["Route53MetricsRegion"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
    assert "workload web-api" in assertion["AssertDescription"]


def test_route53_alarms_are_left_to_the_us_east_1_stack_in_another_region():
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import Workload
    from infra.constructs.workloads import ProtectedWorkload

    app = cdk.App()
    workload = Workload.model_validate(ONBOARDED_WORKLOADS[0])
    stack = cdk.Stack(app, "Elsewhere", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    ProtectedWorkload(stack, "Web", workload=workload, managed_tag=("recovery:managed", "true"))
    # the us-east-1 stack app.py builds for them (infra/route53_alarms.py) holds them alone
    east = cdk.Stack(app, "East", env=cdk.Environment(account="123456789012", region="us-east-1"))
    ProtectedWorkload(east, "Web", workload=workload, managed_tag=("recovery:managed", "true"), only_health_checks=True)

    def names(of: cdk.Stack) -> list[str]:
        return [
            a["Properties"]["AlarmName"]
            for a in Template.from_stack(of).find_resources("AWS::CloudWatch::Alarm").values()
        ]

    assert f"web-api-route53-{HEALTH_CHECK}" not in names(stack)
    assert "web-api-canary-web-api-home" in names(stack)
    assert (
        "Rules" not in Template.from_stack(stack).to_json()
        or "Route53MetricsRegion" not in Template.from_stack(stack).to_json()["Rules"]
    )
    assert names(east) == [f"web-api-route53-{HEALTH_CHECK}"]


def test_every_onboarded_alarm_reaches_the_alarm_detector(onboarded):
    prefixes = [
        p["prefix"]
        for p in _rule_for(onboarded.resources, "detectors.alarm.handler")["Properties"]["EventPattern"]["detail"][
            "alarmName"
        ]
    ]
    for name in _alarms_by_name(onboarded.resources):
        assert sum(name.startswith(p) for p in prefixes) >= 1, f"{name} matches no prefix of {prefixes}"


def test_the_onboarded_stack_passes_cfn_lint_and_cdk_nag(onboarded):
    from aws_cdk.assertions import Annotations, Match

    assert cfn.cfn_lint_errors(onboarded.path) == []
    errors = Annotations.from_stack(onboarded.stack).find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert errors == [], "\n".join(f"{e.id}: {e.entry.data}" for e in errors)


# --- the RDS and ECS detectors ------------------------------------------------------------


def _matches(rule: dict[str, Any], event: dict[str, Any]) -> bool:
    from moto.events.models import EventPattern

    return EventPattern.load(json.dumps(rule["Properties"]["EventPattern"])).matches_event(event)


def _sample_events(prefix: str) -> list[str]:
    from tests.conftest import EVENTS

    return sorted(p.name for p in EVENTS.glob(f"{prefix}*.json"))


@pytest.mark.parametrize(
    ("handler", "prefix"), [("detectors.rds.handler", "rds-"), ("detectors.ecs.handler", "ecs-")], ids=["rds", "ecs"]
)
def test_the_detector_rule_lets_through_every_event_its_detector_would_act_on(handler, prefix, resources):
    # Given the rule on the default bus that feeds the detector, and every sample event of its service
    from datetime import timedelta

    from detectors import ecs, rds
    from detectors.resolve import Owner
    from tests.conftest import load_event

    rule = _rule_for(resources, handler)
    assert rule["Properties"].get("EventBusName", "default") == "default"
    _assert_target_is_safe(rule, resources)

    class Managed:
        """Every resource managed; every start of an episode listed (so completions clear)."""

        def service_owner(self, *_):
            return Owner("w")

        def database_owner(self, *_):
            return Owner("w")

        def events(self, kind, identifier, category, since, until):
            return [
                {
                    "Date": since + timedelta(seconds=1),
                    "Message": "failover started shutdown Recovery of the DB instance has started",
                }
            ]

    acted_on, filtered = [], []
    for name in _sample_events(prefix):
        event = load_event(name)
        if handler == "detectors.rds.handler":
            parsed = rds.RdsEvent.model_validate(event)
            findings = rds.classify(parsed, Managed(), ("k", "v"), parsed.time)
        else:
            parsed = ecs.TaskStateChangeEvent.model_validate(event)
            findings = ecs.classify(parsed, Managed(), parsed.time)
        if findings.detected or findings.cleared:
            acted_on.append(name)
            assert _matches(rule, event), f"the rule drops {name}, which the detector acts on"
        elif not _matches(rule, event):
            filtered.append(name)
    # The samples cover both sides: events acted on, and irrelevant ones the rule already drops
    assert acted_on and filtered, (acted_on, filtered)


@pytest.mark.parametrize(
    ("handler", "allowed"),
    [
        (
            "detectors.rds.handler",
            {
                ("rds:DescribeEvents", "*"),
                ("rds:ListTagsForResource", "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:*"),
                ("rds:ListTagsForResource", "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster:*"),
            },
        ),
        (
            "detectors.ecs.handler",
            {("ecs:ListTagsForResource", "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/*")},
        ),
    ],
    ids=["rds", "ecs"],
)
def test_the_rds_and_ecs_detectors_may_only_read_tags_and_events(handler, allowed, resources):
    role_id = _function_role(resources, handler)
    granted = set()
    for statement in cfn.role_statements(resources, role_id):
        assert statement["Effect"] == "Allow"
        for action in cfn.as_list(statement["Action"]):
            service = action.split(":", 1)[0]
            if service in ("logs", "xray", "events", "sqs"):
                continue  # logging, tracing, the bus and the dead-letter queue: every function has them
            for resource in cfn.as_list(statement["Resource"]):
                granted.add((action, cfn.resolve(resource)))
    assert granted == allowed


def test_the_rds_rule_asks_for_exactly_the_categories_the_detector_can_act_on(resources):
    from detectors import rds

    pattern = _rule_for(resources, "detectors.rds.handler")["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.rds"]
    assert sorted(pattern["detail-type"]) == ["RDS DB Cluster Event", "RDS DB Instance Event"]
    # the categories that detect (by severity) and the episodes that start or clear an impairment
    acted_on = set(rds._BY_CATEGORY) | set(rds._STARTS) | set(rds._ENDS)
    assert set(pattern["detail"]["EventCategories"]) == acted_on


def test_restart_service_may_send_commands_only_to_managed_instances(resources, config):
    # ssm:SendCommand is authorized against the document and each instance: the one document is
    # named, and instances need the managed tag under SSM's own condition key
    granted = _action_grants(resources, "actions.restart_systemd_unit.apply_handler")
    sending = {key for key, actions in granted.items() if "ssm:SendCommand" in actions}
    condition = {"StringEquals": {f"ssm:resourceTag/{config.managed_tag_key}": config.managed_tag_value}}
    assert sending == {
        (json.dumps({"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}::document/AWS-RunShellScript"}), "null"),
        (
            json.dumps({"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"}),
            json.dumps(condition, sort_keys=True),
        ),
    }


def test_the_health_sweep_runs_on_its_schedule_with_a_dead_letter_queue(resources, config):
    # Given the configured interval, Then a schedule rule (no event pattern) targets the sweep
    schedules = [
        r
        for k, r in resources.items()
        if r["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in r["Properties"] and "Readiness" not in k
    ]
    minutes = config.sweep_interval_minutes
    assert [r["Properties"]["ScheduleExpression"] for r in schedules] == [
        f"rate({minutes} minute{'s' if minutes > 1 else ''})"
    ]
    (target,) = schedules[0]["Properties"]["Targets"]
    assert "HealthSweep" in json.dumps(target["Arn"])
    assert target["DeadLetterConfig"]["Arn"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 1


@pytest.mark.parametrize("handler", ["orchestration.verify.handler", "orchestration.return_capacity.handler"])
def test_every_function_that_checks_the_workload_may_read_what_the_check_reads(handler, resources):
    # ReturnCapacity runs Verify's check (verify.check) before handing capacity back: without
    # these reads it would fail with AccessDenied in AWS (moto does not enforce IAM) and page.
    from infra.constructs.workflow import VERIFY_READS

    granted = {
        action
        for statement in cfn.role_statements(resources, _function_role(resources, handler))
        if statement["Effect"] == "Allow"
        for action in cfn.as_list(statement["Action"])
    }
    assert set(VERIFY_READS) <= granted, sorted(set(VERIFY_READS) - granted)
