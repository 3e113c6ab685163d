"""restart_systemd_unit: SSM Run Command (AWS-RunShellScript) runs `systemctl restart <unit>` and
then `systemctl is-active <unit>` on the impaired instances (the ec2:instance affected resources),
each of which must carry the managed tag. The command is sent once (its id is recorded, and a
retry that lost it finds it again by its comment); each attempt then reads its result once per
instance: still running raises TransientError (retried with backoff), failed raises
PermanentError with an excerpt of the output. Rollback: a restart cannot be undone
("irreversible"). (`restart_service` with kind "systemd" is this action: actions/registry.py,
ALIASES.)
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from msgspec import Meta

from actions import ec2
from actions.base import Action, ActionParams, ActionResult, Context, handlers
from actions.registry import SSM_DOCUMENT as DOCUMENT
from core import aws, clock
from core.errors import ActionRefused, PermanentError, TransientError

NAME = "restart_systemd_unit"
# A systemd unit name: letters, digits and ":-_.@", optionally with its type suffix. No spaces, no
# shell syntax, and never a leading "-" (it would be read as an option).
UNIT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:_.@-]{0,254}$"
_RUNNING = frozenset({"Pending", "InProgress", "Delayed"})
_EXCERPT = 500


class Params(ActionParams, kw_only=True):
    kind: Literal["systemd"] = "systemd"
    unit: Annotated[str, Meta(pattern=UNIT_PATTERN, description="the unit to restart")]
    timeout_seconds: Annotated[int, Meta(ge=10, le=3600, description="how long the command may run")] = 60


def rollback(ctx: Context) -> ActionResult:
    applied = ctx.applied or {}
    before = applied.get("before") or {}
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    return _systemd_rollback(ctx, applied, before)


def _impaired_instances(ctx: Context) -> list[str]:
    return sorted({r.resource_id for r in ctx.impairment.affected_resources if r.resource_type == "ec2:instance"})


def _comment(ctx: Context) -> str:
    # SendCommand has no idempotency token: the comment finds a command this step already sent.
    return f"recovery {ctx.impairment.impairment_id} step {ctx.step_index}"[:100]


def _systemd_apply(ctx: Context) -> ActionResult:
    ssm = aws.client("ssm", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        instance_ids = _impaired_instances(ctx)
        if not instance_ids:
            raise PermanentError("restart_systemd_unit needs an ec2:instance among the affected resources")
        ec2_client = aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id)
        found = ec2.describe_instances(ec2_client, instance_ids)
        missing = [i for i in instance_ids if i not in found]
        if missing:
            raise PermanentError(f"instances not found: {', '.join(missing)}")
        key, value = ctx.managed_tag
        unmanaged = [
            i
            for i in instance_ids
            if {t["Key"]: t.get("Value", "") for t in found[i].get("Tags", [])}.get(key) != value
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


ACTION = Action(NAME, Params, _systemd_apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
