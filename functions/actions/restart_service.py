"""restart_service: restart the impaired service, as an ECS service or as a systemd unit.

kind "ecs": UpdateService(forceNewDeployment=True) on the workload's ECS service, which must carry
the managed tag: ECS replaces every task with a fresh one of the same task definition. The
deployments before are recorded; a retry that finds a deployment newer than those does not force
another. A Lambda must not wait minutes for a rollout, so the action returns once ECS has started
the deployment and the workflow's verification waits for the service to be steady. With
`wait_for_stable` the action also reads the new deployment once per attempt: a rollout still in
progress raises TransientError (the state machine retries it with backoff, a budget of about half
a minute in all: only for services that roll out that fast), a failed one PermanentError.
Rollback: replaced tasks cannot be brought back, so the result is "irreversible"; but if the
service's task definition is no longer the one recorded before, that one is restored.

kind "systemd": SSM Run Command (AWS-RunShellScript) runs `systemctl restart <unit>` and then
`systemctl is-active <unit>` on the impaired instances (the ec2:instance affected resources),
each of which must carry the managed tag. The command is sent once (its id is recorded, and a
retry that lost it finds it again by its comment); each attempt then reads its result once per
instance: still running raises TransientError (retried with backoff), failed raises
PermanentError with an excerpt of the output. Rollback: a restart cannot be undone ("irreversible").

ECS targets come from the step's params (cluster, service), else from the impairment's scope
(ecs_cluster, ecs_service).
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from actions import ecs
from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from actions.registry import SSM_DOCUMENT as DOCUMENT
from core import aws, clock
from core.errors import ActionRefused, PermanentError, TransientError
from core.reads import tags
from core.reads.tags import require_managed

NAME = "restart_service"
# A systemd unit name: letters, digits and ":-_.@", optionally with its type suffix. No spaces, no
# shell syntax, and never a leading "-" (it would be read as an option).
UNIT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:_.@-]{0,254}$"
_RUNNING = frozenset({"Pending", "InProgress", "Delayed"})
_EXCERPT = 500


class Params(ActionParams):
    kind: Literal["ecs", "systemd"]
    # ecs (cluster and service default to the impairment's scope)
    cluster: str | None = Field(default=None, min_length=1, max_length=2048)
    service: str | None = Field(default=None, min_length=1, max_length=2048)
    wait_for_stable: bool = Field(
        default=False, description="ecs: read the rollout once per attempt and retry until it completes"
    )
    # systemd
    unit: str | None = Field(default=None, pattern=UNIT_PATTERN, description="systemd: the unit to restart")
    timeout_seconds: int = Field(default=60, ge=10, le=3600, description="systemd: how long the command may run")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Params:
        if self.kind == "systemd" and not self.unit:
            raise ValueError("kind 'systemd' needs a unit")
        if self.kind == "systemd" and (self.cluster or self.service or self.wait_for_stable):
            raise ValueError("kind 'systemd' does not take cluster, service or wait_for_stable")
        if self.kind == "ecs" and self.unit:
            raise ValueError("kind 'ecs' does not take a unit")
        return self


def apply(ctx: Context) -> ActionResult:
    if ctx.params.kind == "ecs":
        return _ecs_apply(ctx)
    return _systemd_apply(ctx)


def rollback(ctx: Context) -> ActionResult:
    applied = ctx.applied or {}
    before = applied.get("before") or {}
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    if before.get("kind") == "systemd":
        return _systemd_rollback(ctx, applied, before)
    return _ecs_rollback(ctx, before)


# --- ECS ------------------------------------------------------------------------------------


def _deployments(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": d["id"],
            "status": d.get("status"),
            "task_definition": d.get("taskDefinition"),
            "rollout_state": d.get("rolloutState"),
        }
        for d in service.get("deployments", [])
    ]


def _primary(service: dict[str, Any]) -> dict[str, Any] | None:
    return next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)


def _ecs_state(service: dict[str, Any]) -> dict[str, Any]:
    primary = _primary(service) or {}
    return {
        "task_definition": service.get("taskDefinition"),
        "primary_deployment": primary.get("id"),
        "deployments": _deployments(service),
    }


def _ecs_apply(ctx: Context) -> ActionResult:
    client = aws.client("ecs", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        cluster, name = ecs.target(ctx.params.cluster, ctx.params.service, ctx.impairment.scope, f"{NAME} (ecs)")
        service = ecs.describe_service(client, cluster, name)
        what = f"ECS service {service['serviceName']}"
        require_managed(
            tags.of_ecs(client, service["serviceArn"]),
            ctx.managed_tag,
            "ECS service",
            service["serviceName"],
            service=service["serviceArn"],
        )
        if service.get("status") != "ACTIVE":
            raise ActionRefused(f"{what} is {service.get('status')}: only an active service can be restarted")
        controller = service.get("deploymentController", {}).get("type", "ECS")
        if controller != "ECS":
            raise ActionRefused(f"{what} is deployed by {controller}: force a new deployment there")
        before = {
            "kind": "ecs",
            "cluster": cluster,
            "service": service["serviceName"],
            "service_arn": service["serviceArn"],
            "desired_count": service.get("desiredCount"),
            **_ecs_state(service),
        }
        ctx.record_before(before)
    else:
        service = ecs.describe_service(client, before["cluster"], before["service_arn"])
    recorded = {d["id"] for d in before["deployments"]}
    primary = _primary(service)
    label = before["service_arn"]
    if primary is not None and primary["id"] not in recorded:
        message = f"{before['service']}: new deployment {primary['id']} already started"
    else:
        verb = "would force" if ctx.dry_run else "forced"
        message = f"{before['service']}: {verb} a new deployment of {before['task_definition']}"
        if not ctx.dry_run:
            service = aws.call(
                client, "update_service", cluster=before["cluster"], service=label, forceNewDeployment=True
            )["service"]
            primary = _primary(service)
    if ctx.params.wait_for_stable and not ctx.dry_run:
        _require_stable(before["service"], service, primary)
        message += "; rollout completed"
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [label],
        before=before,
        after=_ecs_state(service),
        message=message,
    )


def _require_stable(name: str, service: dict[str, Any], primary: dict[str, Any] | None) -> None:
    """One look at the new deployment: done, failed (permanent) or still rolling out (transient)."""
    if primary is None:
        raise TransientError(f"ECS service {name}: no primary deployment yet")
    state = primary.get("rolloutState")
    if state == "FAILED":
        raise PermanentError(
            f"ECS service {name}: deployment {primary['id']} failed: {primary.get('rolloutStateReason', '')}"
        )
    steady = len(service.get("deployments", [])) == 1 and primary.get("runningCount") == primary.get("desiredCount")
    if state == "COMPLETED" or (state is None and steady):
        return
    raise TransientError(
        f"ECS service {name}: deployment {primary['id']} is still rolling out "
        f"({primary.get('runningCount', 0)} of {primary.get('desiredCount', 0)} tasks running)"
    )


def _ecs_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    client = aws.client("ecs", max_attempts=1, account=ctx.impairment.account_id)
    service = ecs.describe_service(client, before["cluster"], before["service_arn"])
    label, name = before["service_arn"], before["service"]
    current = _ecs_state(service)
    if current["task_definition"] != before["task_definition"]:
        if ctx.before is None:
            ctx.record_before(current)
        service = aws.call(
            client,
            "update_service",
            cluster=before["cluster"],
            service=label,
            taskDefinition=before["task_definition"],
        )["service"]
        return ctx.result(
            "rollback",
            "changed",
            [label],
            before=current,
            after=_ecs_state(service),
            message=f"{name}: restored task definition {before['task_definition']} (was {current['task_definition']})",
        )
    if ctx.before is not None:
        # A retry of this rollback finds the task definition it restored.
        return ctx.result(
            "rollback",
            "changed",
            [label],
            before=ctx.before,
            after=current,
            message=f"{name}: task definition {before['task_definition']} restored",
        )
    recorded = {d["id"] for d in before["deployments"]}
    if current["primary_deployment"] in recorded:
        return ctx.result(
            "rollback",
            "unchanged",
            [label],
            before=current,
            after=current,
            message=f"{name}: no new deployment was started; nothing to undo",
        )
    return ctx.result(
        "rollback",
        "irreversible",
        [label],
        before=current,
        after=current,
        message=f"{name}: a forced new deployment cannot be undone (the tasks it replaced are gone); the service "
        f"still runs task definition {before['task_definition']}",
    )


# --- systemd through SSM Run Command ---------------------------------------------------------


def _impaired_instances(ctx: Context) -> list[str]:
    return sorted({r.resource_id for r in ctx.impairment.affected_resources if r.resource_type == "ec2:instance"})


def _instances(client: Any, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    reservations = aws.items(
        client, "describe_instances", "Reservations", Filters=[{"Name": "instance-id", "Values": instance_ids}]
    )
    return {i["InstanceId"]: i for r in reservations for i in r.get("Instances", [])}


def _comment(ctx: Context) -> str:
    # SendCommand has no idempotency token: the comment finds a command this step already sent.
    return f"recovery {ctx.impairment.impairment_id} step {ctx.step_index}"[:100]


def _systemd_apply(ctx: Context) -> ActionResult:
    ssm = aws.client("ssm", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        instance_ids = _impaired_instances(ctx)
        if not instance_ids:
            raise PermanentError("restart_service (systemd) needs an ec2:instance among the affected resources")
        found = _instances(aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id), instance_ids)
        missing = [i for i in instance_ids if i not in found]
        if missing:
            raise PermanentError(f"instances not found: {', '.join(missing)}")
        key, value = ctx.managed_tag
        unmanaged = [
            i for i in instance_ids if not tags.is_managed(tags.as_dict(found[i].get("Tags")), ctx.managed_tag)
        ]
        if unmanaged:
            raise ActionRefused(f"instances not managed (tag {key}={value} missing): {', '.join(unmanaged)}")
        stopped = [i for i in instance_ids if found[i]["State"]["Name"] != "running"]
        if stopped:
            raise ActionRefused(f"instances not running, a command cannot reach them: {', '.join(stopped)}")
        before = {
            "kind": "systemd",
            "unit": ctx.params.unit,
            "instances": instance_ids,
            "comment": _comment(ctx),
            "recorded_at": clock.utc_now().isoformat(),
            "command_id": None,
        }
        ctx.record_before(before)
    label = ", ".join(before["instances"])
    if ctx.dry_run:
        return ctx.result(
            "apply",
            "would_change",
            before["instances"],
            before=before,
            after={},
            message=f"would restart {before['unit']} on {label}",
        )
    command_id = before.get("command_id") or (_find_command(ssm, before) if ctx.before is not None else None)
    if command_id is None:
        unit = shlex.quote(before["unit"])
        command_id = aws.call(
            ssm,
            "send_command",
            InstanceIds=before["instances"],
            DocumentName=DOCUMENT,
            Comment=before["comment"],
            TimeoutSeconds=60,
            Parameters={
                "commands": [f"systemctl restart {unit}", f"systemctl is-active {unit}"],
                "executionTimeout": [str(ctx.params.timeout_seconds)],
            },
        )["Command"]["CommandId"]
        before = {**before, "command_id": command_id}
        ctx.record_before(before)
    invocations = _command_results(ssm, command_id, before)
    return ctx.result(
        "apply",
        "changed",
        before["instances"],
        before=before,
        after={"command_id": command_id, "invocations": invocations},
        message=f"restarted {before['unit']} on {label} (command {command_id})",
    )


def _find_command(ssm: Any, before: dict[str, Any]) -> str | None:
    """The command this step sent before its id could be recorded (a crash in between), if any."""
    since = datetime.fromisoformat(before["recorded_at"]) - timedelta(minutes=1)
    commands = aws.items(
        ssm,
        "list_commands",
        "Commands",
        Filters=[{"key": "InvokedAfter", "value": since.strftime("%Y-%m-%dT%H:%M:%SZ")}],
    )
    for command in commands:
        if command.get("Comment") == before["comment"] and command.get("DocumentName") == DOCUMENT:
            return command["CommandId"]
    return None


def _command_results(ssm: Any, command_id: str, before: dict[str, Any]) -> dict[str, str]:
    """The command's status on each instance (one read each): raises while it runs or if it failed."""
    statuses: dict[str, str] = {}
    failures: list[str] = []
    for instance_id in before["instances"]:
        invocation = aws.call(
            ssm,
            "get_command_invocation",
            # Just after SendCommand the invocation may not be visible yet.
            transient_codes={"InvocationDoesNotExist"},
            CommandId=command_id,
            InstanceId=instance_id,
        )
        status = invocation.get("Status", "Pending")
        statuses[instance_id] = status
        if status not in _RUNNING and status != "Success":
            output = (invocation.get("StandardErrorContent") or invocation.get("StandardOutputContent") or "").strip()
            failures.append(
                f"{instance_id}: {status} ({invocation.get('StatusDetails', '')}): {output[-_EXCERPT:] or 'no output'}"
            )
    if failures:
        raise PermanentError(
            f"systemctl restart {before['unit']} failed (command {command_id}): " + "; ".join(failures),
            command_id=command_id,
        )
    running = sorted(i for i, s in statuses.items() if s in _RUNNING)
    if running:
        raise TransientError(
            f"systemctl restart {before['unit']} is still running on {', '.join(running)} (command {command_id})",
            command_id=command_id,
        )
    return statuses


def _systemd_rollback(ctx: Context, applied: dict[str, Any], before: dict[str, Any]) -> ActionResult:
    command_id = (applied.get("after") or {}).get("command_id") or before.get("command_id")
    if command_id is None and before.get("recorded_at"):
        command_id = _find_command(aws.client("ssm", max_attempts=1, account=ctx.impairment.account_id), before)
    if command_id is None:
        return ctx.result(
            "rollback",
            "unchanged",
            before["instances"],
            before=before,
            message=f"{before['unit']} was not restarted: nothing to undo",
        )
    return ctx.result(
        "rollback",
        "irreversible",
        before["instances"],
        before=before,
        after={"command_id": command_id},
        message=f"restarting {before['unit']} on {', '.join(before['instances'])} cannot be undone "
        f"(command {command_id})",
    )


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
