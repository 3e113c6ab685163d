"""Error classification: transient errors are retried by the state machine, permanent ones roll back."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from core.errors import PermanentError, TransientError, classify_client_error


def client_error(code: str, status: int = 400, message: str = "something happened") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SetDesiredCapacity",
    )


@pytest.mark.parametrize(
    "code",
    [
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ScalingActivityInProgress",
    ],
)
def test_throttling_and_contention_are_transient(code):
    # Given an API refusal that means "not now"
    # When it is classified
    error = classify_client_error(client_error(code), "autoscaling:SetDesiredCapacity")

    # Then it is retried, and says what failed and why
    assert isinstance(error, TransientError)
    assert error.details == {"operation": "autoscaling:SetDesiredCapacity", "code": code}
    assert code in str(error) and "autoscaling:SetDesiredCapacity" in str(error)


@pytest.mark.parametrize("code", ["AccessDenied", "AccessDeniedException", "ValidationError", "ResourceInUse"])
def test_access_denied_and_bad_requests_are_permanent(code):
    error = classify_client_error(client_error(code, status=403 if "Access" in code else 400), "autoscaling:X")

    assert isinstance(error, PermanentError)
    assert not isinstance(error, TransientError)
    assert error.details["code"] == code


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_any_server_side_failure_is_transient_whatever_its_code(status):
    # Given a 5xx with a code the list of transient codes does not name
    error = classify_client_error(client_error("SomethingOddHappened", status=status), "ec2:DescribeInstances")

    # Then it is still retried: the fault was on the service's side
    assert isinstance(error, TransientError)


def test_connection_problems_are_transient():
    connection = classify_client_error(EndpointConnectionError(endpoint_url="https://example"), "sns:Publish")
    timeout = classify_client_error(ReadTimeoutError(endpoint_url="https://example"), "sns:Publish")

    assert isinstance(connection, TransientError)
    assert isinstance(timeout, TransientError)
    assert connection.details["code"] == "Connection"


def test_anything_else_is_permanent_and_keeps_its_type_name():
    error = classify_client_error(KeyError("InstanceId"), "autoscaling:Describe")

    assert isinstance(error, PermanentError)
    assert error.details["code"] == "KeyError"
