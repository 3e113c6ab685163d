"""replace_instance for instances outside an Auto Scaling group, under moto: refused by default;
per plan rebooted, or stopped and started onto new hardware; idempotent and irreversible."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from actions import replace_instance
from core import aws
from core.errors import ActionRefused, TransientError
from tests.builders import ACCOUNT, MANAGED_TAG, REGION, action_event, build_workload, impairment, instance_state


def standalone_instance(*, managed: bool = True) -> str:
    """A running instance of no Auto Scaling group, carrying the managed tag unless managed=False."""
    tags = [{"Key": "Name", "Value": "standalone"}]
    if managed:
        tags.append({"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]})
    return boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]


def ec2_calls() -> list[str]:
    """The EC2 operations the action's own client makes from now on (moto still answers them)."""
    client = aws.client("ec2", max_attempts=1)
    seen: list[str] = []
    client.meta.events.register("before-call.ec2", lambda model, **_: seen.append(model.name))
    return seen


def mutating(calls: list[str]) -> list[str]:
    return [c for c in calls if not c.startswith("Describe")]


def event_for(instance_id: str, dry_run: bool = False, **params):
    event = action_event(impairment(instances=[instance_id]), "replace_instance", params=params)
    if dry_run:
        event["dry_run"] = True
    return event


def apply(event, context):
    return replace_instance.apply_handler(event, context)


def rollback(event, applied, context):
    return replace_instance.rollback_handler({**event, "applied": applied}, context)


def test_refused_by_default(store, lambda_context):
    # Given a managed instance outside any group, and a plan that says nothing about such instances
    instance_id = standalone_instance()

    # When replace_instance is applied
    with pytest.raises(ActionRefused, match="outside_group: refuse"):
        apply(event_for(instance_id), lambda_context)

    # Then the instance is left running
    assert instance_state(instance_id) == "running"


def test_reboot_reboots_once_and_records_the_state_before(store, lambda_context):
    # Given a managed instance outside a group and a plan that reboots such instances
    instance_id = standalone_instance()
    calls = ec2_calls()

    # When applied
    result = apply(event_for(instance_id, outside_group="reboot"), lambda_context)

    # Then the instance was rebooted once, and the state before is in the audit trail
    assert result["result"] == "changed"
    assert mutating(calls) == ["RebootInstances"]
    assert result["after"]["standalone"][instance_id]["done"] == "rebooted"
    prior = result["before"]["standalone"][instance_id]
    assert prior["mode"] == "reboot"
    assert prior["state"] == "running"
    assert prior["root_device_type"] == "ebs"
    assert "progress" not in result["before"]
    assert instance_state(instance_id) == "running"


def test_reboot_retried_after_a_crash_does_not_reboot_again(store, lambda_context):
    # Given a reboot was requested, but the Lambda died before recording "done"
    instance_id = standalone_instance()
    event = event_for(instance_id, outside_group="reboot")
    first = apply(event, lambda_context)
    impairment_id = event["impairment"]["impairment_id"]
    crashed = {**first["before"], "progress": {instance_id: "reboot_requested"}}
    store.put_action(impairment_id, 0, "apply", {"status": "started", "before": crashed})
    calls = ec2_calls()

    # When the step is retried
    retried = apply(event, lambda_context)

    # Then it does not reboot a second time
    assert mutating(calls) == []
    assert retried["result"] == "changed"  # the first attempt's change, reported as this step's


def test_a_throttled_reboot_is_transient_and_the_retry_reboots(store, lambda_context):
    # Given EC2 throttles the reboot
    instance_id = standalone_instance()
    event = event_for(instance_id, outside_group="reboot")
    client = aws.client("ec2", max_attempts=1)
    described = client.describe_instances(InstanceIds=[instance_id])
    described.pop("ResponseMetadata")
    with Stubber(client) as stubber:
        stubber.add_response("describe_instances", described)
        stubber.add_client_error("reboot_instances", service_error_code="RequestLimitExceeded", http_status_code=503)

        # When applied
        with pytest.raises(TransientError) as caught:
            apply(event, lambda_context)

    # Then the error is retryable and names the operation, and the step does not count the
    # reboot as requested
    assert caught.value.details == {"operation": "ec2:RebootInstances", "code": "RequestLimitExceeded"}
    record = store.get_action(event["impairment"]["impairment_id"], 0, "apply")
    assert record["status"] == "started"
    assert record["before"].get("progress", {}) == {}

    # And the retry reboots
    calls = ec2_calls()
    retried = apply(event, lambda_context)
    assert retried["result"] == "changed"
    assert mutating(calls) == ["RebootInstances"]


