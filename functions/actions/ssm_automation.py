"""ssm_automation: a custom step that runs an SSM Automation runbook (the impaired instances given
as the parameter the plan names) and waits for it; rollback runs another runbook the same way.
The execution is started once (its id recorded, and a ClientToken per step and phase so a lost id
is found again); each attempt reads its status once: still running asks the state machine to
come back (CapacityNotReady: every 30 s) until max_wait_seconds, then the step fails with the
execution id for a human to look at. The instances must carry the managed tag.

Design: docs/actions.md#ssm_automation
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta

from actions import ec2
from actions.base import Action, ActionParams, ActionResult, Context, Phase, handlers
from core import aws, clock
from core.errors import CapacityNotReady, PermanentError
from core.reads.tags import require_managed

NAME = "ssm_automation"
DOCUMENT_PATTERN = r"^(arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:document/)?[A-Za-z0-9_.-]{3,128}$"
VERSION_PATTERN = r"^(\$DEFAULT|\$LATEST|[1-9][0-9]{0,5})$"
PARAMETER_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
ROLE_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"
ASSUME_ROLE = "AutomationAssumeRole"
SUCCEEDED = frozenset({"Success", "CompletedWithSuccess"})
ENDED = frozenset(
    {"Failed", "TimedOut", "Cancelled", "Rejected", "ChangeCalendarOverrideRejected", "CompletedWithFailure", "Exited"}
)
# Every other status (Pending, InProgress, Waiting, Cancelling, PendingApproval, ...) is running.
_EXCERPT = 1000


def _as_lists(parameters: dict[str, Any]) -> dict[str, list[str]]:
    """SSM takes each parameter as a list of strings; a plan may give one string."""
    return {k: [str(x) for x in v] if isinstance(v, list) else [str(v)] for k, v in parameters.items()}


class Params(ActionParams, kw_only=True):
    document_name: Annotated[str, Meta(pattern=DOCUMENT_PATTERN, description="the runbook: its name or ARN")]
    document_version: Annotated[str, Meta(pattern=VERSION_PATTERN)] | None = None
    # The runbook's parameters; each is kept as SSM takes it, a list of strings.
    parameters: dict[str, Any] = {}
    target_parameter: (
        Annotated[str, Meta(pattern=PARAMETER_PATTERN, description="the parameter given the impaired instance ids")]
        | None
    ) = None
    rollback_document: Annotated[str, Meta(pattern=DOCUMENT_PATTERN)] | None = None
    rollback_document_version: Annotated[str, Meta(pattern=VERSION_PATTERN)] | None = None
    rollback_parameters: dict[str, Any] = {}
    # Below the state machine's own bound on waiting (20 asks, 30 s apart), so this one decides.
    max_wait_seconds: Annotated[int, Meta(ge=30, le=540, description="how long the runbook may run")] = 300

    def _check(self) -> None:
        self.parameters = _parameters("parameters", self.parameters)
        self.rollback_parameters = _parameters("rollback_parameters", self.rollback_parameters)
        if self.target_parameter and self.target_parameter in {*self.parameters, *self.rollback_parameters}:
            raise ValueError(f"target_parameter {self.target_parameter} is also given in the parameters")
        if (self.rollback_parameters or self.rollback_document_version) and not self.rollback_document:
            raise ValueError("rollback_parameters and rollback_document_version need a rollback_document")


def _parameters(field: str, given: dict[str, Any]) -> dict[str, list[str]]:
    """A runbook's parameters as SSM takes them, or ValueError naming the field (its path)."""
    for key, value in given.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise ValueError(f"{field}: {key}: each value must be text or a list of texts")
    parameters = _as_lists(given)
    roles = parameters.get(ASSUME_ROLE, [])
    if roles and (len(roles) != 1 or not re.match(ROLE_PATTERN, roles[0])):
        raise ValueError(f"{field}: {ASSUME_ROLE} must be one IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    return parameters


def client(ctx: Context) -> Any:
    return aws.client("ssm", max_attempts=1, account=ctx.impairment.account_id)


def apply(ctx: Context) -> ActionResult:
    p = ctx.params
    before = ctx.before or _record_before(ctx, "apply", p.document_name, p.document_version, p.parameters)
    if ctx.dry_run:
        message = f"would run {before['document']} with {before['parameters']}"
        return ctx.result("apply", "would_change", before["instances"], before=before, message=message)
    return _run(ctx, client(ctx), before, "apply")


def rollback(ctx: Context) -> ActionResult:
    applied = ctx.applied or {}
    started = (applied.get("after") or {}).get("execution_id") or (applied.get("before") or {}).get("execution_id")
    if not started:
        return ctx.result("rollback", "unchanged", [], message="no runbook was started: nothing to undo")
    p = ctx.params
    if not p.rollback_document:
        return ctx.result(
            "rollback",
            "irreversible",
            (applied.get("before") or {}).get("instances", []),
            before=applied.get("after") or applied.get("before") or {},
            message=f"no rollback_document: what execution {started} did stays",
        )
    ssm = client(ctx)
    if ctx.before is None:
        # Never undo a runbook while it still runs: a human decides (the execution id says which).
        status = _execution(ssm, started)["AutomationExecutionStatus"]
        if status not in SUCCEEDED | ENDED:
            raise PermanentError(
                f"the apply's execution {started} is still {status}: {p.rollback_document} was not started over it",
                execution_id=started,
                status=status,
            )
    before = ctx.before or _record_before(
        ctx, "rollback", p.rollback_document, p.rollback_document_version, p.rollback_parameters, applied
    )
    return _run(ctx, ssm, before, "rollback")


def _record_before(
    ctx: Context,
    phase: Phase,
    document: str,
    version: str | None,
    parameters: dict[str, list[str]],
    applied: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The execution about to be started (the instances opted in), recorded before it starts."""
    instances = ((applied or {}).get("before") or {}).get("instances")
    instances = instances if instances is not None else _managed_instances(ctx)
    if ctx.params.target_parameter:
        if not instances:
            raise PermanentError(f"{NAME}: target_parameter needs an ec2:instance among the affected resources")
        parameters = {**parameters, ctx.params.target_parameter: instances}
    key = f"{ctx.impairment.impairment_id}#{ctx.step_index}#{phase}"
    before = {
        "document": document,
        "document_version": version,
        "parameters": parameters,
        "instances": instances,
        "client_token": str(uuid.uuid5(uuid.NAMESPACE_URL, f"impairment-recovery:{key}")),
        "execution_id": None,
        "started_at": None,
    }
    ctx.record_before(before)
    return before


def _managed_instances(ctx: Context) -> list[str]:
    """The impaired instances, each carrying the managed tag (ActionRefused otherwise)."""
    ids = sorted({r.resource_id for r in ctx.impairment.affected_resources if r.resource_type == "ec2:instance"})
    if not ids:
        return []
    found = ec2.describe_instances(aws.client("ec2", max_attempts=1, account=ctx.impairment.account_id), ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise PermanentError(f"instances not found: {', '.join(missing)}")
    for instance_id in ids:
        require_managed(found[instance_id].get("Tags"), ctx.managed_tag, "instance", instance_id)
    return ids


def _run(ctx: Context, ssm: Any, before: dict[str, Any], phase: Phase) -> ActionResult:
    """Start the execution unless it was, then read it once: done, failed, or come back later."""
    if not before.get("execution_id"):
        version = {"DocumentVersion": before["document_version"]} if before.get("document_version") else {}
        started = aws.call(
            ssm,
            "start_automation_execution",
            # The account's concurrent executions are all taken: another may end before the retry.
            transient_codes={"AutomationExecutionLimitExceededException"},
            DocumentName=before["document"],
            Parameters=before["parameters"],
            ClientToken=before["client_token"],
            **version,
        )
        before = {**before, "execution_id": started["AutomationExecutionId"], "started_at": clock.utc_now().isoformat()}
        ctx.record_before(before)
    execution_id, document = before["execution_id"], before["document"]
    execution = _execution(ssm, execution_id)
    status = execution["AutomationExecutionStatus"]
    after = {"execution_id": execution_id, "status": status, "outputs": execution.get("Outputs") or {}}
    if status in SUCCEEDED:
        return ctx.result(
            phase,
            "changed",
            before["instances"],
            before=before,
            after=after,
            message=f"{document} ran: execution {execution_id} {status}",
        )
    if status in ENDED:
        failure = str(execution.get("FailureMessage") or "no failure message")[:_EXCERPT]
        raise PermanentError(
            f"{document} execution {execution_id} ended {status}: {failure}", execution_id=execution_id, status=status
        )
    waited = (clock.utc_now() - datetime.fromisoformat(before["started_at"])).total_seconds()
    if waited >= ctx.params.max_wait_seconds:
        raise PermanentError(
            f"{document} execution {execution_id} is still {status} after {int(waited)} s (max_wait_seconds "
            f"{ctx.params.max_wait_seconds}); it was left running: look at it in Systems Manager",
            execution_id=execution_id,
            status=status,
        )
    raise CapacityNotReady(f"{document} execution {execution_id} is {status}", execution_id=execution_id, status=status)


def _execution(ssm: Any, execution_id: str) -> dict[str, Any]:
    return aws.call(
        ssm,
        "get_automation_execution",
        # Just after StartAutomationExecution the execution may not be visible yet.
        transient_codes={"AutomationExecutionNotFoundException"},
        AutomationExecutionId=execution_id,
    )["AutomationExecution"]


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
