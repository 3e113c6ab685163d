"""scale_ecs_service under moto: an ECS service's desired count raised by a bounded amount,
verified, and handed back after the recovery (as scale_out does for a group).

moto runs a service's new desired count at once (UpdateService sets its running count); a
service whose tasks do not all run is one created with MOTO_ECS_SERVICE_RUNNING below its count,
whose rollout then stays IN_PROGRESS.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from actions import plans, registry, scale_ecs_service
from core.errors import ActionRefused, InvalidInput, PermanentError
from core.store import RecoveryStore
from orchestration import finalize, return_capacity, verify
from tests.builders import ACCOUNT, MANAGED_TAG, REGION, TABLE_NAME, action_event, impairment

CLUSTER, SERVICE = "checkout", "checkout-api"


def _ecs() -> Any:
    return boto3.client("ecs", region_name=REGION)


def build_service(monkeypatch, *, managed: bool = True, running: int = 2) -> None:
    """A cluster with a service of 2 tasks, `running` of them running (2: its rollout COMPLETED)."""
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", str(running))
    ecs = _ecs()
    ecs.create_cluster(clusterName=CLUSTER)
    task_definition = ecs.register_task_definition(
        family=SERVICE, containerDefinitions=[{"name": "app", "image": "public.ecr.aws/nginx/nginx:1", "memory": 256}]
    )["taskDefinition"]["taskDefinitionArn"]
    tags = [{"key": MANAGED_TAG[0], "value": MANAGED_TAG[1]}] if managed else []
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=task_definition, desiredCount=2, tags=tags)


def desired() -> int:
    return _ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["desiredCount"]


def scale_in_by_hand(count: int) -> None:
    _ecs().update_service(cluster=CLUSTER, service=SERVICE, desiredCount=count)


def ecs_impairment(scope: dict[str, str] | None = None):
    return impairment(
        resources=[("ecs:service", f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}")],
        scope={"ecs_cluster": CLUSTER, "ecs_service": SERVICE} if scope is None else scope,
    )


def apply(model, context, dry_run: bool = False, index: int = 0, **params) -> dict[str, Any]:
    event = action_event(model, "scale_ecs_service", index=index, params=params)
    event["dry_run"] = dry_run
    return scale_ecs_service.apply_handler(event, context)


def rollback(model, context, applied, **params) -> dict[str, Any]:
    event = action_event(model, "scale_ecs_service", params=params, applied=applied)
    return scale_ecs_service.rollback_handler(event, context)


# --- apply and rollback ---------------------------------------------------------------------


def test_apply_raises_the_desired_count_and_records_the_count_before(store, lambda_context, monkeypatch):
    build_service(monkeypatch)
    model = ecs_impairment()

    result = apply(model, lambda_context, increment=2)

    assert result["result"] == "changed"
    assert desired() == 4
    assert result["before"]["desired_count"] == 2
    assert result["after"]["desired_count"] == 4
    assert result["targets"] == [result["before"]["service_arn"]]
    assert "desired count 2 -> 4" in result["message"]
    assert store.get_action(model.impairment_id, 0, "apply")["before"] == result["before"]


def test_apply_never_goes_above_the_cap_nor_lowers_the_count(store, lambda_context, monkeypatch):
    build_service(monkeypatch)

    capped = apply(ecs_impairment(), lambda_context, increment=5, max_desired_count=3)
    assert desired() == 3
    assert "capped at 3" in capped["message"]

    # a cap below the current count (a later step) changes nothing
    assert apply(ecs_impairment(), lambda_context, index=1, max_desired_count=1)["result"] == "unchanged"
    assert desired() == 3


def test_the_service_may_come_from_the_params(store, lambda_context, monkeypatch):
    build_service(monkeypatch)

    result = apply(ecs_impairment(scope={}), lambda_context, cluster=CLUSTER, service=SERVICE)

    assert result["result"] == "changed"
    assert desired() == 3


def test_apply_twice_and_a_retry_after_a_crash_scale_once(store, lambda_context, monkeypatch):
    # Given the step scaled the service out by one
    build_service(monkeypatch)
    model = ecs_impairment()
    first = apply(model, lambda_context)

    # When the step is delivered again, and retried after a crash before "done" was recorded
    again = apply(model, lambda_context)
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})
    retried = apply(model, lambda_context)

    # Then the count rose once, and the retry still reports the change as this step's
    assert again == first
    assert retried["result"] == "changed"
    assert desired() == 3


def test_a_dry_run_changes_nothing(store, lambda_context, monkeypatch):
    build_service(monkeypatch)

    result = apply(ecs_impairment(), lambda_context, dry_run=True, increment=3)

    assert result["result"] == "would_change"
    assert desired() == 2


def test_refused_for_a_service_that_did_not_opt_in(store, lambda_context, monkeypatch):
    build_service(monkeypatch, managed=False)

    with pytest.raises(ActionRefused, match="not managed"):
        apply(ecs_impairment(), lambda_context)
    assert desired() == 2


def test_without_a_service_or_with_an_unknown_one_is_a_permanent_error(store, lambda_context, monkeypatch):
    build_service(monkeypatch)

    with pytest.raises(PermanentError, match="needs a cluster and a service"):
        apply(ecs_impairment(scope={}), lambda_context)
    with pytest.raises(PermanentError, match="MISSING"):
        apply(ecs_impairment(scope={"ecs_cluster": CLUSTER, "ecs_service": "nope"}), lambda_context)


@pytest.mark.parametrize("params", [{"increment": 0}, {"increment": 101}, {"max_desired_count": 0}, {"size": 3}])
def test_unbounded_or_unknown_params_are_refused(store, lambda_context, monkeypatch, params):
    build_service(monkeypatch)

    with pytest.raises(InvalidInput):
        apply(ecs_impairment(), lambda_context, **params)
    with pytest.raises(plans.PlanError, match=r"plans.0.steps.0.params.* \(plan 'p', action scale_ecs_service\)"):
        plans.parse_plans(
            [
                {
                    "name": "p",
                    "match": {"impairment_types": ["service_degradation"]},
                    "steps": [{"action": "scale_ecs_service", "params": params}],
                }
            ]
        )


def test_rollback_restores_the_desired_count(store, lambda_context, monkeypatch):
    build_service(monkeypatch)
    model = ecs_impairment()
    applied = apply(model, lambda_context, increment=2)

    result = rollback(model, lambda_context, applied, increment=2)

    assert result["result"] == "changed"
    assert desired() == 2
    assert result["before"]["desired_count"] == 4


def test_rollback_leaves_a_count_someone_changed_since(store, lambda_context, monkeypatch):
    build_service(monkeypatch)
    model = ecs_impairment()
    applied = apply(model, lambda_context)
    scale_in_by_hand(5)

    result = rollback(model, lambda_context, applied)

    assert result["result"] == "unchanged"
    assert "changed by someone else" in result["message"]
    assert desired() == 5


def test_rollback_of_a_step_that_never_scaled_changes_nothing(store, lambda_context, monkeypatch):
    build_service(monkeypatch)
    model = ecs_impairment()
    before = apply(model, lambda_context, dry_run=True)["before"]

    result = rollback(model, lambda_context, {"before": before, "after": {}})

    assert result["result"] == "unchanged"
    assert desired() == 2


# --- what the workflow does after it: verify, finalize, return the capacity ----------------


def _recovered(model, params: dict, lambda_context) -> dict[str, Any]:
    """The execution's state after a recovery whose only step scaled the service out."""
    event = action_event(model, "scale_ecs_service", params=params)
    # recorded as Start records it (Finalize and ReturnCapacity only update a record that exists)
    RecoveryStore(TABLE_NAME).put_impairment(event["impairment"], status="recovering")
    result = scale_ecs_service.apply_handler(event, lambda_context)
    return {
        "impairment": event["impairment"],
        "plan": {"name": "p", "steps": [event["step"]], "verify": {"wait_seconds": 0, "max_attempts": 1}},
        "actions": [result],
        "admission": {"lock_keys": []},
    }