def test_stop_start_stops_and_starts_the_instance(store, lambda_context):
    # Given a managed EBS-backed instance and a plan that moves such instances to new hardware
    instance_id = standalone_instance()
    calls = ec2_calls()

    # When applied
    result = apply(event_for(instance_id, outside_group="stop_start"), lambda_context)

    # Then it was stopped, then started, and runs again
    assert result["result"] == "changed"
    assert mutating(calls) == ["StopInstances", "StartInstances"]
    assert result["after"]["standalone"][instance_id]["done"] == "stopped and started"
    assert instance_state(instance_id) == "running"


def test_stop_start_resumes_a_stopped_instance_by_starting_it(store, lambda_context):
    # Given a stop and start whose attempt stopped the instance and then died
    instance_id = standalone_instance()
    event = event_for(instance_id, outside_group="stop_start")
    dry = apply({**event, "dry_run": True}, lambda_context)  # records the state before, changes nothing
    impairment_id = event["impairment"]["impairment_id"]
    store.put_action(impairment_id, 0, "apply", {"status": "started", "before": dry["before"]})
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[instance_id])
    calls = ec2_calls()

    # When the step is retried
    result = apply(event, lambda_context)

    # Then it only starts the instance
    assert mutating(calls) == ["StartInstances"]
    assert result["result"] == "changed"
    assert result["after"]["standalone"][instance_id]["done"] == "started"
    assert instance_state(instance_id) == "running"


def test_stop_start_running_again_after_the_stop_is_done(store, lambda_context):
    # Given the instance was stopped (recorded) and started again before the step was recorded done
    instance_id = standalone_instance()
    event = event_for(instance_id, outside_group="stop_start")
    first = apply(event, lambda_context)
    crashed = {**first["before"], "progress": {instance_id: "stop_requested"}}
    store.put_action(event["impairment"]["impairment_id"], 0, "apply", {"status": "started", "before": crashed})
    calls = ec2_calls()

    # When the step is retried
    retried = apply(event, lambda_context)

    # Then it does not stop the instance again
    assert mutating(calls) == []
    assert retried["result"] == "changed"  # the first attempt's change, reported as this step's
    assert instance_state(instance_id) == "running"


def test_stop_start_still_stopping_is_transient(store, lambda_context):
    # Given the state before is recorded and the instance is still stopping
    instance_id = standalone_instance()
    event = event_for(instance_id, outside_group="stop_start", stop_wait_seconds=0)
    dry = apply({**event, "dry_run": True}, lambda_context)
    store.put_action(event["impairment"]["impairment_id"], 0, "apply", {"status": "started", "before": dry["before"]})
    client = aws.client("ec2", max_attempts=1)
    stopping = client.describe_instances(InstanceIds=[instance_id])
    stopping.pop("ResponseMetadata")
    stopping["Reservations"][0]["Instances"][0]["State"] = {"Code": 64, "Name": "stopping"}

    with Stubber(client) as stubber:
        # (read first before the step knows of its recorded attempt: the instance stopping is
        # transient there, and the step then resumes from its record)
        stubber.add_response("describe_instances", stopping)
        stubber.add_response("describe_instances", stopping)
        stubber.add_response("describe_instances", stopping)

        # When the step runs
        with pytest.raises(TransientError, match="not stopped yet"):
            apply(event, lambda_context)

        # Then it asked for nothing but the instance's state
        stubber.assert_no_pending_responses()


