"""Typed errors. The state machine retries or catches them by class name (the Lambda errorType),
so the names below are part of the workflow's contract: keep them stable."""

from __future__ import annotations

import re
from typing import Any

# What "try again later" looks like, as one table: the codes any AWS API may answer for throttling
# or a fault on its side, then, per service, the codes of the operations the functions call that
# mean throttling, a conflicting request still in progress, or a service-side fault. Everything
# else is permanent (the recovery rolls back and escalates), except that any HTTP 5xx or 429
# answer is transient whatever its code. Sources: the "Common Errors" of the AWS API references,
# botocore's standard retry mode (botocore/retries/standard.py: its throttling and transient
# codes), and each service's model (botocore/data/<service>/*/service-2.json: the error shapes of
# the operations called, checked one by one).

# Answered by any service: throttling (JSON protocols' ThrottlingException, the query protocol's
# Throttling, and the variants botocore's standard mode treats as throttling for every service:
# RequestLimitExceeded is EC2's and DynamoDB's), a service that is unavailable or failed inside.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

# By service: the prefix of the "service:Operation" name every caller classifies with (the IAM
# prefix, which is also the signing name of every service below except CloudWatch, whose signing
# name is "monitoring": both are listed). A service with no codes of its own is listed anyway, so
# that the table says it was checked.
SERVICE_TRANSIENT_CODES: dict[str, frozenset[str]] = {
    # ResourceContention: "You already have a pending update to an Amazon EC2 Auto Scaling
    # resource"; ScalingActivityInProgress: "there are scaling activities in progress".
    "autoscaling": frozenset({"ResourceContention", "ScalingActivityInProgress"}),
    # EC2 models no errors; from its error code list: EC2ThrottledException (botocore), the server
    # errors InternalError and Unavailable ("the server is overloaded"), and no capacity for
    # StartInstances right now. (Its throttling, RequestLimitExceeded, is a common code.)
    "ec2": frozenset(
        {
            "EC2ThrottledException",
            "InternalError",
            "Unavailable",
            "InsufficientInstanceCapacity",
            "InsufficientCapacity",
            "InsufficientHostCapacity",
        }
    ),
    # PriorRequestNotComplete (HTTP 429): "not allowed while a prior request has not been
    # completed"; HealthUnavailable (HTTP 500, DescribeTargetHealth): health could not be read.
    "elasticloadbalancing": frozenset({"PriorRequestNotComplete", "HealthUnavailable"}),
    # ServerException: "usually caused by a server issue".
    "ecs": frozenset({"ServerException"}),
    # ServerException: a fault on EKS's side; ResourceInUseException (UpdateNodegroupConfig): the
    # node group's previous update is still in progress.
    "eks": frozenset({"ServerException", "ResourceInUseException"}),
    # The RDS operations called model no throttling or conflict code (InvalidDBInstanceState and
    # InvalidDBClusterState are the failover action's to interpret): the common codes only.
    "rds": frozenset(),
    # PriorRequestNotComplete: the zone's previous change is still being applied;
    # ConcurrentModification: "Another user submitted a request ... at the same time. Retry".
    "route53": frozenset({"PriorRequestNotComplete", "ConcurrentModification"}),
    "ssm": frozenset({"InternalServerError"}),
    # Not ConflictException: ARC answers it for a state that a retry does not change (a zonal
    # shift already active for the resource, zonal autoshift in progress).
    "arc-zonal-shift": frozenset({"InternalServerException"}),
    # EndpointTemporarilyUnavailable: "Try another cluster endpoint". Not ConflictException: the
    # failover action reads it as a safety rule blocking the update (an ActionRefused).
    "route53-recovery-cluster": frozenset({"InternalServerException", "EndpointTemporarilyUnavailableException"}),
    # The InternalServiceFault shape's code is InternalServiceError.
    "cloudwatch": frozenset({"InternalServiceError"}),
    "monitoring": frozenset({"InternalServiceError"}),
    # Throughput over the table's (over the account's is RequestLimitExceeded, a common code), an
    # item another transaction is writing, the same transaction still in progress, a write in
    # another region of a global table conflicting, an internal error.
    # TransactionCanceledException: by its reasons (below).
    "dynamodb": frozenset(
        {
            "ProvisionedThroughputExceededException",
            "TransactionConflictException",
            "TransactionInProgressException",
            "ReplicatedWriteConflictException",
            "InternalServerError",
        }
    ),
    "events": frozenset({"InternalException"}),
    # Throttled (HTTP 429): the account's publish rate; KMSThrottling: KMS throttled the request
    # SNS made to encrypt the message with the topic's key; InternalError (HTTP 500).
    "sns": frozenset({"Throttled", "KMSThrottling", "InternalError"}),
    "sts": frozenset(),
    # KmsThrottlingException: KMS throttled a call Step Functions made for the caller.
    "states": frozenset({"KmsThrottlingException"}),
}

