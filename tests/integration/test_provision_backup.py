"""provision_backup under moto: warm pool, standby instances and a standby group brought into
service, within their limits, and put back exactly on rollback.

moto keeps a warm pool's configuration but never puts instances in it, so the warm pool's
DescribeWarmPool answers come from `warm_pool` below, in the real response shape (validated
against botocore's model); everything else is moto.
"""

from __future__ import annotations

import copy

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from actions import autoscaling as asg
from core import aws
from core.errors import ActionRefused, CapacityNotReady, InvalidInput, PermanentError, TransientError
from tests.builders import REGION, action_event, build_workload, run_step


def apply(workload, context, dry_run=False, **params):
    event = action_event(workload.impairment_of(), "provision_backup", params=params)
    if dry_run:
        event["dry_run"] = True
    return run_step("apply", event, context)


def rollback(workload, context, applied, **params):
    event = action_event(workload.impairment_of(), "provision_backup", params=params, applied=applied)
    return run_step("rollback", event, context)


def warm_pool(group_name: str, *states: str) -> None:
    """Answer DescribeWarmPool for the action's client: a pool holding instances in these
    lifecycle states (Warmed:Stopped, Warmed:Pending, ...)."""
    client = aws.client("autoscaling", max_attempts=1)
    response = {
        "WarmPoolConfiguration": {"MinSize": len(states), "PoolState": "Stopped"},
        "Instances": [
            {
                "InstanceId": f"i-0{n:016x}",
                "InstanceType": "t3.micro",
                "AvailabilityZone": f"{REGION}a",
                "LifecycleState": state,
                "HealthStatus": "Healthy",
                "LaunchTemplate": {"LaunchTemplateName": "web-api", "Version": "1"},
                "ProtectedFromScaleIn": False,
            }
            for n, state in enumerate(states, start=1)
        ],
    }
    validate_parameters(response, client.meta.service_model.operation_model("DescribeWarmPool").output_shape)

    def answer(params, **_):
        assert params["body"]["AutoScalingGroupName"] == group_name  # the serialized request
        return AWSResponse(None, 200, {}, None), copy.deepcopy(response)

    client.meta.events.register("before-call.auto-scaling.DescribeWarmPool", answer)


def enter_standby(workload, count: int) -> list[str]:
    instances = workload.instance_ids()[:count]
    boto3.client("autoscaling", region_name=REGION).enter_standby(
        AutoScalingGroupName=workload.group_name, InstanceIds=instances, ShouldDecrementDesiredCapacity=True
    )
    return instances


def lifecycle(workload) -> dict[str, str]:
    return {i["InstanceId"]: i["LifecycleState"] for i in workload.group()["Instances"]}


# --- warm_pool ------------------------------------------------------------------------------


def test_warm_pool_raises_desired_capacity_by_no_more_than_the_pool_holds(store, lambda_context):
    # Given a managed group at 3 (MaxSize 6) whose warm pool holds 2 warmed instances and 1 still warming
    workload = build_workload(min_size=1, desired=3, max_size=6)
    warm_pool(workload.group_name, "Warmed:Stopped", "Warmed:Running", "Warmed:Pending")

    # When the plan asks for 5 instances from the pool
    result = apply(workload, lambda_context, kind="warm_pool", count=5)

    # Then the desired capacity rises by the 2 warmed instances only, and the state before is recorded
    assert result["result"] == "changed"
    assert workload.desired_capacity() == 5
    assert result["before"]["desired_capacity"] == 3
    assert len(result["before"]["warmed_instances"]) == 2
    assert "2 warmed instances in the pool" in result["message"]


def test_warm_pool_stays_within_max_size(store, lambda_context):
    workload = build_workload(min_size=1, desired=5, max_size=6)
    warm_pool(workload.group_name, "Warmed:Stopped", "Warmed:Stopped", "Warmed:Stopped")

    result = apply(workload, lambda_context, kind="warm_pool", count=3)

    assert workload.desired_capacity() == 6
    assert "MaxSize 6" in result["message"]


