"""provision_standby_ecs_service under moto: a standby region's ECS service brought up to its count
before traffic moves there, waited for, verified, and rolled back.

The tests run as the standby region's stack (REGION, us-east-1 here; the impaired region is
us-west-2). moto runs a service's new desired count at once (UpdateService sets its running
count); a service whose tasks keep stopping is emulated by putting its running count back to 0
after each UpdateService, its rollout IN_PROGRESS.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from actions import plans, provision_standby_ecs_service, registry
from core.errors import ActionRefused, CapacityNotReady, PermanentError
from orchestration import verify
from tests.builders import ACCOUNT, MANAGED_TAG, REGION, action_event, impairment, run_step

CLUSTER, SERVICE = "checkout-standby", "checkout-api"
IMPAIRED = "us-west-2"
SCOPE = {
    "impaired_region": IMPAIRED,
    "standby_region": REGION,
    "standby_ecs_cluster": CLUSTER,
    "standby_ecs_service": SERVICE,
    "standby_ecs_desired_count": "3",
}


def _ecs(region: str = REGION) -> Any:
    return boto3.client("ecs", region_name=region)


def build_service(region: str = REGION, *, managed: bool = True, desired: int = 0) -> None:
    """The standby service, kept at `desired` tasks (0: pilot light), all of them running."""
    ecs = _ecs(region)
    ecs.create_cluster(clusterName=CLUSTER)
    task_definition = ecs.register_task_definition(
        family=SERVICE, containerDefinitions=[{"name": "app", "image": "public.ecr.aws/nginx/nginx:1", "memory": 256}]
    )["taskDefinition"]["taskDefinitionArn"]
    tags = [{"key": MANAGED_TAG[0], "value": MANAGED_TAG[1]}] if managed else []
    ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=task_definition, desiredCount=desired, tags=tags
    )
    _set_running(desired, region)  # moto starts none of them by itself
    for deployment in _backend_service(region).deployments:
        deployment["rolloutState"] = "COMPLETED"


def described(region: str = REGION) -> dict[str, Any]:
    return _ecs(region).describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]


def tasks_keep_stopping(monkeypatch) -> None:
    """Every task the service starts stops: it runs none, its rollout never completes."""
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend.update_service

    def update_service(self, properties):
        service = original(self, properties)
        service.running_count = 0
        for deployment in service.deployments:
            deployment.update({"runningCount": 0, "failedTasks": 3, "rolloutState": "IN_PROGRESS"})
        return service

    monkeypatch.setattr(EC2ContainerServiceBackend, "update_service", update_service)


def region_impairment(scope: dict[str, str] | None = None):
    return impairment(
        impairment_type="region_impairment",
        severity="critical",
        resources=[("region:workload", f"{IMPAIRED}/checkout")],
        scope=SCOPE if scope is None else scope,
    )


def apply(model, context, **params) -> dict[str, Any]:
    event = action_event(model, "provision_backup", params={"kind": "standby_ecs_service"} | params)
    return run_step("apply", event, context)


def rollback(model, context, applied, **params) -> dict[str, Any]:
    event = action_event(model, "provision_backup", params={"kind": "standby_ecs_service"} | params, applied=applied)
    return run_step("rollback", event, context)


# --- apply: the count from the scope, bounded, waited for -----------------------------------


def test_the_standby_service_is_scaled_to_the_scopes_count_in_this_region_only(store, lambda_context):
    # Given the standby service here, and a service of the same name in the impaired region
    build_service()
    build_service(IMPAIRED, desired=2)

    # When the plan's step names nothing: the region impairment's scope names the standby
    result = apply(region_impairment(), lambda_context)

    # Then the standby service runs the scope's count, steady: the step ends
    assert result["action"] == "provision_standby_ecs_service"
    assert result["result"] == "changed"
    assert (described()["desiredCount"], described()["runningCount"]) == (3, 3)
    assert result["before"]["desired_count"] == 0 and result["after"]["desired_count"] == 3
    assert result["targets"] == [described()["serviceArn"]]
    # And the impaired region's service is untouched
    assert described(IMPAIRED)["desiredCount"] == 2


def test_the_count_is_never_set_above_the_bound_nor_lowered(store, lambda_context):
    build_service()
    capped = apply(region_impairment(), lambda_context, desired_count=8, max_desired_count=4)
    assert described()["desiredCount"] == 4
    assert "limited by max_desired_count 4" in capped["message"]

    # A service already running more than asked is left as it is
    _ecs().update_service(cluster=CLUSTER, service=SERVICE, desiredCount=6)
    event = action_event(region_impairment(), "provision_backup", index=1, params={"kind": "standby_ecs_service"})
    result = run_step("apply", event, lambda_context)
    assert result["result"] == "unchanged"
    assert described()["desiredCount"] == 6


def test_the_step_waits_until_the_tasks_run_then_ends_without_a_second_change(store, lambda_context, monkeypatch):
    # Given a standby service whose tasks do not start yet
    build_service()
    with monkeypatch.context() as patch:
        tasks_keep_stopping(patch)

        # When the step runs: it raises the count, then says it waits (the state machine asks again)
        with pytest.raises(CapacityNotReady, match="0 of 3 tasks running, deployment IN_PROGRESS"):
            apply(region_impairment(), lambda_context)
    assert described()["desiredCount"] == 3

    # And once the tasks run and the deployment completed, the retry ends the step as changed
    for deployment in _deployments():
        deployment["rolloutState"] = "COMPLETED"
    _set_running(3)
    result = apply(region_impairment(), lambda_context)
    assert result["result"] == "changed"
    assert result["before"]["desired_count"] == 0


def test_the_step_need_not_wait(store, lambda_context, monkeypatch):
    build_service()
    tasks_keep_stopping(monkeypatch)
    result = apply(region_impairment(), lambda_context, wait_until_in_service=False)
    assert result["result"] == "changed" and described()["desiredCount"] == 3


def test_a_service_that_did_not_opt_in_is_refused_and_left_as_it_is(store, lambda_context):
    build_service(managed=False)
    with pytest.raises(ActionRefused):
        apply(region_impairment(), lambda_context)
    assert described()["desiredCount"] == 0


@pytest.mark.parametrize("missing", ["standby_ecs_cluster", "standby_ecs_service", "standby_ecs_desired_count"])
def test_without_a_service_or_a_count_anywhere_it_is_refused(store, lambda_context, missing):
    build_service()
    scope = {k: v for k, v in SCOPE.items() if k != missing}
    with pytest.raises(PermanentError, match="needs cluster, service and desired_count"):
        apply(region_impairment(scope), lambda_context)
    assert described()["desiredCount"] == 0


# --- rollback -------------------------------------------------------------------------------


def test_rollback_restores_the_count_recorded_before(store, lambda_context):
    build_service(desired=1)
    applied = apply(region_impairment(), lambda_context)
    assert described()["desiredCount"] == 3

    result = rollback(region_impairment(), lambda_context, applied)

    assert result["result"] == "changed"
    assert described()["desiredCount"] == 1


def test_rollback_after_a_wait_that_timed_out_scales_back_unless_someone_changed_it(store, lambda_context, monkeypatch):
    # Given the step raised the count and timed out waiting: rollback gets only its state before
    build_service()
    tasks_keep_stopping(monkeypatch)
    with pytest.raises(CapacityNotReady):
        apply(region_impairment(), lambda_context)
    before = store.get_action(region_impairment().impairment_id, 0, "apply")["before"]
    assert before["target"] == 3

    # When it rolls back: the count goes back to what it was
    assert rollback(region_impairment(), lambda_context, {"before": before})["result"] == "changed"
    assert described()["desiredCount"] == 0


def test_rollback_leaves_a_count_someone_changed_since_even_after_a_timed_out_wait(store, lambda_context, monkeypatch):
    build_service()
    tasks_keep_stopping(monkeypatch)
    with pytest.raises(CapacityNotReady):
        apply(region_impairment(), lambda_context)
    before = store.get_action(region_impairment().impairment_id, 0, "apply")["before"]
    _ecs().update_service(cluster=CLUSTER, service=SERVICE, desiredCount=5)

    result = rollback(region_impairment(), lambda_context, {"before": before})

    assert result["result"] == "unchanged" and "changed by someone else" in result["message"]
    assert described()["desiredCount"] == 5


# --- verify and the declaration -------------------------------------------------------------


def test_verify_checks_the_standby_service_runs_what_the_step_set(store, lambda_context):
    build_service()
    applied = apply(region_impairment(), lambda_context)
    step = {"index": 0, "action": "provision_standby_ecs_service", "params": {}}

    checks = verify.check(region_impairment(), [step], results=[applied])
    ours = [c for c in checks if c["check"] == "standby_ecs_service"]
    assert [(c["passed"], c["running"], c["scaled_to"]) for c in ours] == [(True, 3, 3)]

    # Once its tasks stop, it no longer does
    _set_running(1)
    checks = verify.check(region_impairment(), [step], results=[applied])
    assert [c["passed"] for c in checks if c["check"] == "standby_ecs_service"] == [False]


def test_it_is_a_kind_of_provision_backup_with_its_own_check_and_nothing_handed_back():
    spec = registry.get("provision_standby_ecs_service")
    assert registry.ALIASES["provision_backup"].kinds["standby_ecs_service"] == spec.name
    assert spec.verification.step_check == "actions.provision_standby_ecs_service:verify_step"
    assert spec.hand_back is None
    assert not plans.takes_out_of_service([{"action": spec.name}])
    assert {"ecs:DescribeServices", "ecs:ListTagsForResource", "ecs:UpdateService"} <= set(spec.iam_actions)
    assert provision_standby_ecs_service.Params().wait_until_in_service


def _backend_service(region: str = REGION) -> Any:
    from moto.ecs.models import ecs_backends

    return ecs_backends[ACCOUNT][region].services[f"{CLUSTER}:{SERVICE}"]


def _deployments() -> list[dict[str, Any]]:
    return _backend_service().deployments


def _set_running(count: int, region: str = REGION) -> None:
    service = _backend_service(region)
    service.running_count = count
    for deployment in service.deployments:
        deployment["runningCount"] = count
