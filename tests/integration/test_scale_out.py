"""scale_out under moto: bounded capacity increases, exact rollback, and classified API errors."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from actions import scale_out
from core import aws
from core.errors import ActionRefused, TransientError
from tests.builders import action_event, build_workload


def apply(workload, context, **params):
    return scale_out.apply_handler(action_event(workload.impairment_of(), "scale_out", params=params), context)


def rollback(workload, context, applied):
    return scale_out.rollback_handler(action_event(workload.impairment_of(), "scale_out", applied=applied), context)


@pytest.mark.parametrize(
    ("desired", "max_size", "params", "expected"),
    [
        (3, 6, {"increment": 2}, 5),
        (3, 6, {}, 4),
        (5, 6, {"increment": 3}, 6),
        (3, 6, {"increment": 3, "max_desired_capacity": 4}, 4),
        (3, 4, {"increment": 5, "max_desired_capacity": 10}, 4),
    ],
    ids=["by-increment", "default-increment", "capped-at-max-size", "capped-by-plan", "max-size-below-plan-cap"],
)
def test_apply_raises_desired_capacity_by_the_increment_within_both_caps(
    store, lambda_context, desired, max_size, params, expected
):
    # Given a managed group
    workload = build_workload(min_size=1, desired=desired, max_size=max_size)

    # When scale_out is applied
    result = apply(workload, lambda_context, **params)

    # Then desired capacity is raised by the increment, never above MaxSize or the plan's cap,
    # and the state before is recorded
    assert workload.desired_capacity() == expected
    assert result["result"] == "changed"
    assert result["before"]["desired_capacity"] == desired
    assert result["after"]["desired_capacity"] == expected


def test_a_group_already_at_max_size_is_left_unchanged(store, lambda_context):
    workload = build_workload(min_size=1, desired=4, max_size=4)

    result = apply(workload, lambda_context, increment=2)

    assert result["result"] == "unchanged"
    assert workload.desired_capacity() == 4


def test_applying_the_same_step_twice_scales_out_once(store, lambda_context):
    # Given scale_out by 2 has been applied for this impairment's step
    workload = build_workload(min_size=1, desired=3, max_size=10)
    first = apply(workload, lambda_context, increment=2)

    # When the same step is delivered again
    second = apply(workload, lambda_context, increment=2)

    # Then capacity went up by 2 once, not twice
    assert workload.desired_capacity() == 5
    assert second == first


def test_a_retry_after_a_crash_mid_step_applies_the_same_absolute_change(store, lambda_context):
    # Given the step raised capacity 3 -> 5 but died before recording "done"
    workload = build_workload(min_size=1, desired=3, max_size=10)
    model = workload.impairment_of()
    first = apply(workload, lambda_context, increment=2)
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})

    # When the step is retried
    retried = apply(workload, lambda_context, increment=2)

    # Then the target is still "3 + 2" from the recorded state, not "5 + 2"
    assert workload.desired_capacity() == 5
    assert retried["result"] == "changed"  # its own change, made by the attempt that died


def test_rollback_restores_exactly_the_previous_desired_capacity(store, lambda_context):
    # Given scale_out raised a group from 3 to 5
    workload = build_workload(min_size=1, desired=3, max_size=10)
    applied = apply(workload, lambda_context, increment=2)
    assert workload.desired_capacity() == 5

    # When it is rolled back
    result = rollback(workload, lambda_context, applied)

    # Then the group is back at 3
    assert workload.desired_capacity() == 3
    assert result["result"] == "changed"
    assert result["after"]["desired_capacity"] == 3


def test_rollback_after_an_operator_raised_the_group_gives_back_only_its_own(store, lambda_context):
    # Given scale_out raised a group from 3 to 5, and then an operator set it to 7
    workload = build_workload(min_size=1, desired=3, max_size=10)
    applied = apply(workload, lambda_context, increment=2)
    workload.set_desired_capacity(7)

    # When the scale-out is rolled back
    result = rollback(workload, lambda_context, applied)

    # Then the operator's 2 stay: only the 2 the step added go, from the current value
    assert workload.desired_capacity() == 5
    assert result["result"] == "changed"
    assert result["message"].startswith("desired capacity 7 -> 5: gave back 2 of the 2 added by recovery")


def test_rollback_after_an_operator_lowered_the_group_never_raises_it_nor_takes_more(store, lambda_context):
    # Given scale_out raised a group from 3 to 5, and then an operator took it down to 4
    workload = build_workload(min_size=1, desired=3, max_size=10)
    applied = apply(workload, lambda_context, increment=2)
    workload.set_desired_capacity(4)

    # When the scale-out is rolled back
    result = rollback(workload, lambda_context, applied)

    # Then the one the operator took away counts as given back: 4 -> 3, the group's own 3
    assert workload.desired_capacity() == 3
    assert "gave back 1 of the 2" in result["message"]
    assert "1 of this recovery's had already been taken away by someone else" in result["message"]


def test_rollback_never_goes_below_a_min_size_raised_since(store, lambda_context):
    # Given scale_out raised a group from 3 to 5, then an operator raised its MinSize to 4
    import boto3

    workload = build_workload(min_size=1, desired=3, max_size=10)
    applied = apply(workload, lambda_context, increment=2)
    boto3.client("autoscaling", region_name="us-east-1").update_auto_scaling_group(
        AutoScalingGroupName=workload.group_name, MinSize=4
    )

    # When the scale-out is rolled back
    result = rollback(workload, lambda_context, applied)

    # Then it stops at the MinSize, and says so
    assert workload.desired_capacity() == 4
    assert "gave back 1 of the 2" in result["message"] and "not below MinSize 4" in result["message"]


def test_rollback_twice_restores_once(store, lambda_context):
    # Given a rollback has restored 5 -> 3, then capacity was raised again by someone else
    workload = build_workload(min_size=1, desired=3, max_size=10)
    applied = apply(workload, lambda_context, increment=2)
    first = rollback(workload, lambda_context, applied)
    workload.set_desired_capacity(6)

    # When the rollback step is delivered again
    again = rollback(workload, lambda_context, applied)

    # Then it returns its recorded result and does not touch the group
    assert again == first
    assert workload.desired_capacity() == 6


def test_refused_for_a_group_that_did_not_opt_in(store, lambda_context):
    workload = build_workload(managed=False, min_size=1, desired=3)

    with pytest.raises(ActionRefused, match="not managed"):
        apply(workload, lambda_context, increment=2)

    assert workload.desired_capacity() == 3


def test_throttling_surfaces_as_a_transient_error_and_changes_nothing(store, lambda_context):
    # Given Auto Scaling throttles the call that sets the capacity
    workload = build_workload(min_size=1, desired=3, max_size=10)
    group = workload.group()
    client = aws.client("autoscaling", max_attempts=1)  # the client the action uses
    with Stubber(client) as stubber:
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_client_error(
            "set_desired_capacity",
            service_error_code="Throttling",
            service_message="Rate exceeded",
            http_status_code=400,
        )

        # When scale_out is applied
        with pytest.raises(TransientError) as caught:
            apply(workload, lambda_context, increment=2)

    # Then the state machine gets a retryable error naming the operation, nothing changed,
    # and the step is left "started" with its state before, for the retry to reuse
    assert caught.value.details == {"operation": "autoscaling:SetDesiredCapacity", "code": "Throttling"}
    assert workload.desired_capacity() == 3
    record = store.get_action(workload.impairment_of().impairment_id, 0, "apply")
    assert record["status"] == "started"
    assert record["before"]["desired_capacity"] == 3

    # And when the retry runs with the throttling gone, it completes the same change
    retried = apply(workload, lambda_context, increment=2)
    assert retried["result"] == "changed"
    assert workload.desired_capacity() == 5


def test_a_dry_run_reports_the_change_and_makes_none(store, lambda_context):
    # Given a group at 3
    workload = build_workload(desired=3, max_size=6)
    event = action_event(workload.impairment_of(workload.instance_ids()[0]), "scale_out", params={"increment": 2})
    event["dry_run"] = True

    # When the step runs as a dry run, and its rollback too
    result = scale_out.apply_handler(event, lambda_context)
    undone = scale_out.rollback_handler({**event, "applied": result}, lambda_context)

    # Then it says what it would do, and the group is untouched
    assert result["result"] == "would_change"
    assert "3 -> 5" in result["message"]
    assert undone["result"] == "unchanged"
    assert workload.desired_capacity() == 3