def test_warm_pool_rollback_restores_the_desired_capacity(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)
    warm_pool(workload.group_name, "Warmed:Stopped", "Warmed:Stopped")
    applied = apply(workload, lambda_context, kind="warm_pool", count=2)
    assert workload.desired_capacity() == 5

    result = rollback(workload, lambda_context, applied, kind="warm_pool", count=2)

    assert result["result"] == "changed"
    assert workload.desired_capacity() == 3


def test_warm_pool_applied_twice_raises_capacity_once(store, lambda_context):
    # Given the step ran, and its Lambda died before recording "done"
    workload = build_workload(min_size=1, desired=3, max_size=6)
    warm_pool(workload.group_name, "Warmed:Stopped", "Warmed:Stopped")
    first = apply(workload, lambda_context, kind="warm_pool", count=2)
    impairment_id = workload.impairment_of().impairment_id
    store.put_action(impairment_id, 0, "apply", {"status": "started", "before": first["before"]})

    # When the step is retried
    again = apply(workload, lambda_context, kind="warm_pool", count=2)

    # Then the capacity is raised once, by the same absolute change; the step reports the change it made
    assert again["result"] == "changed"
    assert again["before"]["desired_capacity"] == 3
    assert workload.desired_capacity() == 5


def test_warm_pool_without_warmed_instances_is_a_permanent_error(store, lambda_context):
    # Given a warm pool (in moto: configured, and empty)
    workload = build_workload(min_size=1, desired=3, max_size=6)
    boto3.client("autoscaling", region_name=REGION).put_warm_pool(AutoScalingGroupName=workload.group_name, MinSize=0)

    with pytest.raises(PermanentError, match="no warmed instance"):
        apply(workload, lambda_context, kind="warm_pool")

    assert workload.desired_capacity() == 3


def test_a_group_without_a_warm_pool_is_a_permanent_error(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)

    with pytest.raises(PermanentError, match="has no warm pool"):
        apply(workload, lambda_context, kind="warm_pool")


def test_warm_pool_dry_run_changes_nothing(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)
    warm_pool(workload.group_name, "Warmed:Stopped")

    result = apply(workload, lambda_context, dry_run=True, kind="warm_pool")

    assert result["result"] == "would_change"
    assert workload.desired_capacity() == 3
    assert "3 -> 4" in result["message"]


# --- standby_instances ----------------------------------------------------------------------


def test_standby_instances_exit_standby_and_rollback_puts_exactly_them_back(store, lambda_context):
    # Given a managed group with 2 of its 3 instances in Standby (desired capacity 1)
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = enter_standby(workload, 2)
    assert workload.desired_capacity() == 1

    # When one standby instance is brought into service
    applied = apply(workload, lambda_context, kind="standby_instances", count=1)

    # Then exactly one leaves Standby, and ExitStandby raised the desired capacity by one
    assert applied["result"] == "changed"
    (brought,) = applied["targets"]
    assert brought in standby
    assert lifecycle(workload)[brought] == "InService"
    assert workload.desired_capacity() == 2
    assert applied["before"]["standby_instances"] == sorted(standby)

    # And when rolled back, that instance goes back to Standby and the capacity back to 1
    result = rollback(workload, lambda_context, applied, kind="standby_instances", count=1)
    assert result["result"] == "changed"
    assert lifecycle(workload)[brought] == "Standby"
    assert workload.desired_capacity() == 1
    assert sorted(i for i, s in lifecycle(workload).items() if s == "Standby") == sorted(standby)


def test_standby_instances_applied_twice_exits_standby_once(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)
    enter_standby(workload, 2)
    first = apply(workload, lambda_context, kind="standby_instances", count=1)
    store.put_action(
        workload.impairment_of().impairment_id, 0, "apply", {"status": "started", "before": first["before"]}
    )

    again = apply(workload, lambda_context, kind="standby_instances", count=1)

    # the retry brings no second instance out, and reports the first attempt's change as its own
    assert again["result"] == "changed"
    assert again["targets"] == first["targets"]
    assert workload.desired_capacity() == 2
    assert sum(1 for s in lifecycle(workload).values() if s == "Standby") == 1