def test_verify_checks_that_the_service_runs_the_new_desired_count(store, lambda_context, monkeypatch):
    # Given the step scaled the service from 2 to 3
    build_service(monkeypatch)
    model = ecs_impairment()
    state = _recovered(model, {}, lambda_context)

    # When Verify checks, the service runs 3: healthy
    checks = verify.check(model, state["plan"]["steps"], results=state["actions"])
    ours = [c for c in checks if c["check"] == "ecs_desired_count"]
    assert ours == [
        {
            "check": "ecs_desired_count",
            "service": SERVICE,
            "passed": True,
            "running": 3,
            "desired": 3,
            "rollout_state": "COMPLETED",
            "scaled_to": 3,
        }
    ]
    assert all(c["passed"] for c in checks)

    # And once someone scales it back in, it no longer runs what the step set: not healthy
    scale_in_by_hand(2)
    checks = verify.check(model, state["plan"]["steps"], results=state["actions"])
    assert [c["passed"] for c in checks if c["check"] == "ecs_desired_count"] == [False]


def test_finalize_asks_to_hand_the_tasks_back_unless_the_plan_keeps_them(store, lambda_context, monkeypatch):
    build_service(monkeypatch)
    state = _recovered(ecs_impairment(), {"return_after_seconds": 900}, lambda_context)
    assert finalize.handler(state, lambda_context)["return_capacity_after_seconds"] == 900

    state["plan"]["steps"][0]["params"] = {"keep": True}
    kept = finalize.handler(state, lambda_context)
    assert kept["return_capacity_after_seconds"] == 0


