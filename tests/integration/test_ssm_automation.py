"""ssm_automation: a runbook on the impaired instances, waited for; rollback with another.

moto (5.x) has no SSM Automation: StartAutomationExecution and GetAutomationExecution are answered
through botocore's Stubber in their real shapes; the instances and the audit records are moto's.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from core import aws
from core.errors import ActionRefused, CapacityNotReady, PermanentError, TransientError
from tests.builders import MANAGED_TAG, REGION, action_event, impairment, run_step

RUNBOOK, UNDO = "AWS-RestartEC2Instance", "Acme-RestoreConfig"
ROLE = "arn:aws:iam::123456789012:role/recovery-automation"


@pytest.fixture
def ssm(store):
    with Stubber(aws.client("ssm", max_attempts=1)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def build_instances(count: int = 2, *, managed: bool = True) -> list[str]:
    tags = [{"Key": "Name", "Value": "web"}] + ([{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}] if managed else [])
    reservation = boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return sorted(i["InstanceId"] for i in reservation["Instances"])


def starts(stubber: Stubber, execution_id: str, document: str = RUNBOOK, **expected: Any) -> None:
    stubber.add_response("start_automation_execution", {"AutomationExecutionId": execution_id}, expected or None)


def reads(stubber: Stubber, execution_id: str, status: str, **fields: Any) -> None:
    execution = {
        "AutomationExecutionId": execution_id,
        "DocumentName": RUNBOOK,
        "DocumentVersion": "1",
        "AutomationExecutionStatus": status,
        **fields,
    }
    stubber.add_response(
        "get_automation_execution",
        {"AutomationExecution": execution},
        {"AutomationExecutionId": execution_id},
    )


def event(model, applied: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    given = {"document_name": RUNBOOK, "target_parameter": "InstanceId", **params}
    return action_event(model, "ssm_automation", params=given, applied=applied)


class _AnyUUID:
    def __eq__(self, other: object) -> bool:
        import uuid

        return isinstance(other, str) and str(uuid.UUID(other)) == other

    def __repr__(self) -> str:
        return "<any UUID>"


def _any_uuid() -> _AnyUUID:
    return _AnyUUID()


EXECUTION = "4105a4fc-f944-11e6-9d32-0123456789ab"
ROLLBACK_EXECUTION = "5216b5ad-0a55-11e7-8e43-0123456789ab"


def test_apply_starts_the_runbook_on_the_impaired_instances_and_records_its_execution(
    store, lambda_context, ssm, frozen_clock
):
    # Given two managed impaired instances and a runbook that succeeds at once
    instances = build_instances()
    model = impairment(instances=instances)
    ssm.add_response(
        "start_automation_execution",
        {"AutomationExecutionId": EXECUTION},
        {
            "DocumentName": RUNBOOK,
            "DocumentVersion": "3",
            "Parameters": {"InstanceId": instances, "AutomationAssumeRole": [ROLE]},
            "ClientToken": _any_uuid(),
        },
    )
    reads(ssm, EXECUTION, "Success", Outputs={"RestartStep.InstanceIds": instances})

    # When the step runs
    result = run_step(
        "apply", event(model, document_version="3", parameters={"AutomationAssumeRole": ROLE}), lambda_context
    )

    # Then the execution is the step's, recorded with its status and outputs
    assert result["result"] == "changed"
    assert result["targets"] == instances
    assert result["before"]["execution_id"] == EXECUTION
    assert result["after"] == {
        "execution_id": EXECUTION,
        "status": "Success",
        "outputs": {"RestartStep.InstanceIds": instances},
    }
    assert store.get_action(model.impairment_id, 0, "apply")["after"]["execution_id"] == EXECUTION


def test_a_running_execution_is_waited_for_by_the_state_machine_without_starting_another(
    store, lambda_context, ssm, frozen_clock
):
    # Given a runbook that runs for a while
    instances = build_instances(1)
    model = impairment(instances=instances)
    starts(ssm, EXECUTION)
    reads(ssm, EXECUTION, "InProgress")
    reads(ssm, EXECUTION, "InProgress")
    reads(ssm, EXECUTION, "Success")

    # When the step is asked again (CapacityNotReady: the state machine comes back every 30 s)
    with pytest.raises(CapacityNotReady, match=f"execution {EXECUTION} is InProgress"):
        run_step("apply", event(model), lambda_context)
    frozen_clock.advance(30)
    with pytest.raises(CapacityNotReady):
        run_step("apply", event(model), lambda_context)
    frozen_clock.advance(30)
    result = run_step("apply", event(model), lambda_context)

    # Then it started once and finished with the same execution
    assert result["result"] == "changed" and result["after"]["execution_id"] == EXECUTION


def test_the_same_step_always_asks_with_the_same_client_token(store, lambda_context, ssm):
    # A retry that lost the execution id starts with the same token: SSM answers the same execution
    instances = build_instances(1)
    model = impairment(instances=instances)
    tokens: list[str] = []
    client = aws.client("ssm", max_attempts=1)

    def capture(params: dict[str, Any], **kwargs: Any) -> None:
        tokens.append(params["ClientToken"])

    client.meta.events.register("provide-client-params.ssm.StartAutomationExecution", capture)
    try:
        starts(ssm, EXECUTION)
        ssm.add_client_error("get_automation_execution", service_error_code="InternalServerError", http_status_code=500)
        with pytest.raises(TransientError):
            run_step("apply", event(model), lambda_context)
        # (the recorded before is dropped, as if the record never held the id)
        store.put_action(model.impairment_id, 0, "apply", {"status": "started", "action": "ssm_automation"})
        starts(ssm, EXECUTION)
        reads(ssm, EXECUTION, "Success")
        run_step("apply", event(model), lambda_context)
    finally:
        client.meta.events.unregister("provide-client-params.ssm.StartAutomationExecution", capture)

    assert len(tokens) == 2 and tokens[0] == tokens[1]


@pytest.mark.parametrize("status", ["Failed", "TimedOut", "Cancelled", "CompletedWithFailure"])
def test_an_execution_that_ends_otherwise_fails_the_step_with_its_id_and_failure(store, lambda_context, ssm, status):
    instances = build_instances(1)
    model = impairment(instances=instances)
    starts(ssm, EXECUTION)
    reads(ssm, EXECUTION, status, FailureMessage="Step fails when it is Executing. RestartStep failed.")

    with pytest.raises(PermanentError, match=f"execution {EXECUTION} ended {status}: Step fails") as caught:
        run_step("apply", event(model), lambda_context)

    assert caught.value.details == {"execution_id": EXECUTION, "status": status}
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "failed" and record["before"]["execution_id"] == EXECUTION


def test_an_execution_still_running_at_the_bound_fails_the_step_with_its_id_for_a_human(
    store, lambda_context, ssm, frozen_clock
):
    # Given a runbook still waiting for an approval after max_wait_seconds
    instances = build_instances(1)
    model = impairment(instances=instances)
    starts(ssm, EXECUTION)
    reads(ssm, EXECUTION, "InProgress")
    reads(ssm, EXECUTION, "PendingApproval")
    with pytest.raises(CapacityNotReady):
        run_step("apply", event(model, max_wait_seconds=60), lambda_context)
    frozen_clock.advance(61)

    with pytest.raises(PermanentError, match="still PendingApproval after 61 s") as caught:
        run_step("apply", event(model, max_wait_seconds=60), lambda_context)

    assert not isinstance(caught.value, TransientError)
    assert caught.value.details["execution_id"] == EXECUTION
    assert EXECUTION in store.get_action(model.impairment_id, 0, "apply")["error"]


def test_an_unmanaged_instance_is_refused_and_no_runbook_starts(store, lambda_context, ssm):
    managed, unmanaged = build_instances(1), build_instances(1, managed=False)
    model = impairment(instances=managed + unmanaged)

    with pytest.raises(ActionRefused, match=f"instance {unmanaged[0]} is not managed"):
        run_step("apply", event(model), lambda_context)


def test_a_target_parameter_needs_an_impaired_instance(store, lambda_context, ssm):
    model = impairment(resources=[("autoscaling:group", "web-api-asg")])

    with pytest.raises(PermanentError, match="needs an ec2:instance"):
        run_step("apply", event(model), lambda_context)


def test_without_a_target_parameter_the_runbook_gets_only_the_plans_parameters(store, lambda_context, ssm):
    model = impairment(resources=[("autoscaling:group", "web-api-asg")])
    ssm.add_response(
        "start_automation_execution",
        {"AutomationExecutionId": EXECUTION},
        {"DocumentName": "Acme-FlushQueue", "Parameters": {"Queue": ["orders"]}, "ClientToken": _any_uuid()},
    )
    reads(ssm, EXECUTION, "Success")

    result = run_step(
        "apply",
        event(model, document_name="Acme-FlushQueue", target_parameter=None, parameters={"Queue": "orders"}),
        lambda_context,
    )

    assert result["result"] == "changed" and result["targets"] == []


def test_a_dry_run_checks_the_instances_and_starts_nothing(store, lambda_context, ssm):
    instances = build_instances(1)
    model = impairment(instances=instances)

    result = run_step("apply", {**event(model), "dry_run": True}, lambda_context)

    assert result["result"] == "would_change"
    assert result["message"] == f"would run {RUNBOOK} with {{'InstanceId': {instances!r}}}"


def test_rollback_runs_the_rollback_runbook_on_the_same_instances(store, lambda_context, ssm):
    # Given an apply that ran
    instances = build_instances(2)
    model = impairment(instances=instances)
    starts(ssm, EXECUTION)
    reads(ssm, EXECUTION, "Success")
    params = {"rollback_document": UNDO, "rollback_parameters": {"Version": "42"}}
    applied = run_step("apply", event(model, **params), lambda_context)
    # When the step is rolled back
    reads(ssm, EXECUTION, "Success")
    ssm.add_response(
        "start_automation_execution",
        {"AutomationExecutionId": ROLLBACK_EXECUTION},
        {"DocumentName": UNDO, "Parameters": {"Version": ["42"], "InstanceId": instances}, "ClientToken": _any_uuid()},
    )
    reads(ssm, ROLLBACK_EXECUTION, "Success")

    result = run_step("rollback", event(model, applied=applied, **params), lambda_context)

    assert result["result"] == "changed"
    assert result["after"]["execution_id"] == ROLLBACK_EXECUTION
    assert result["before"]["client_token"] != applied["before"]["client_token"]


def test_rollback_never_starts_over_an_apply_execution_still_running(store, lambda_context, ssm):
    # Given an apply that failed at the bound, its execution still running
    model = impairment(instances=build_instances(1))
    applied = {"action": "ssm_automation", "before": {"execution_id": EXECUTION, "instances": []}}
    reads(ssm, EXECUTION, "InProgress")

    with pytest.raises(PermanentError, match=f"execution {EXECUTION} is still InProgress"):
        run_step("rollback", event(model, applied=applied, rollback_document=UNDO), lambda_context)

    assert store.get_action(model.impairment_id, 0, "rollback")["status"] == "failed"


def test_rollback_without_a_rollback_document_is_irreversible_and_without_an_execution_unchanged(
    store, lambda_context, ssm
):
    model = impairment(instances=build_instances(1))
    ran = {"action": "ssm_automation", "before": {"execution_id": EXECUTION}, "after": {"execution_id": EXECUTION}}

    assert run_step("rollback", event(model, applied=ran), lambda_context)["result"] == "irreversible"
    other = impairment(instances=build_instances(1), signal_id="arn:aws:cloudwatch:us-east-1:123456789012:alarm:b")
    assert run_step("rollback", event(other, applied={}, rollback_document=UNDO), lambda_context)["result"] == (
        "unchanged"
    )


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("AutomationExecutionLimitExceededException", True),
        ("InvalidAutomationExecutionParametersException", False),
        ("AutomationDefinitionNotFoundException", False),
        ("InternalServerError", True),
        ("ThrottlingException", True),
    ],
)
def test_start_errors_are_classified(store, lambda_context, ssm, code, transient):
    model = impairment(instances=build_instances(1))
    ssm.add_client_error("start_automation_execution", service_error_code=code, http_status_code=400)

    with pytest.raises(PermanentError if not transient else TransientError) as caught:
        run_step("apply", event(model), lambda_context)

    assert isinstance(caught.value, TransientError) == transient