def test_stop_start_refused_for_an_instance_store_root(store, lambda_context):
    from moto.ec2.models import ec2_backends

    instance_id = standalone_instance()
    ec2_backends[ACCOUNT][REGION].get_instance(instance_id).root_device_type = "instance-store"
    calls = ec2_calls()

    with pytest.raises(ActionRefused, match="only an EBS-backed instance"):
        apply(event_for(instance_id, outside_group="stop_start"), lambda_context)

    assert mutating(calls) == []
    assert instance_state(instance_id) == "running"


def test_refused_for_an_instance_that_did_not_opt_in(store, lambda_context):
    instance_id = standalone_instance(managed=False)
    calls = ec2_calls()

    with pytest.raises(ActionRefused, match="not managed"):
        apply(event_for(instance_id, outside_group="reboot"), lambda_context)

    assert mutating(calls) == []


def test_dry_run_changes_nothing(store, lambda_context):
    instance_id = standalone_instance()
    calls = ec2_calls()

    result = apply(event_for(instance_id, dry_run=True, outside_group="stop_start"), lambda_context)

    assert result["result"] == "would_change"
    assert result["after"]["standalone"][instance_id]["done"] == "would stop and start"
    assert mutating(calls) == []
    assert instance_state(instance_id) == "running"


@pytest.mark.parametrize("mode", ["reboot", "stop_start"])
def test_rollback_reports_a_restart_as_irreversible(store, lambda_context, mode):
    # Given an instance outside a group was rebooted or stopped and started
    instance_id = standalone_instance()
    event = event_for(instance_id, outside_group=mode)
    applied = apply(event, lambda_context)
    calls = ec2_calls()

    # When the step is rolled back
    result = rollback(event, applied, lambda_context)

    # Then it says so, and touches nothing
    assert result["result"] == "irreversible"
    assert instance_id in result["message"]
    assert mutating(calls) == []


def test_group_members_and_standalone_instances_in_one_impairment(store, lambda_context):
    # Given an impairment of one group instance and one standalone instance
    workload = build_workload(min_size=1, desired=3)
    member = workload.instance_ids()[0]
    loner = standalone_instance()
    event = action_event(impairment(instances=[member, loner]), "replace_instance", params={"outside_group": "reboot"})

    # When applied
    result = apply(event, lambda_context)

    # Then the member is replaced through its group and the standalone instance rebooted
    assert result["result"] == "changed"
    assert result["targets"] == sorted([member, loner])
    assert member not in workload.instance_ids()
    assert result["after"]["standalone"][loner]["done"] == "rebooted"


def _start_fails(times: int) -> None:
    """EC2 refuses the action's next `times` StartInstances as AWS does when a zone has no capacity."""
    from botocore.awsrequest import AWSResponse

    client = aws.client("ec2", max_attempts=1)
    left = {"n": times}

    def refuse(model, **_):
        if left["n"] <= 0:
            return None
        left["n"] -= 1
        error = {"Code": "InsufficientInstanceCapacity", "Message": "We currently do not have sufficient capacity"}
        return AWSResponse("https://ec2", 500, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}

    client.meta.events.register("before-call.ec2.StartInstances", refuse)


def test_a_stop_start_whose_start_keeps_failing_is_started_again_by_its_rollback(store, lambda_context):
    # Given a stop and start whose start fails for lack of capacity, again and again
    instance_id = standalone_instance()
    event = event_for(instance_id, outside_group="stop_start")
    _start_fails(times=2)
    with pytest.raises(TransientError, match="InsufficientInstanceCapacity"):
        apply(event, lambda_context)
    assert instance_state(instance_id) == "stopped"
    record = store.get_action(event["impairment"]["impairment_id"], 0, "apply")
    applied = {"before": record["before"], "after": {}}

    # When the retries ran out and the step is rolled back while capacity is still short
    with pytest.raises(TransientError) as still:
        rollback(event, applied, lambda_context)
    # Then the rollback says plainly that the instance is stopped, and how to start it
    assert f"instance {instance_id} is STOPPED" in str(still.value) and "start-instances" in str(still.value)

    # And once capacity is back, the retried rollback starts it: it is not left stopped
    result = rollback(event, applied, lambda_context)
    assert result["result"] == "changed" and "started again" in result["message"]
    assert instance_state(instance_id) == "running"