def test_the_tasks_go_back_once_the_workload_stayed_healthy(store, lambda_context, monkeypatch):
    # Given a recovery added two tasks to a healthy service
    build_service(monkeypatch)
    state = _recovered(ecs_impairment(), {"increment": 2}, lambda_context)
    assert desired() == 4

    # When the wait is over
    outcome = return_capacity.handler(state, lambda_context)

    # Then the desired count is what it was before the recovery
    assert [r["result"] for r in outcome["returned"]] == ["changed"]
    assert desired() == 2
    assert store.get_impairment(state["impairment"]["impairment_id"])["capacity_returned"] is True


def test_the_tasks_stay_while_the_workload_is_not_healthy(store, lambda_context, monkeypatch):
    # Given a service whose rollout never completed (its tasks do not all run), scaled out
    build_service(monkeypatch, running=1)
    state = _recovered(ecs_impairment(), {"increment": 1}, lambda_context)

    outcome = return_capacity.handler(state, lambda_context)

    assert outcome["returned"] == []
    assert "not healthy" in outcome["reason"]
    assert desired() == 3


def _fail_rollout() -> None:
    """The service's deployment fails (the circuit breaker's FAILED): its running count stays."""
    from moto.ecs.models import ecs_backends

    service = ecs_backends[ACCOUNT][REGION].services[f"{CLUSTER}:{SERVICE}"]
    for deployment in service.deployments:
        deployment["rolloutState"] = "FAILED"


def test_the_tasks_stay_after_a_failed_deployment_even_when_only_the_step_names_the_service(
    store, lambda_context, monkeypatch
):
    # Given a recovery of an impairment whose scope names no service (the step's params name it)
    # scaled the service out, and every task it set runs
    build_service(monkeypatch)
    params = {"cluster": CLUSTER, "service": SERVICE, "increment": 1}
    state = _recovered(ecs_impairment(scope={}), params, lambda_context)
    assert desired() == 3

    # When the service's deployment has failed by the time the tasks are due back
    _fail_rollout()
    outcome = return_capacity.handler(state, lambda_context)

    # Then the tasks stay: the service is not steady, whatever its running count
    assert outcome["returned"] == []
    assert "not healthy" in outcome["reason"]
    assert desired() == 3


def test_the_tasks_stay_while_the_service_runs_fewer_than_someone_since_asked_for(store, lambda_context, monkeypatch):
    # Given a recovery scaled 2 -> 3, then someone raised the count to 5 and only 3 run
    build_service(monkeypatch)
    state = _recovered(ecs_impairment(scope={}), {"cluster": CLUSTER, "service": SERVICE}, lambda_context)
    from moto.ecs.models import ecs_backends

    ecs_backends[ACCOUNT][REGION].services[f"{CLUSTER}:{SERVICE}"].desired_count = 5

    # Then the step's own check fails (runningCount below desiredCount): nothing goes back yet
    checks = verify.check(ecs_impairment(scope={}), state["plan"]["steps"], results=state["actions"])
    ours = [c for c in checks if c["check"] == "ecs_desired_count"]
    assert [(c["passed"], c["running"], c["desired"]) for c in ours] == [(False, 3, 5)]


def test_it_is_declared_like_scale_out():
    spec = registry.get("scale_ecs_service")
    assert not plans.takes_out_of_service([{"action": "scale_ecs_service"}])
    assert spec.hand_back is not None and spec.hand_back.only_if_healthy
    assert spec.hand_back_after({}) == 3600 and spec.hand_back_after({"keep": True}) is None
    assert spec.verification.step_check == "actions.scale_ecs_service:verify_step"
    assert "ecs:UpdateService" in spec.iam_actions
