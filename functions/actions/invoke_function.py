"""invoke_function: a custom step. The user's own Lambda function does the apply (and another,
optionally, the rollback), with this system's guardrails, verification, rollback and audit around
it: invoked synchronously with the contract's input (request below, the step's static payload
merged in), it must answer {"status": "done"|"unchanged", "before", "after", "detail"}. An error it
raises fails the step with its errorType and errorMessage recorded: "RetryableError" is retried,
any other is permanent, as is an answer outside the contract. The function must carry the managed
tag. A dry run does not invoke it.

Design: docs/actions.md#invoke_function
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from msgspec import Meta

from actions.base import Action, ActionParams, ActionResult, Context, Phase, handlers
from core import aws, clock
from core.errors import PermanentError, TransientError
from core.model import Model, ValidationError
from core.reads import tags

NAME = "invoke_function"
CONTRACT = "impairment-recovery/invoke_function/1"
# The errorType a function raises to say "try again later" (a Python `class RetryableError(Exception)`).
RETRYABLE_ERROR_TYPE = "RetryableError"
# A function name, name:qualifier, or its ARN (Lambda's own FunctionName pattern, simplified).
FUNCTION_PATTERN = (
    r"^(arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?$"
)
# The keys of our input: a payload may not set them.
RESERVED_KEYS = frozenset(
    {
        "contract",
        "phase",
        "idempotency_key",
        "impairment_id",
        "impairment_type",
        "severity",
        "workload",
        "account_id",
        "affected_resources",
        "scope",
        "step",
        "drill",
        "dry_run",
        "applied",
    }
)
# What one output's before or after may hold, as JSON: it is recorded in the audit item (400 KB).
MAX_STATE_BYTES = 16_384
_EXCERPT = 1000
# Lambda's answers that a retry may get past: the function is being updated, its ENIs or
# SnapStart are not ready, EC2 throttled it (its 5xx and throttling are transient anyway).
_TRANSIENT_INVOKE_CODES = ("ResourceConflictException", "SnapStartNotReadyException", "EC2ThrottledException")


class Params(ActionParams, kw_only=True):
    function_name: Annotated[
        str, Meta(pattern=FUNCTION_PATTERN, description="the apply's function: name, name:alias or ARN")
    ]
    rollback_function: (
        Annotated[
            str, Meta(pattern=FUNCTION_PATTERN, description="the rollback's function; none: the step is irreversible")
        ]
        | None
    ) = None
    payload: Annotated[dict[str, Any], Meta(description="static JSON merged into the input")] = {}
    # Our Lambda task runs at most 60 s: the invocation must answer well within it.
    timeout_seconds: Annotated[int, Meta(ge=1, le=45, description="how long an invocation may take")] = 30

    def _check(self) -> None:
        clash = sorted(set(self.payload) & RESERVED_KEYS)
        if clash:
            raise ValueError(f"payload: sets {', '.join(clash)}, which the input contract sets itself")
        if len(json.dumps(self.payload)) > MAX_STATE_BYTES:
            raise ValueError(f"payload: is larger than {MAX_STATE_BYTES} bytes as JSON")


class Output(Model, kw_only=True, forbid_unknown_fields=True):
    """What the function must answer."""

    status: Literal["done", "unchanged"]
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    detail: Annotated[str, Meta(max_length=2048)] = ""


def client(ctx: Context) -> Any:
    """Lambda in the workload's account, reading for as long as the invocation may take."""
    timeout = ctx.params.timeout_seconds
    return aws.client("lambda", max_attempts=1, account=ctx.impairment.account_id, timeouts=(5, timeout + 2))


def apply(ctx: Context) -> ActionResult:
    lam = client(ctx)
    before = ctx.before or _record_before(ctx, lam, ctx.params.function_name)
    target = before["function"]
    if ctx.dry_run:
        return ctx.result("apply", "would_change", [target], before=before, message=f"would invoke {target}")
    output = invoke(ctx, lam, target, "apply")
    return _result(ctx, "apply", target, output)


def rollback(ctx: Context) -> ActionResult:
    applied = ctx.applied or {}
    if not (applied.get("before") or applied.get("after")):
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    applied_function = (applied.get("before") or applied.get("after") or {}).get("function", "")
    if not ctx.params.rollback_function:
        return ctx.result(
            "rollback",
            "irreversible",
            [applied_function] if applied_function else [],
            before=applied.get("after") or applied.get("before") or {},
            message=f"no rollback_function: what {applied_function or 'the function'} did stays",
        )
    lam = client(ctx)
    before = ctx.before or _record_before(ctx, lam, ctx.params.rollback_function)
    output = invoke(ctx, lam, before["function"], "rollback")
    return _result(ctx, "rollback", before["function"], output)


