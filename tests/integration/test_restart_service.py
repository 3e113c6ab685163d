"""restart_service under moto: a forced new ECS deployment, and a systemd unit restarted through
SSM Run Command on the impaired instances.

What moto lacks is said where it is stood in for: its Run Command invocations succeed at once
(a command still running or failing is simulated by overriding the status GetCommandInvocation
reports), and its ECS rollouts stay IN_PROGRESS unless MOTO_ECS_SERVICE_RUNNING says the tasks
run (a failed rollout is set on moto's own deployment).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from core import aws
from core.errors import ActionRefused, InvalidInput, PermanentError, TransientError
from tests.builders import ACCOUNT, MANAGED_TAG, REGION, action_event, impairment, run_step

CLUSTER, SERVICE, UNIT = "web", "api", "nginx.service"


def apply(model, context, **params):
    return run_step("apply", action_event(model, "restart_service", params=params), context)


def rollback(model, context, applied, **params):
    return run_step("rollback", action_event(model, "restart_service", params=params, applied=applied), context)


def dry_run(model, context, **params):
    event = action_event(model, "restart_service", params=params)
    event["dry_run"] = True
    return run_step("apply", event, context)


def throttled(operation: str):
    def raise_throttling(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation)

    return raise_throttling


# --- ECS ------------------------------------------------------------------------------------


def _ecs():
    return boto3.client("ecs", region_name=REGION)


def build_service(*, managed: bool = True, running: bool = False, monkeypatch=None) -> str:
    """A cluster with a service of 2 tasks; its rollout is COMPLETED if running, else IN_PROGRESS."""
    if monkeypatch is not None:
        monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "2" if running else "0")
    ecs = _ecs()
    ecs.create_cluster(clusterName=CLUSTER)
    task_definition = ecs.register_task_definition(
        family=SERVICE, containerDefinitions=[{"name": "app", "image": "public.ecr.aws/nginx/nginx:1", "memory": 256}]
    )["taskDefinition"]["taskDefinitionArn"]
    tags = [{"key": MANAGED_TAG[0], "value": MANAGED_TAG[1]}] if managed else []
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=task_definition, desiredCount=2, tags=tags)
    return task_definition


def service() -> dict[str, Any]:
    return _ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]


def primary_deployment() -> str:
    return next(d["id"] for d in service()["deployments"] if d["status"] == "PRIMARY")


def ecs_impairment(scope: dict[str, str] | None = None):
    return impairment(
        resources=[("ecs:service", f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}")],
        scope={"ecs_cluster": CLUSTER, "ecs_service": SERVICE} if scope is None else scope,
    )


def test_ecs_apply_forces_a_new_deployment_and_records_the_deployments_before(store, lambda_context):
    # Given a managed service with one deployment
    task_definition = build_service()
    deployment = primary_deployment()
    model = ecs_impairment()

    # When restart_service is applied
    result = apply(model, lambda_context, kind="ecs")

    # Then ECS runs a new deployment of the same task definition, and the one before is recorded
    assert result["result"] == "changed"
    assert primary_deployment() != deployment
    assert service()["taskDefinition"] == task_definition
    assert result["before"]["primary_deployment"] == deployment
    assert [d["id"] for d in result["before"]["deployments"]] == [deployment]
    assert result["before"]["task_definition"] == task_definition
    assert result["after"]["primary_deployment"] == primary_deployment()
    assert store.get_action(model.impairment_id, 0, "apply")["before"] == result["before"]


def test_ecs_targets_may_come_from_the_params(store, lambda_context):
    build_service()
    deployment = primary_deployment()

    result = apply(ecs_impairment(scope={}), lambda_context, kind="ecs", cluster=CLUSTER, service=SERVICE)

    assert result["result"] == "changed"
    assert primary_deployment() != deployment


def test_ecs_apply_twice_and_a_retry_after_a_crash_deploy_once(store, lambda_context):
    # Given the step forced a new deployment
    build_service()
    model = ecs_impairment()
    first = apply(model, lambda_context, kind="ecs")
    deployment = primary_deployment()

    # When the step is delivered again, and retried after a crash before "done" was recorded
    second = apply(model, lambda_context, kind="ecs")
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": first["before"]})
    retried = apply(model, lambda_context, kind="ecs")

    # Then no further deployment was forced: the newer one is recognised as this step's
    assert second == first
    assert retried["result"] == "changed"
    assert "already started" in retried["message"]
    assert primary_deployment() == deployment


def test_ecs_dry_run_forces_nothing(store, lambda_context):
    build_service()
    deployment = primary_deployment()

    result = dry_run(ecs_impairment(), lambda_context, kind="ecs")

    assert result["result"] == "would_change"
    assert "would force" in result["message"]
    assert primary_deployment() == deployment


def test_ecs_refused_for_a_service_that_did_not_opt_in(store, lambda_context):
    build_service(managed=False)
    deployment = primary_deployment()

    with pytest.raises(ActionRefused, match="not managed"):
        apply(ecs_impairment(), lambda_context, kind="ecs")

    assert primary_deployment() == deployment


def test_ecs_without_a_target_or_with_an_unknown_service_is_a_permanent_error(store, lambda_context):
    build_service()

    with pytest.raises(PermanentError, match="needs a cluster and a service"):
        apply(ecs_impairment(scope={}), lambda_context, kind="ecs")
    with pytest.raises(PermanentError, match="MISSING"):
        apply(ecs_impairment(scope={"ecs_cluster": CLUSTER, "ecs_service": "nope"}), lambda_context, kind="ecs")


def test_ecs_rollback_reports_a_forced_deployment_as_irreversible(store, lambda_context):
    build_service()
    model = ecs_impairment()
    applied = apply(model, lambda_context, kind="ecs")
    deployment = primary_deployment()

    result = rollback(model, lambda_context, applied, kind="ecs")

    assert result["result"] == "irreversible"
    assert "cannot be undone" in result["message"]
    assert primary_deployment() == deployment


def test_ecs_rollback_restores_the_task_definition_if_it_changed(store, lambda_context):
    # Given the restart ran, and the service now runs another task definition
    task_definition = build_service()
    model = ecs_impairment()
    applied = apply(model, lambda_context, kind="ecs")
    other = _ecs().register_task_definition(
        family=SERVICE, containerDefinitions=[{"name": "app", "image": "public.ecr.aws/nginx/nginx:2", "memory": 256}]
    )["taskDefinition"]["taskDefinitionArn"]
    _ecs().update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=other)

    # When the step is rolled back
    result = rollback(model, lambda_context, applied, kind="ecs")

    # Then the task definition recorded before is back
    assert result["result"] == "changed"
    assert service()["taskDefinition"] == task_definition
    assert result["before"]["task_definition"] == other


def test_ecs_rollback_of_a_step_that_never_deployed_changes_nothing(store, lambda_context):
    # Given a step that recorded its state before but failed before forcing a deployment
    build_service()
    model = ecs_impairment()
    before = dry_run(model, lambda_context, kind="ecs")["before"]

    result = rollback(model, lambda_context, {"before": before, "after": {}}, kind="ecs")

    assert result["result"] == "unchanged"


def test_ecs_wait_for_stable_completes_when_the_rollout_has(store, lambda_context, monkeypatch):
    build_service(running=True, monkeypatch=monkeypatch)

    result = apply(ecs_impairment(), lambda_context, kind="ecs", wait_for_stable=True)

    assert result["result"] == "changed"
    assert "rollout completed" in result["message"]


def test_ecs_wait_for_stable_retries_a_rollout_in_progress_without_deploying_again(store, lambda_context, monkeypatch):
    # Given a service whose new deployment is still rolling out
    build_service(running=False, monkeypatch=monkeypatch)
    model = ecs_impairment()

    # When the step runs with wait_for_stable
    with pytest.raises(TransientError, match="still rolling out"):
        apply(model, lambda_context, kind="ecs", wait_for_stable=True)
    deployment = primary_deployment()

    # Then the retry looks at the same deployment, and a failed rollout is a permanent error
    with pytest.raises(TransientError):
        apply(model, lambda_context, kind="ecs", wait_for_stable=True)
    assert primary_deployment() == deployment
    from moto.ecs.models import ecs_backends

    ecs_backends[ACCOUNT][REGION].services[f"{CLUSTER}:{SERVICE}"].deployments[0]["rolloutState"] = "FAILED"
    with pytest.raises(PermanentError, match="failed") as caught:
        apply(model, lambda_context, kind="ecs", wait_for_stable=True)
    assert not isinstance(caught.value, TransientError)
    assert primary_deployment() == deployment


def test_ecs_throttling_is_transient_and_the_retry_deploys_once(store, lambda_context, monkeypatch):
    # Given ECS throttles UpdateService
    build_service()
    deployment = primary_deployment()
    model = ecs_impairment()
    client = aws.client("ecs", max_attempts=1)

    # When the step runs
    with monkeypatch.context() as patch, pytest.raises(TransientError) as caught:
        patch.setattr(client, "update_service", throttled("UpdateService"))
        apply(model, lambda_context, kind="ecs")

    # Then it is retryable, nothing changed, and the retry deploys
    assert caught.value.details == {"operation": "ecs:UpdateService", "code": "ThrottlingException"}
    assert primary_deployment() == deployment
    retried = apply(model, lambda_context, kind="ecs")
    assert retried["result"] == "changed"
    assert primary_deployment() != deployment


# --- systemd through SSM Run Command ---------------------------------------------------------


def build_instances(count: int = 2, *, managed: bool = True) -> list[str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    tags = [{"Key": "Name", "Value": "web"}]
    if managed:
        tags.append({"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]})
    reservation = ec2.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return sorted(i["InstanceId"] for i in reservation["Instances"])


def commands() -> list[dict[str, Any]]:
    return boto3.client("ssm", region_name=REGION).list_commands()["Commands"]


def host_impairment(instance_ids: list[str]):
    return impairment(impairment_type="application_error", instances=instance_ids)


@pytest.fixture
def command_status(monkeypatch):
    """Override the status moto's GetCommandInvocation reports (it reports Success at once):
    statuses[instance] is a list of statuses, one per read, the last one repeated."""
    statuses: dict[str, list[dict[str, str]]] = {}
    client = aws.client("ssm", max_attempts=1)
    real = client.get_command_invocation

    def get_command_invocation(**kwargs):
        response = real(**kwargs)
        queue = statuses.get(kwargs["InstanceId"])
        if queue:
            response.update(queue.pop(0) if len(queue) > 1 else queue[0])
        return response

    monkeypatch.setattr(client, "get_command_invocation", get_command_invocation)
    return statuses


def test_systemd_restarts_the_unit_on_the_impaired_instances_and_reads_the_result(store, lambda_context):
    # Given two managed, running instances
    instance_ids = build_instances()
    model = host_impairment(instance_ids)

    # When restart_service (systemd) is applied
    result = apply(model, lambda_context, kind="systemd", unit=UNIT)

    # Then one Run Command restarted the unit on both, and its result was read
    (command,) = commands()
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert sorted(command["InstanceIds"]) == instance_ids
    assert command["Parameters"]["commands"] == [f"systemctl restart {UNIT}", f"systemctl is-active {UNIT}"]
    assert command["Parameters"]["executionTimeout"] == ["60"]
    assert command["Comment"] == f"recovery {model.impairment_id} step 0"
    assert result["result"] == "changed"
    assert result["after"] == {
        "command_id": command["CommandId"],
        "invocations": dict.fromkeys(instance_ids, "Success"),
    }
    assert result["before"]["unit"] == UNIT
    assert result["before"]["instances"] == instance_ids
    assert store.get_action(model.impairment_id, 0, "apply")["before"]["command_id"] == command["CommandId"]


def test_systemd_apply_twice_and_a_retry_after_a_crash_send_one_command(store, lambda_context):
    # Given the step sent its command
    instance_ids = build_instances()
    model = host_impairment(instance_ids)
    first = apply(model, lambda_context, kind="systemd", unit=UNIT)

    # When the step is delivered again, and retried after a crash that lost the command id
    second = apply(model, lambda_context, kind="systemd", unit=UNIT)
    lost = {**first["before"], "command_id": None}
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": lost})
    retried = apply(model, lambda_context, kind="systemd", unit=UNIT)

    # Then there is still one command: the retry found it by its comment
    assert second == first
    assert len(commands()) == 1
    assert retried["after"]["command_id"] == first["after"]["command_id"]


def test_systemd_a_command_still_running_is_retried_without_sending_another(store, lambda_context, command_status):
    # Given the restart is still running on one instance at the first read
    instance_ids = build_instances()
    model = host_impairment(instance_ids)
    command_status[instance_ids[1]] = [{"Status": "InProgress"}, {"Status": "Success"}]

    # When the step runs
    with pytest.raises(TransientError, match=f"still running on {instance_ids[1]}"):
        apply(model, lambda_context, kind="systemd", unit=UNIT)

    # Then the retry reads the same command's result and completes
    retried = apply(model, lambda_context, kind="systemd", unit=UNIT)
    assert retried["result"] == "changed"
    assert len(commands()) == 1


def test_systemd_a_failed_restart_is_permanent_with_the_output(store, lambda_context, command_status):
    instance_ids = build_instances(1)
    model = host_impairment(instance_ids)
    command_status[instance_ids[0]] = [
        {
            "Status": "Failed",
            "StatusDetails": "Failed",
            "StandardErrorContent": "Job for nginx.service failed because the control process exited with error code.",
        }
    ]

    with pytest.raises(PermanentError, match="control process exited") as caught:
        apply(model, lambda_context, kind="systemd", unit=UNIT)

    assert not isinstance(caught.value, TransientError)
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "failed"
    assert record["before"]["command_id"]  # the rollback knows a command was sent


def test_systemd_an_invocation_not_visible_yet_is_transient(store, lambda_context, monkeypatch):
    instance_ids = build_instances(1)
    client = aws.client("ssm", max_attempts=1)

    def not_yet(**kwargs):
        raise ClientError({"Error": {"Code": "InvocationDoesNotExist", "Message": ""}}, "GetCommandInvocation")

    monkeypatch.setattr(client, "get_command_invocation", not_yet)

    with pytest.raises(TransientError):
        apply(host_impairment(instance_ids), lambda_context, kind="systemd", unit=UNIT)


def test_systemd_refused_when_an_instance_did_not_opt_in(store, lambda_context):
    managed = build_instances(1)
    unmanaged = build_instances(1, managed=False)

    with pytest.raises(ActionRefused, match=f"not managed.*{unmanaged[0]}"):
        apply(host_impairment(managed + unmanaged), lambda_context, kind="systemd", unit=UNIT)

    assert commands() == []


def test_systemd_refused_for_a_stopped_instance(store, lambda_context):
    instance_ids = build_instances(1)
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=instance_ids)

    with pytest.raises(ActionRefused, match="not running"):
        apply(host_impairment(instance_ids), lambda_context, kind="systemd", unit=UNIT)

    assert commands() == []


def test_systemd_needs_an_impaired_instance(store, lambda_context):
    with pytest.raises(PermanentError, match="needs an ec2:instance"):
        apply(ecs_impairment(), lambda_context, kind="systemd", unit=UNIT)


def test_systemd_dry_run_sends_no_command(store, lambda_context):
    instance_ids = build_instances()

    result = dry_run(host_impairment(instance_ids), lambda_context, kind="systemd", unit=UNIT)

    assert result["result"] == "would_change"
    assert commands() == []


def test_systemd_throttled_send_is_transient_and_the_retry_sends_once(store, lambda_context, monkeypatch):
    instance_ids = build_instances(1)
    model = host_impairment(instance_ids)
    client = aws.client("ssm", max_attempts=1)

    with monkeypatch.context() as patch, pytest.raises(TransientError) as caught:
        patch.setattr(client, "send_command", throttled("SendCommand"))
        apply(model, lambda_context, kind="systemd", unit=UNIT)

    assert caught.value.details == {"operation": "ssm:SendCommand", "code": "ThrottlingException"}
    assert commands() == []
    retried = apply(model, lambda_context, kind="systemd", unit=UNIT)
    assert retried["result"] == "changed"
    assert len(commands()) == 1


def test_systemd_rollback_is_irreversible_once_the_unit_was_restarted(store, lambda_context):
    instance_ids = build_instances(1)
    model = host_impairment(instance_ids)
    applied = apply(model, lambda_context, kind="systemd", unit=UNIT)

    result = rollback(model, lambda_context, applied, kind="systemd", unit=UNIT)

    assert result["result"] == "irreversible"
    assert "cannot be undone" in result["message"]
    assert len(commands()) == 1


def test_systemd_rollback_of_a_step_that_sent_nothing_changes_nothing(store, lambda_context, monkeypatch):
    # Given a step that recorded its state, then was throttled before sending its command
    instance_ids = build_instances(1)
    model = host_impairment(instance_ids)
    monkeypatch.setattr(aws.client("ssm", max_attempts=1), "send_command", throttled("SendCommand"))
    with pytest.raises(TransientError):
        apply(model, lambda_context, kind="systemd", unit=UNIT)
    before = store.get_action(model.impairment_id, 0, "apply")["before"]

    result = rollback(model, lambda_context, {"before": before, "after": {}}, kind="systemd", unit=UNIT)

    assert result["result"] == "unchanged"


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "systemd"},
        {"kind": "systemd", "unit": "nginx; reboot"},
        {"kind": "systemd", "unit": "-H host nginx"},
        {"kind": "systemd", "unit": "$(reboot)"},
        {"kind": "systemd", "unit": UNIT, "cluster": CLUSTER},
        {"kind": "ecs", "unit": UNIT},
        {"kind": "process"},
    ],
    ids=["no-unit", "shell-list", "option", "substitution", "ecs-param", "unit-for-ecs", "unknown-kind"],
)
def test_params_that_do_not_fit_the_kind_are_invalid(store, lambda_context, params):
    with pytest.raises(InvalidInput):
        run_step(
            "apply",
            action_event(host_impairment(["i-0abc123def4567890"]), "restart_service", params=params),
            lambda_context,
        )