def test_standby_instances_stay_within_max_size(store, lambda_context):
    # Given a group with one instance in Standby and no room below MaxSize
    workload = build_workload(min_size=1, desired=3, max_size=6)
    (standby,) = enter_standby(workload, 1)
    workload.set_desired_capacity(6)

    result = apply(workload, lambda_context, kind="standby_instances", count=1)

    assert result["result"] == "unchanged"
    assert "MaxSize" in result["message"]
    assert lifecycle(workload)[standby] == "Standby"


def test_standby_instances_without_any_is_a_permanent_error(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)

    with pytest.raises(PermanentError, match="no instance in Standby"):
        apply(workload, lambda_context, kind="standby_instances")


def test_standby_instances_dry_run_changes_nothing(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = enter_standby(workload, 1)

    result = apply(workload, lambda_context, dry_run=True, kind="standby_instances")

    assert result["result"] == "would_change"
    assert lifecycle(workload)[standby[0]] == "Standby"
    assert workload.desired_capacity() == 2


# --- standby_group --------------------------------------------------------------------------


def test_standby_group_scales_up_and_rollback_restores_it(store, lambda_context):
    # Given the workload's group and a managed standby group at 0
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)

    # When the plan scales the standby group to 3
    params = {"kind": "standby_group", "standby_group": standby.group_name, "desired_capacity": 3}
    applied = apply(workload, lambda_context, **params)

    # Then the standby group runs 3 instances, and the workload's group is untouched
    assert applied["result"] == "changed"
    assert applied["targets"] == [standby.group_name]
    assert standby.desired_capacity() == 3
    assert len(standby.instance_ids()) == 3
    assert workload.desired_capacity() == 3

    # And the rollback scales it back to 0, once
    result = rollback(workload, lambda_context, applied, **params)
    assert result["result"] == "changed"
    assert standby.desired_capacity() == 0
    assert rollback(workload, lambda_context, applied, **params) == result


def test_standby_group_never_exceeds_its_max_size_nor_scales_in(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=2)

    result = apply(workload, lambda_context, kind="standby_group", standby_group=standby.group_name, desired_capacity=5)

    assert standby.desired_capacity() == 2
    assert "MaxSize 2" in result["message"]


def test_standby_group_rollback_gives_back_only_its_own_when_someone_else_raised_it_since(store, lambda_context):
    # Given the standby group was scaled 0 -> 2, then an operator raised it to 4
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)
    params = {"kind": "standby_group", "standby_group": standby.group_name, "desired_capacity": 2}
    applied = apply(workload, lambda_context, **params)
    standby.set_desired_capacity(4)

    # When the step is rolled back
    result = rollback(workload, lambda_context, applied, **params)

    # Then only the 2 this step added go: the operator's 2 stay
    assert result["result"] == "changed"
    assert standby.desired_capacity() == 2
    assert "4 -> 2: gave back 2 of the 2" in result["message"]


def test_refused_for_a_standby_group_that_did_not_opt_in(store, lambda_context):
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4, managed=False)

    with pytest.raises(ActionRefused, match="not managed"):
        apply(workload, lambda_context, kind="standby_group", standby_group=standby.group_name, desired_capacity=2)

    assert standby.desired_capacity() == 0


@pytest.mark.parametrize("kind", ["warm_pool", "standby_instances"])
def test_refused_for_a_group_that_did_not_opt_in(store, lambda_context, kind):
    workload = build_workload(managed=False, min_size=1, desired=3, max_size=6)

    with pytest.raises(ActionRefused, match="not managed"):
        apply(workload, lambda_context, kind=kind)

    assert workload.desired_capacity() == 3


