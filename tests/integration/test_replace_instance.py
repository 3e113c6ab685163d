"""replace_instance under moto: the group replaces the impaired instance, within its safety limits."""

from __future__ import annotations

import pytest

from actions import replace_instance
from core.errors import ActionRefused, PermanentError
from tests.builders import action_event, build_workload, instance_state


def apply(event, context):
    return replace_instance.apply_handler(event, context)


def test_apply_terminates_the_instance_and_the_group_launches_a_replacement(store, lambda_context):
    # Given a managed group of 3 healthy instances (MinSize 2) and one impaired instance
    workload = build_workload(min_size=2, desired=3)
    original = workload.instance_ids()
    impaired = original[0]

    # When replace_instance is applied to it
    result = apply(action_event(workload.impairment_of(impaired), "replace_instance"), lambda_context)

    # Then the instance is terminated and out of the group, the desired capacity is unchanged,
    # and the group has launched a new instance in its place
    assert result["result"] == "changed"
    assert instance_state(impaired) in ("shutting-down", "terminated")
    assert workload.desired_capacity() == 3
    now = workload.instance_ids()
    assert impaired not in now
    assert len(now) == 3
    assert len(set(now) - set(original)) == 1
    # and the audit trail holds the state before: the group and its desired capacity
    assert result["before"]["instances"][impaired]["group"] == workload.group_name
    assert result["before"]["instances"][impaired]["desired_capacity"] == 3
    record = store.get_action(workload.impairment_of(impaired).impairment_id, 0, "apply")
    assert record["status"] == "done"
    assert record["before"] == result["before"]


def test_mark_unhealthy_leaves_the_replacement_to_the_group(store, lambda_context):
    # Given a managed group and a plan that marks instances unhealthy instead of terminating
    workload = build_workload(min_size=1, desired=3)
    impaired = workload.instance_ids()[2]
    event = action_event(workload.impairment_of(impaired), "replace_instance", params={"mode": "mark_unhealthy"})

    # When applied
    result = apply(event, lambda_context)

    # Then the instance is no longer healthy in the group, and the desired capacity is unchanged
    assert result["result"] == "changed"
    health = {i["InstanceId"]: i["HealthStatus"] for i in workload.group()["Instances"]}
    assert health.get(impaired, "Unhealthy") == "Unhealthy"
    assert workload.desired_capacity() == 3


def _stop(*instance_ids: str) -> None:
    import boto3

    boto3.client("ec2").stop_instances(InstanceIds=list(instance_ids))


def test_a_failed_instance_of_a_group_at_its_minimum_is_replaced_in_place(store, lambda_context):
    # Given the most common shape: min = desired = max = 3, and one instance stopped
    workload = build_workload(min_size=3, max_size=3, desired=3)
    original = workload.instance_ids()
    failed = original[0]
    _stop(failed)

    # When replace_instance is applied to it
    result = apply(action_event(workload.impairment_of(failed), "replace_instance"), lambda_context)

    # Then it is replaced in place (a stopped instance is no healthy capacity to keep), and the
    # step says so, and that the group could not surge
    assert result["result"] == "changed"
    assert result["before"]["groups"][workload.group_name]["strategy"] == "in_place"
    assert "in place" in result["message"] and "cannot surge" in result["message"]
    assert "already failing" in result["message"]
    now = workload.instance_ids()
    assert failed not in now and len(now) == 3 and workload.desired_capacity() == 3


def test_the_only_instance_of_a_group_is_replaced(store, lambda_context):
    workload = build_workload(min_size=1, max_size=1, desired=1)
    (only,) = workload.instance_ids()
    _stop(only)

    result = apply(action_event(workload.impairment_of(only), "replace_instance"), lambda_context)

    assert result["result"] == "changed"
    (replacement,) = workload.instance_ids()
    assert replacement != only and instance_state(replacement) == "running"


def test_refused_when_a_healthy_instance_would_take_the_group_below_its_minimum_and_it_cannot_surge(
    store, lambda_context
):
    # Given a group at its minimum and its maximum (2, 2, 2) whose instance still looks healthy
    workload = build_workload(min_size=2, max_size=2, desired=2)
    impaired = workload.instance_ids()[0]
    event = action_event(workload.impairment_of(impaired), "replace_instance")

    # When replace_instance is applied
    with pytest.raises(ActionRefused, match=r"below its minimum of 2.*cannot launch the replacement first"):
        apply(event, lambda_context)

    # Then nothing was touched, and the refusal is in the audit trail
    assert instance_state(impaired) == "running"
    assert impaired in workload.instance_ids()
    record = store.get_action(workload.impairment_of(impaired).impairment_id, 0, "apply")
    assert record["status"] == "failed"
    assert "below its minimum" in record["error"]