# DynamoDB cancels a whole transaction and says why, item by item (CancellationReasons, in the
# order of the items; "None" for an item that was fine). These reasons mean "try again"; a
# ConditionalCheckFailed is a real condition failure, which the store interprets itself.
TRANSACTION_CANCELLED = "TransactionCanceledException"
TRANSIENT_CANCELLATION_CODES = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
CONDITION_FAILED = "ConditionalCheckFailed"


def cancellation_codes(response: dict[str, Any]) -> list[str]:
    """The reason codes of a TransactionCanceledException response, in item order.

    botocore puts the modeled CancellationReasons at the top of the error response. Without them
    (an SDK that does not parse modeled error fields), the message lists the same codes:
    "Transaction cancelled, please refer cancellation reasons for specific reasons [None,
    TransactionConflict]"."""
    reasons = response.get("CancellationReasons")
    if isinstance(reasons, list) and reasons:
        return [str(r.get("Code") or "None") if isinstance(r, dict) else "None" for r in reasons]
    message = str(response.get("Error", {}).get("Message") or "")
    listed = re.search(r"\[([A-Za-z, ]*)\]\s*$", message)
    return [code.strip() for code in listed.group(1).split(",") if code.strip()] if listed else []


def transient_code(service: str, code: str, status: int = 0) -> bool:
    """Whether `code` (answered with HTTP `status`) from `service` means "try again later"."""
    return (
        code in TRANSIENT_CODES
        or code in SERVICE_TRANSIENT_CODES.get(service, ())
        or status >= 500
        # 429 Too Many Requests is throttling whatever the code (botocore treats it so too).
        or status == 429
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


class ImpairmentNotRecorded(PermanentError):
    """An update named an impairment that has no record: nothing was written (an update must not
    leave a stub record without the impairment, its workload or its index keys)."""


class RecoveryInProgress(RecoveryError):
    """Another recovery holds the lock on a resource of this impairment."""


class RecoveryPaused(RecoveryError):
    """Automatic recovery is paused (the kill switch): record, escalate, act on nothing."""


class NoMatchingPlan(RecoveryError):
    """No plan covers this impairment type and severity: a human has to decide."""


class InvalidPlan(InvalidInput):
    """The plan chosen cannot run in this deployment (a step its actions do not take, or the
    recovery configuration unreadable): escalated to a human, not rejected as the impairment is
    when it does not validate (the workflow catches InvalidInput by that exact name)."""


class GuardrailTripped(RecoveryError):
    """A guardrail stopped the recovery before it acted (blast radius, fail open, rate limit,
    concurrency, flapping, maintenance window): recorded and escalated with the evidence."""


class ApprovalRejected(RecoveryError):
    """A human rejected a plan that needs approval (sent as the task failure's error name)."""


class PublishError(RecoveryError):
    """PutEvents rejected some entries (FailedEntryCount > 0)."""


def classify_client_error(exc: Exception, operation: str) -> RecoveryError:
    """Map a botocore error to TransientError or PermanentError, keeping the AWS error code.

    `operation` is "service:Operation" (e.g. "sns:Publish"): the service part picks the
    service's codes in SERVICE_TRANSIENT_CODES."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        message = exc.response.get("Error", {}).get("Message", str(exc))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        service = operation.split(":", 1)[0]
        if code == TRANSACTION_CANCELLED:
            reasons = cancellation_codes(exc.response)
            transient = CONDITION_FAILED not in reasons and any(r in TRANSIENT_CANCELLATION_CODES for r in reasons)
            cls = TransientError if transient else PermanentError
            return cls(
                f"{operation} failed: {code}: {message}", operation=operation, code=code, cancellation_reasons=reasons
            )
        cls = TransientError if transient_code(service, code, status) else PermanentError
        return cls(f"{operation} failed: {code}: {message}", operation=operation, code=code)
    # No answer: the endpoint could not be reached, or the connection broke or timed out before
    # the answer (HTTPClientError covers ReadTimeoutError and ConnectionClosedError).
    if isinstance(exc, (ConnectionError, HTTPClientError)):
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
