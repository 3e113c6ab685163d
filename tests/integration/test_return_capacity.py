"""Emergency capacity: returned once the workload stayed healthy, kept when it is not healthy or
when the plan keeps it."""

from __future__ import annotations

from actions import scale_out
from core.store import RecoveryStore
from orchestration import finalize, return_capacity
from tests.builders import TABLE_NAME, action_event, build_workload


def _recovered_state(workload, params: dict, lambda_context) -> dict:
    """The execution's state after a recovery whose only step scaled the group out."""
    model = workload.impairment_of(workload.instance_ids()[0])
    event = action_event(model, "scale_out", params=params)
    # recorded as Start records it (Finalize and ReturnCapacity only update a record that exists)
    RecoveryStore(TABLE_NAME).put_impairment(event["impairment"], status="recovering")
    result = scale_out.apply_handler(event, lambda_context)
    return {
        "impairment": event["impairment"],
        "plan": {"name": "p", "steps": [event["step"]], "verify": {"wait_seconds": 0, "max_attempts": 1}},
        "actions": [result],
        "admission": {"lock_keys": []},
    }


def test_finalize_asks_to_return_the_capacity_unless_the_plan_keeps_it(store, lambda_context):
    workload = build_workload(desired=3)
    returned = finalize.handler(
        _recovered_state(workload, {"return_after_seconds": 900}, lambda_context), lambda_context
    )
    assert returned["return_capacity_after_seconds"] == 900

    kept = finalize.handler(_recovered_state(workload, {"keep": True}, lambda_context), lambda_context)
    assert kept["return_capacity_after_seconds"] == 0


def test_capacity_is_returned_when_the_workload_is_healthy(store, lambda_context):
    # Given a recovery added one instance to a healthy group
    workload = build_workload(desired=3)
    state = _recovered_state(workload, {"increment": 1}, lambda_context)
    assert workload.desired_capacity() == 4

    # When the wait is over
    outcome = return_capacity.handler(state, lambda_context)

    # Then the desired capacity is what it was before the recovery
    assert [r["result"] for r in outcome["returned"]] == ["changed"]
    assert workload.desired_capacity() == 3
    assert store.get_impairment(state["impairment"]["impairment_id"])["capacity_returned"] is True


def test_capacity_stays_while_the_workload_is_not_healthy(store, lambda_context):
    # Given the recovery added capacity, and then an instance of the group turned unhealthy
    import boto3

    workload = build_workload(desired=3)
    state = _recovered_state(workload, {"increment": 1}, lambda_context)
    boto3.client("autoscaling", region_name="us-east-1").set_instance_health(
        InstanceId=workload.instance_ids()[0], HealthStatus="Unhealthy"
    )

    outcome = return_capacity.handler(state, lambda_context)

    assert outcome["returned"] == []
    assert "not healthy" in outcome["reason"]
    assert workload.desired_capacity() == 4