def test_a_healthy_instance_of_a_group_at_its_minimum_is_replaced_by_surging_first(store, lambda_context):
    # Given a group at its minimum (2 of 2) with headroom (max 4), whose instance an application
    # alarm flagged while the group and the load balancer still count it healthy
    workload = build_workload(min_size=2, max_size=4, desired=2)
    original = workload.instance_ids()
    flagged = original[0]

    result = apply(action_event(workload.impairment_of(flagged), "replace_instance"), lambda_context)

    # Then the replacement was launched first and the old instance taken out after, with the
    # desired capacity decremented back: the group never had fewer than 2 healthy
    assert result["result"] == "changed"
    assert result["before"]["groups"][workload.group_name]["strategy"] == "surge"
    assert "surge" in result["message"]
    now = workload.instance_ids()
    assert flagged not in now and len(now) == 2 and workload.desired_capacity() == 2
    assert instance_state(flagged) in ("shutting-down", "terminated")


def test_a_surge_waits_for_its_replacements_and_its_rollback_gives_the_capacity_back(
    store, lambda_context, monkeypatch
):
    from actions import autoscaling
    from core.errors import CapacityNotReady

    # Given a surge whose new instances are not healthy in service yet
    workload = build_workload(min_size=2, max_size=4, desired=2)
    original = workload.instance_ids()
    model = workload.impairment_of(original[0])
    real = autoscaling.healthy_in_service
    monkeypatch.setattr(
        autoscaling,
        "healthy_in_service",
        lambda group, excluding=frozenset(): [i for i in real(group, excluding) if i in original],
    )

    # When the step runs: it raises the capacity and waits (the state machine asks again)
    with pytest.raises(CapacityNotReady):
        apply(action_event(model, "replace_instance"), lambda_context)
    assert workload.desired_capacity() == 3 and original[0] in workload.instance_ids()
    # and asked again, it does not raise the capacity a second time
    with pytest.raises(CapacityNotReady):
        apply(action_event(model, "replace_instance"), lambda_context)
    assert workload.desired_capacity() == 3

    # When the wait runs out and the step is rolled back (from what the audit trail recorded)
    started = store.get_action(model.impairment_id, 0, "apply")
    assert started["status"] == "started"
    rolled = replace_instance.rollback_handler(
        action_event(model, "replace_instance", applied={"before": started["before"], "after": {}}), lambda_context
    )

    # Then the surge's capacity goes back and the old instance was never taken out
    assert rolled["result"] == "changed" and workload.desired_capacity() == 2
    assert instance_state(original[0]) == "running"


def test_refused_when_the_plan_asks_for_more_healthy_capacity_than_would_remain(store, lambda_context):
    # Given a group with MinSize 1 and no headroom, but a plan that keeps at least 3 healthy
    workload = build_workload(min_size=1, max_size=3, desired=3)
    impaired = workload.instance_ids()[0]
    event = action_event(
        workload.impairment_of(impaired), "replace_instance", params={"min_healthy_capacity": 3, "strategy": "in_place"}
    )

    with pytest.raises(ActionRefused, match="minimum of 3"):
        apply(event, lambda_context)

    assert instance_state(impaired) == "running"


def test_refused_for_a_group_that_did_not_opt_in(store, lambda_context):
    # Given a group without the managed tag
    workload = build_workload(managed=False, min_size=1, desired=3)
    impaired = workload.instance_ids()[0]

    # When replace_instance is applied to one of its instances
    with pytest.raises(ActionRefused, match="not managed"):
        apply(action_event(workload.impairment_of(impaired), "replace_instance"), lambda_context)

    # Then the instance is left running in its group
    assert instance_state(impaired) == "running"
    assert impaired in workload.instance_ids()


def test_an_impairment_without_an_instance_is_a_permanent_error(store, lambda_context):
    workload = build_workload(min_size=1, desired=3)

    with pytest.raises(PermanentError, match="needs an ec2:instance"):
        apply(action_event(workload.impairment_of(), "replace_instance"), lambda_context)

    assert len(workload.instance_ids()) == 3


