"""Error classification: transient errors are retried by the state machine, permanent ones roll back.

Every transient code of every service the functions call is tested on its own, as botocore raises
it: a real client answered with the service's error response in the service's protocol
(tests/wire.py), classified as the callers classify it ("service:Operation"), and through the
actions' call helper (which names the service by its signing name)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from core import aws
from core.dynamo import is_condition_failure as _is_condition_failure
from core.errors import (
    SERVICE_TRANSIENT_CODES,
    PermanentError,
    TransientError,
    cancellation_codes,
    classify_client_error,
)
from tests.wire import CALLS, error_of

# (boto3 service, code as the service answers it, the HTTP status it answers with)
TRANSIENT = [
    ("autoscaling", "Throttling", 400),
    ("autoscaling", "ResourceContention", 500),
    ("autoscaling", "ScalingActivityInProgress", 400),
    ("ec2", "RequestLimitExceeded", 503),
    ("ec2", "EC2ThrottledException", 503),
    ("ec2", "InternalError", 500),
    ("ec2", "Unavailable", 503),
    ("ec2", "InsufficientInstanceCapacity", 500),
    ("ec2", "InsufficientCapacity", 500),
    ("ec2", "InsufficientHostCapacity", 500),
    ("elbv2", "Throttling", 400),
    ("elbv2", "PriorRequestNotComplete", 429),
    ("elbv2", "HealthUnavailable", 500),
    ("ecs", "ThrottlingException", 400),
    ("ecs", "ServerException", 500),
    ("eks", "ServerException", 500),
    ("eks", "ResourceInUseException", 409),
    ("rds", "Throttling", 400),
    ("route53", "Throttling", 400),
    ("route53", "ThrottlingException", 400),
    ("route53", "PriorRequestNotComplete", 400),
    ("route53", "ConcurrentModification", 400),
    ("ssm", "ThrottlingException", 400),
    ("ssm", "InternalServerError", 500),
    ("arc-zonal-shift", "ThrottlingException", 429),
    ("arc-zonal-shift", "InternalServerException", 500),
    ("route53-recovery-cluster", "ThrottlingException", 429),
    ("route53-recovery-cluster", "InternalServerException", 500),
    ("route53-recovery-cluster", "EndpointTemporarilyUnavailableException", 503),
    ("cloudwatch", "Throttling", 400),
    ("cloudwatch", "InternalServiceError", 500),
    ("dynamodb", "ThrottlingException", 400),
    ("dynamodb", "ProvisionedThroughputExceededException", 400),
    ("dynamodb", "RequestLimitExceeded", 400),
    ("dynamodb", "TransactionConflictException", 400),
    ("dynamodb", "TransactionInProgressException", 400),
    ("dynamodb", "ReplicatedWriteConflictException", 409),
    ("dynamodb", "InternalServerError", 500),
    ("events", "ThrottlingException", 400),
    ("events", "InternalException", 500),
    ("sns", "Throttled", 429),
    ("sns", "KMSThrottling", 400),
    ("sns", "InternalError", 500),
    ("sts", "Throttling", 400),
    ("stepfunctions", "ThrottlingException", 400),
    ("stepfunctions", "KmsThrottlingException", 400),
]

# Refusals a retry cannot change: they roll back and escalate.
PERMANENT = [
    ("autoscaling", "ValidationError", 400),
    ("ec2", "InvalidInstanceID.NotFound", 400),
    ("ec2", "UnauthorizedOperation", 403),
    ("elbv2", "TargetGroupNotFound", 400),
    ("ecs", "ClientException", 400),
    ("ecs", "ServiceNotActiveException", 400),
    ("rds", "InvalidDBClusterStateFault", 400),
    ("route53", "NoSuchHostedZone", 404),
    ("ssm", "InvalidInstanceId", 400),
    # a zonal shift already active, autoshift in progress: a state a retry does not change
    ("arc-zonal-shift", "ConflictException", 409),
    # a safety rule blocks the update: the failover action refuses it
    ("route53-recovery-cluster", "ConflictException", 409),
    ("cloudwatch", "ResourceNotFoundException", 404),
    ("dynamodb", "ConditionalCheckFailedException", 400),
    ("dynamodb", "ValidationException", 400),
    ("sns", "KMSAccessDenied", 400),
    ("sns", "AuthorizationError", 403),
    ("sns", "InvalidParameter", 400),
    ("sts", "AccessDenied", 403),
    ("stepfunctions", "ExecutionLimitExceeded", 400),
]


def _operation(client, service: str, iam_prefix: bool = True) -> str:
    """ "service:Operation" as the callers name it: by IAM prefix, or by signing name (the actions)."""
    method = CALLS[service][0]
    prefix = {"elbv2": "elasticloadbalancing", "stepfunctions": "states"}.get(service, service)
    if not iam_prefix:
        prefix = client.meta.service_model.signing_name
    return f"{prefix}:{client.meta.method_to_api_mapping[method]}"


@pytest.mark.parametrize(("service", "code", "status"), TRANSIENT, ids=[f"{s}-{c}" for s, c, _ in TRANSIENT])
def test_each_throttling_conflict_or_fault_code_of_each_service_is_transient(service, code, status):
    # Given the service answers one of its "try again later" codes, as it does in AWS
    client, error = error_of(service, code, status)
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status

    # When it is classified as the callers do
    classified = classify_client_error(error, _operation(client, service))

    # Then it is retried, and keeps the code
    assert isinstance(classified, TransientError), classified
    assert classified.details["code"] == code


@pytest.mark.parametrize(("service", "code", "status"), TRANSIENT, ids=[f"{s}-{c}" for s, c, _ in TRANSIENT])
def test_the_code_alone_makes_it_transient_whatever_the_status(service, code, status):
    # Given the same code with a plain 400 (the table decides, not a 5xx or 429 status)
    client, error = error_of(service, code, 400)

    # Then it is still transient, named by IAM prefix or by signing name alike
    assert isinstance(classify_client_error(error, _operation(client, service)), TransientError)
    assert isinstance(classify_client_error(error, _operation(client, service, iam_prefix=False)), TransientError)


@pytest.mark.parametrize(("service", "code", "status"), TRANSIENT, ids=[f"{s}-{c}" for s, c, _ in TRANSIENT])
def test_the_actions_call_helper_raises_each_transient_code_as_transient(service, code, status):
    client, _ = error_of(service, code, 400)
    method, params = CALLS[service]

    with pytest.raises(TransientError) as caught:
        aws.call(client, method, **params)

    assert caught.value.details["code"] == code


@pytest.mark.parametrize(("service", "code", "status"), PERMANENT, ids=[f"{s}-{c}" for s, c, _ in PERMANENT])
def test_refusals_that_a_retry_cannot_change_are_permanent(service, code, status):
    client, error = error_of(service, code, status)

    classified = classify_client_error(error, _operation(client, service))

    assert isinstance(classified, PermanentError)
    assert not isinstance(classified, TransientError)
    assert classified.details["code"] == code


def test_every_service_the_table_names_is_one_the_tests_call():
    # Guards the table against a service key that no caller uses (a typo would silently do nothing)
    named = {_operation(error_of(s, "Throttling", 400)[0], s).split(":")[0] for s in CALLS}
    assert set(SERVICE_TRANSIENT_CODES) - named == {"monitoring"}  # CloudWatch's signing name
    assert set(CALLS) >= {"sns", "dynamodb", "elbv2", "autoscaling", "ec2", "events", "stepfunctions"}


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_any_server_side_failure_or_too_many_requests_is_transient_whatever_its_code(status):
    _, error = error_of("ec2", "SomethingOddHappened", status)

    assert isinstance(classify_client_error(error, "ec2:DescribeInstances"), TransientError)


def test_a_code_of_one_service_is_not_transient_for_another():
    # ServerException is ECS's fault code; from SNS it means nothing known, so it is permanent
    _, error = error_of("sns", "ServerException", 400)

    assert not isinstance(classify_client_error(error, "sns:Publish"), TransientError)


# --- DynamoDB: a cancelled transaction, by its reasons ------------------------------------------


def _cancelled(*reasons: str):
    message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(reasons)}]"
    return error_of(
        "dynamodb",
        "TransactionCanceledException",
        400,
        Message=message,
        CancellationReasons=[{"Code": r} if r == "None" else {"Code": r, "Message": f"{r} happened"} for r in reasons],
    )[1]


@pytest.mark.parametrize(
    "reasons",
    [
        ("None", "TransactionConflict"),
        ("TransactionConflict",),
        ("ThrottlingError", "None"),
        ("None", "ProvisionedThroughputExceeded"),
    ],
)
def test_a_transaction_cancelled_for_a_conflict_or_throttling_is_retried_and_is_no_condition_failure(reasons):
    # Given TransactWriteItems cancelled because another transaction held an item, or throttled
    error = _cancelled(*reasons)
    assert error.response["CancellationReasons"][0]["Code"] == reasons[0]  # as botocore parses it

    # Then the store does not read it as a condition failure, and it is retried
    assert _is_condition_failure(error) is False
    classified = classify_client_error(error, "dynamodb:TransactWriteItems")
    assert isinstance(classified, TransientError)
    assert classified.details["cancellation_reasons"] == list(reasons)


@pytest.mark.parametrize(
    "reasons", [("ConditionalCheckFailed", "None"), ("ConditionalCheckFailed", "TransactionConflict")]
)
def test_a_transaction_cancelled_by_a_condition_is_a_condition_failure(reasons):
    # A condition that failed is the real answer, whatever else happened to the other items
    error = _cancelled(*reasons)

    assert _is_condition_failure(error) is True
    assert not isinstance(classify_client_error(error, "dynamodb:TransactWriteItems"), TransientError)


@pytest.mark.parametrize("reasons", [("ValidationError",), ("None", "ItemCollectionSizeLimitExceeded")])
def test_a_transaction_cancelled_for_any_other_reason_is_permanent(reasons):
    error = _cancelled(*reasons)

    assert _is_condition_failure(error) is False
    assert not isinstance(classify_client_error(error, "dynamodb:TransactWriteItems"), TransientError)


def _without_modeled_fields(message: str) -> ClientError:
    """What an SDK that does not parse modeled error fields raises: the code and message only."""
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "TransactWriteItems",
    )


def test_without_cancellation_reasons_the_message_says_them():
    conflict = _without_modeled_fields(
        "Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]"
    )
    condition = _without_modeled_fields(
        "Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed]"
    )

    assert cancellation_codes(conflict.response) == ["None", "TransactionConflict"]
    assert _is_condition_failure(conflict) is False
    assert isinstance(classify_client_error(conflict, "dynamodb:TransactWriteItems"), TransientError)
    assert _is_condition_failure(condition) is True


def test_a_transaction_cancelled_for_reasons_it_does_not_say_is_neither_a_condition_failure_nor_retried():
    # Before: no reasons was read as a condition failure (a lock "held" by nobody, a budget "taken")
    error = _without_modeled_fields("Transaction cancelled")

    assert _is_condition_failure(error) is False
    classified = classify_client_error(error, "dynamodb:TransactWriteItems")
    assert isinstance(classified, PermanentError) and not isinstance(classified, TransientError)


# --- no answer ------------------------------------------------------------------------------


def test_connection_problems_are_transient():
    connection = classify_client_error(EndpointConnectionError(endpoint_url="https://example"), "sns:Publish")
    timeout = classify_client_error(ReadTimeoutError(endpoint_url="https://example"), "sns:Publish")
    closed = classify_client_error(ConnectionClosedError(endpoint_url="https://example"), "sns:Publish")

    assert isinstance(connection, TransientError)
    assert isinstance(timeout, TransientError)
    assert isinstance(closed, TransientError)
    assert connection.details["code"] == "Connection"


def test_anything_else_is_permanent_and_keeps_its_type_name():
    error = classify_client_error(KeyError("InstanceId"), "autoscaling:Describe")

    assert isinstance(error, PermanentError)
    assert error.details["code"] == "KeyError"


def test_the_message_names_the_operation_and_the_code():
    _, error = error_of("autoscaling", "ScalingActivityInProgress", 400)

    classified = classify_client_error(error, "autoscaling:SetDesiredCapacity")

    assert classified.details == {"operation": "autoscaling:SetDesiredCapacity", "code": "ScalingActivityInProgress"}
    assert "autoscaling:SetDesiredCapacity" in str(classified) and "ScalingActivityInProgress" in str(classified)
