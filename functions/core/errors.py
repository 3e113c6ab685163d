"""Typed errors. The state machine retries or catches them by class name (the Lambda errorType),
so the names below are part of the workflow's contract: keep them stable."""

from __future__ import annotations

from typing import Any

# Error codes that mean "try again later": throttling, capacity and service-side faults.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServiceError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ScalingActivityInProgress",
        "ResourceContention",
        "InsufficientInstanceCapacity",
    }
)


class RecoveryError(Exception):
    """Base of every error this system raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class TransientError(RecoveryError):
    """Retryable: the state machine retries it with capped exponential backoff and jitter."""


# How the state machine waits for CapacityNotReady: asked again every 30 s, 20 times (10 minutes).
CAPACITY_WAIT_INTERVAL_SECONDS = 30
CAPACITY_WAIT_ATTEMPTS = 20
CAPACITY_WAIT_SECONDS = CAPACITY_WAIT_INTERVAL_SECONDS * CAPACITY_WAIT_ATTEMPTS
# The longest one task may take with its transient retries: five attempts of a 60-second task and
# the back-offs between them (infra/constructs/workflow.py: 4 retries, 2 s doubling, at most 30 s).
TASK_WITH_RETRIES_SECONDS = 5 * 60 + 2 + 4 + 8 + 16


class CapacityNotReady(TransientError):
    """Capacity an action asked for is not in service yet (instances booting, passing their checks):
    the state machine asks again at a slow pace (CAPACITY_WAIT_*: every 30 s, for up to 10
    minutes) without a Lambda running meanwhile; after that the recovery rolls back."""


class PermanentError(RecoveryError):
    """Not retryable: the recovery rolls back what it did and escalates."""


class ActionRefused(PermanentError):
    """A safety rule forbids the change (minimum capacity, unmanaged resource, ...)."""


class InvalidInput(PermanentError):
    """The input could not be validated; nothing was changed."""


class RecoveryInProgress(RecoveryError):
    """Another recovery holds the lock on a resource of this impairment."""


class RecoveryPaused(RecoveryError):
    """Automatic recovery is paused (the kill switch): record, escalate, act on nothing."""


class NoMatchingPlan(RecoveryError):
    """No plan covers this impairment type and severity: a human has to decide."""


class GuardrailTripped(RecoveryError):
    """A guardrail stopped the recovery before it acted (blast radius, fail open, rate limit,
    concurrency, flapping, maintenance window): recorded and escalated with the evidence."""


class ApprovalRejected(RecoveryError):
    """A human rejected a plan that needs approval (sent as the task failure's error name)."""


class PublishError(RecoveryError):
    """PutEvents rejected some entries (FailedEntryCount > 0)."""


def classify_client_error(exc: Exception, operation: str) -> RecoveryError:
    """Map a botocore error to TransientError or PermanentError, keeping the AWS error code."""
    from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        message = exc.response.get("Error", {}).get("Message", str(exc))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        cls = TransientError if code in TRANSIENT_CODES or status >= 500 else PermanentError
        return cls(f"{operation} failed: {code}: {message}", operation=operation, code=code)
    if isinstance(exc, (ConnectionError, ReadTimeoutError)):
        return TransientError(f"{operation} failed: {exc}", operation=operation, code="Connection")
    return PermanentError(f"{operation} failed: {exc}", operation=operation, code=type(exc).__name__)


def error_text(error: dict[str, Any]) -> str:
    """A Step Functions error ({"Error": name, "Cause": Lambda's JSON error or text}) as one line:
    "TransientError: autoscaling:TerminateInstanceInAutoScalingGroup failed: Throttling: ..."."""
    import json

    cause = str(error.get("Cause") or "")
    try:
        decoded = json.loads(cause)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("errorMessage"):
        cause = str(decoded["errorMessage"])
    return f"{error.get('Error', 'Error')}: {cause}".strip(": ")