def test_applying_the_same_step_twice_changes_nothing_more(store, lambda_context):
    # Given replace_instance has been applied once for this impairment's step 0
    workload = build_workload(min_size=1, desired=3)
    impaired = workload.instance_ids()[0]
    event = action_event(workload.impairment_of(impaired), "replace_instance")
    first = apply(event, lambda_context)
    after_first = workload.instance_ids()

    # When the same step is delivered again (a Lambda or state machine retry)
    second = apply(event, lambda_context)

    # Then no other instance is terminated, the group is as the first run left it, and the
    # recorded result is returned
    assert workload.instance_ids() == after_first
    assert all(instance_state(i) == "running" for i in after_first)
    assert workload.desired_capacity() == 3
    assert second == first


def test_a_retry_after_a_crash_mid_step_reuses_the_recorded_state_and_terminates_nothing_more(store, lambda_context):
    # Given the step terminated the instance but its Lambda died before recording "done":
    # only the "started" record with the state before is in the audit trail
    workload = build_workload(min_size=1, desired=3)
    impaired = workload.instance_ids()[0]
    model = workload.impairment_of(impaired)
    event = action_event(model, "replace_instance")
    first = apply(event, lambda_context)
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})
    after_first = workload.instance_ids()

    # When the step is retried
    retried = apply(event, lambda_context)

    # Then it recognises the instance as replaced by its own first attempt: it changes nothing
    # more, and reports "changed" (what it did is what later states act on)
    assert retried["result"] == "changed"
    assert retried["before"] == first["before"]
    assert workload.instance_ids() == after_first
    assert all(instance_state(i) == "running" for i in after_first)


def test_rollback_of_a_termination_reports_it_cannot_be_undone(store, lambda_context):
    # Given an instance was replaced
    workload = build_workload(min_size=1, desired=3)
    impaired = workload.instance_ids()[0]
    model = workload.impairment_of(impaired)
    applied = apply(action_event(model, "replace_instance"), lambda_context)

    # When the step is rolled back
    result = replace_instance.rollback_handler(action_event(model, "replace_instance", applied=applied), lambda_context)

    # Then it says the instance cannot come back, and leaves the group's replacement alone
    assert result["result"] == "irreversible"
    assert impaired in result["message"]
    assert len(workload.instance_ids()) == 3


def _stopped_in(workload) -> tuple[str, dict]:
    """One instance of the workload stopped, and CheckGuardrails' carried read of its group."""
    impaired = workload.instance_ids()[0]
    _stop(impaired)
    fleets = {workload.group_name: {"instances": [impaired], "failing": {impaired: "EC2 state stopped"}}}
    return impaired, fleets


def test_with_the_guardrails_read_carried_it_reads_only_the_group_before_acting(store, lambda_context, aws_calls):
    # Given a group of 3, one instance stopped, and CheckGuardrails' read of the group carried in
    workload = build_workload(min_size=2, desired=3)
    impaired, fleets = _stopped_in(workload)
    event = {**action_event(workload.impairment_of(impaired), "replace_instance"), "fleets": fleets}
    aws_calls.clear()

    # When replace_instance is applied
    result = apply(event, lambda_context)

    # Then its only read is the group, once, before it terminates: no target health, no EC2
    # status, no membership look-up, no read afterwards; the record is one put before, one after
    assert [c for c in aws_calls if not c.startswith("dynamodb")] == [
        "auto-scaling:DescribeAutoScalingGroups",
        "auto-scaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert [c for c in aws_calls if c.startswith("dynamodb")] == ["dynamodb:PutItem", "dynamodb:PutItem"]
    assert instance_state(impaired) in ("shutting-down", "terminated")
    # and the carried finding is in the audit trail's state before; the state after is the
    # group's termination activity
    assert result["before"]["instances"][impaired]["failing"] == "EC2 state stopped"
    assert result["after"]["instances"][impaired]["termination_activity"]


def test_a_carried_instance_the_group_no_longer_holds_is_not_taken_out_on_the_old_read(store, lambda_context):
    # Given CheckGuardrails read the group with the instance in it, and someone then detached it
    import boto3

    workload = build_workload(min_size=1, desired=3)
    impaired, fleets = _stopped_in(workload)
    boto3.client("autoscaling", region_name="us-east-1").detach_instances(
        InstanceIds=[impaired], AutoScalingGroupName=workload.group_name, ShouldDecrementDesiredCapacity=True
    )
    event = {**action_event(workload.impairment_of(impaired), "replace_instance"), "fleets": fleets}

    # When replace_instance is applied: the fresh read of the group decides, not the carried one
    with pytest.raises(ActionRefused, match="outside an Auto Scaling group"):
        apply(event, lambda_context)

    # Then the instance, outside the group now, is left alone
    assert instance_state(impaired) == "stopped"