def _record_before(ctx: Context, lam: Any, name: str) -> dict[str, Any]:
    """The function, found and opted in (the managed tag), recorded before it is invoked: a
    rollback then knows it may have acted even if it failed."""
    found = aws.call(lam, "get_function", FunctionName=name)
    arn = found["Configuration"]["FunctionArn"]
    tags.require_managed(found.get("Tags") or {}, ctx.managed_tag, "Lambda function", arn)
    before = {"function": arn, "invoked_at": clock.utc_now().isoformat()}
    ctx.record_before(before)
    return before


def request(ctx: Context, phase: Phase) -> dict[str, Any]:
    """The input the function gets (the contract's)."""
    impairment = ctx.impairment.model_dump(mode="json")
    ours: dict[str, Any] = {
        "contract": CONTRACT,
        "phase": phase,
        "idempotency_key": f"{impairment['impairment_id']}#{ctx.step_index}#{phase}",
        **{key: impairment[key] for key in ("impairment_id", "impairment_type", "severity", "workload", "account_id")},
        "affected_resources": impairment["affected_resources"],
        "scope": impairment["scope"],
        "step": {"index": ctx.step_index, "params": ctx.params.model_dump(mode="json", exclude={"payload"})},
        "drill": impairment["drill"],
        "dry_run": False,
    }
    if phase == "rollback":
        ours["applied"] = ctx.applied or {}
    return {**ctx.params.payload, **ours}


def invoke(ctx: Context, lam: Any, function: str, phase: Phase) -> Output:
    """Invoke the function once and read its answer by the contract."""
    from botocore.exceptions import ReadTimeoutError

    body = json.dumps(request(ctx, phase), default=str).encode()
    try:
        response = aws.call(
            lam,
            "invoke",
            transient_codes=_TRANSIENT_INVOKE_CODES,
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=body,
        )
    except TransientError as exc:
        if isinstance(exc.__cause__, ReadTimeoutError):
            # Not retried: a function slower than its bound would be invoked again and again.
            raise PermanentError(
                f"{function} did not answer within {ctx.params.timeout_seconds} s (timeout_seconds)",
                function=function,
            ) from exc
        raise
    raw = response["Payload"].read()
    if response.get("FunctionError"):
        raise _function_error(function, response["FunctionError"], raw)
    return _output(function, raw)


def _function_error(function: str, kind: str, raw: bytes) -> Exception:
    """The function raised (or Lambda ended it: a timeout, out of memory): by its errorType."""
    try:
        error = json.loads(raw or b"{}")
    except ValueError:
        error = {}
    error = error if isinstance(error, dict) else {}
    error_type = str(error.get("errorType") or "Unknown")
    message = str(error.get("errorMessage") or raw[:_EXCERPT].decode(errors="replace"))[:_EXCERPT]
    cls = TransientError if error_type == RETRYABLE_ERROR_TYPE else PermanentError
    return cls(
        f"{function} failed ({kind}): {error_type}: {message}",
        function=function,
        function_error=kind,
        error_type=error_type,
        error_message=message,
    )


def _output(function: str, raw: bytes) -> Output:
    try:
        output = Output.model_validate_json(raw or b"null")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'output'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise PermanentError(
            f"{function} answered an output that does not keep the contract "
            '({"status": "done"|"unchanged", "before": {...}, "after": {...}, "detail": "..."}): '
            f"{problems}; it answered: {raw[:_EXCERPT].decode(errors='replace')}",
            function=function,
        ) from exc
    for name in ("before", "after"):
        if len(json.dumps(getattr(output, name), default=str)) > MAX_STATE_BYTES:
            raise PermanentError(f"{function} answered a {name} larger than {MAX_STATE_BYTES} bytes as JSON")
    return output


def _result(ctx: Context, phase: Phase, function: str, output: Output) -> ActionResult:
    return ctx.result(
        phase,
        "changed" if output.status == "done" else "unchanged",
        [function],
        before={"function": function, "state": output.before},
        after={"function": function, "state": output.after, "detail": output.detail},
        message=f"{function}: {output.detail or output.status}",
    )


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