def test_throttling_is_transient_and_the_retry_completes_the_change(store, lambda_context):
    # Given Auto Scaling throttles the call that scales the standby group
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)
    params = {"kind": "standby_group", "standby_group": standby.group_name, "desired_capacity": 2}
    group = standby.group()
    client = aws.client("autoscaling", max_attempts=1)
    with Stubber(client) as stubber:
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_client_error("set_desired_capacity", service_error_code="Throttling", http_status_code=400)

        with pytest.raises(TransientError) as caught:
            apply(workload, lambda_context, **params)

    # Then the error is retryable, nothing changed, and the retry makes the same change
    assert caught.value.details == {"operation": "autoscaling:SetDesiredCapacity", "code": "Throttling"}
    assert standby.desired_capacity() == 0
    assert apply(workload, lambda_context, **params)["result"] == "changed"
    assert standby.desired_capacity() == 2


def test_a_validation_error_is_permanent(store, lambda_context):
    # Given Auto Scaling rejects the ExitStandby call
    workload = build_workload(min_size=1, desired=3, max_size=6)
    enter_standby(workload, 1)
    group = workload.group()
    client = aws.client("autoscaling", max_attempts=1)
    with Stubber(client) as stubber:
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_client_error("exit_standby", service_error_code="ValidationError", http_status_code=400)

        with pytest.raises(PermanentError) as caught:
            apply(workload, lambda_context, kind="standby_instances")

    assert not isinstance(caught.value, TransientError)
    assert caught.value.details["operation"] == "autoscaling:ExitStandby"


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "warm_pool", "desired_capacity": 2},
        {"kind": "standby_instances", "standby_group": "backup"},
        {"kind": "warm_pool", "count": 0},
    ],
)
def test_parameters_that_do_not_fit_the_kind_are_invalid(store, lambda_context, params):
    workload = build_workload(min_size=1, desired=3, max_size=6)

    with pytest.raises(InvalidInput):
        apply(workload, lambda_context, **params)


def test_standby_group_and_capacity_default_to_the_impairments_scope(store, lambda_context):
    # Given a region impairment seen from the standby region: its scope names the standby group
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)
    impairment = workload.impairment_of().model_copy(
        update={
            "scope": {
                "auto_scaling_group": standby.group_name,
                "standby_auto_scaling_group": standby.group_name,
                "standby_desired_capacity": "2",
            }
        }
    )

    # When the plan's step names neither
    applied = run_step(
        "apply", action_event(impairment, "provision_backup", params={"kind": "standby_group"}), lambda_context
    )

    # Then the scope's standby group is scaled to the scope's capacity
    assert applied["targets"] == [standby.group_name]
    assert standby.desired_capacity() == 2


@pytest.mark.parametrize(
    "params",
    [{"kind": "standby_group", "standby_group": "web-api-standby"}, {"kind": "standby_group", "desired_capacity": 2}],
)
def test_standby_group_without_a_group_or_a_capacity_anywhere_is_refused_and_changes_nothing(
    store, lambda_context, params
):
    # Given a standby group, and an impairment whose scope does not name a standby
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)

    # When the step lacks the group or the capacity, it fails permanently (rolled back, escalated)
    with pytest.raises(PermanentError, match="standby_group and desired_capacity"):
        apply(workload, lambda_context, **params)

    # And nothing changed
    assert standby.desired_capacity() == 0
    assert workload.desired_capacity() == 3


@pytest.mark.parametrize("kind", ["warm_pool", "standby_instances"])
def test_a_rollback_that_fails_keeps_the_state_it_found_in_the_audit_trail(store, lambda_context, kind):
    # Given capacity brought into service
    workload = build_workload(min_size=1, desired=3, max_size=6)
    if kind == "warm_pool":
        warm_pool(workload.group_name, "Warmed:Stopped")
        applied = apply(workload, lambda_context, kind="warm_pool", count=1)
        refused = "set_desired_capacity"
    else:
        enter_standby(workload, 1)
        applied = apply(workload, lambda_context, kind="standby_instances", count=1)
        refused = "enter_standby"
    model = workload.impairment_of()

    # When the rollback's change is denied
    client = aws.client("autoscaling", max_attempts=1)

    def deny(**kwargs):
        if kwargs["model"].name == refused.title().replace("_", ""):
            return AWSResponse(None, 403, {}, None), {"Error": {"Code": "AccessDenied", "Message": "denied"}}
        return None

    client.meta.events.register("before-call.auto-scaling.*", deny)
    with pytest.raises(PermanentError):
        rollback(workload, lambda_context, applied, kind=kind, count=1)

    # Then the failed rollback's record holds the state it found before trying
    record = store.get_action(model.impairment_id, 0, "rollback")
    assert record["status"] == "failed"
    assert record["before"] and record["before"]["group"] == workload.group_name


def test_standby_group_waits_until_its_capacity_is_healthy_in_service(store, lambda_context, monkeypatch):
    # Given a standby group at 0, whose new instances are still booting (not yet healthy in service)
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)
    params = {"kind": "standby_group", "standby_group": standby.group_name, "desired_capacity": 2}
    with monkeypatch.context() as patch:
        patch.setattr(asg, "healthy_in_service", lambda group, excluding=frozenset(): [])

        # When the step runs, it raises the capacity, then says it waits (the state machine asks again)
        with pytest.raises(CapacityNotReady, match="0 of 2 instances healthy in service"):
            apply(workload, lambda_context, **params)
    assert standby.desired_capacity() == 2

    # And once the instances are in service, the retry ends the step: changed, without a second change
    result = apply(workload, lambda_context, **params)
    assert result["result"] == "changed"
    assert result["before"]["desired_capacity"] == 0
    assert standby.desired_capacity() == 2


def test_standby_group_need_not_wait(store, lambda_context, monkeypatch):
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)
    monkeypatch.setattr(asg, "healthy_in_service", lambda group, excluding=frozenset(): [])

    result = apply(
        workload,
        lambda_context,
        kind="standby_group",
        standby_group=standby.group_name,
        desired_capacity=2,
        wait_until_in_service=False,
    )

    assert result["result"] == "changed"
    assert standby.desired_capacity() == 2


def _regional(workload, standby, target_group_arn: str | None = None):
    """A region impairment's scope, as the region probe writes it: the standby group (and its target group)."""
    scope = {
        "auto_scaling_group": standby.group_name,
        "standby_auto_scaling_group": standby.group_name,
        "standby_desired_capacity": "2",
    }
    if target_group_arn:
        scope["target_group_arn"] = target_group_arn
    return workload.impairment_of().model_copy(update={"scope": scope})


def test_a_standby_waits_for_its_target_groups_healthy_targets_too(store, lambda_context):
    # Given the standby's target group, into which its instances are not registered yet
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=4)
    elbv2 = boto3.client("elbv2", region_name=REGION)
    serving = elbv2.create_target_group(
        Name="web-api-standby-serving", Protocol="HTTP", Port=80, VpcId=standby.vpc_id, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    event = action_event(_regional(workload, standby, serving), "provision_backup", params={"kind": "standby_group"})

    # When the step runs: the instances are in service, but no target serves yet
    with pytest.raises(CapacityNotReady, match="0 of 2 targets healthy"):
        run_step("apply", event, lambda_context)

    # Then once they are registered and pass their checks, the retry ends the step
    elbv2.register_targets(TargetGroupArn=serving, Targets=[{"Id": i} for i in standby.instance_ids()])
    assert run_step("apply", event, lambda_context)["result"] == "changed"


def test_a_standby_group_that_can_bring_nothing_up_is_refused(store, lambda_context):
    # Given a pilot-light standby whose MaxSize was left at 0
    workload = build_workload(min_size=1, desired=3, max_size=6)
    standby = build_workload("web-api-standby", min_size=0, desired=0, max_size=0)
    event = action_event(_regional(workload, standby), "provision_backup", params={"kind": "standby_group"})

    # Then the step is refused, naming the MaxSize, and nothing changes (traffic never moves to nothing)
    with pytest.raises(ActionRefused, match="MaxSize is 0"):
        run_step("apply", event, lambda_context)
    assert standby.desired_capacity() == 0
