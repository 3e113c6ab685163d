"""invoke_function: the user's Lambda function for apply and rollback, by its contract.

moto's Lambda runs code only in Docker, which the tests do not have: GetFunction and Invoke are
answered through botocore's Stubber, in Lambda's real response shapes (Invoke's StatusCode,
FunctionError and Payload stream). The audit records are moto's DynamoDB.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from core import aws
from core.errors import ActionRefused, PermanentError, TransientError
from tests.builders import ACCOUNT, MANAGED_TAG, REGION, action_event, impairment, run_step

APPLY_FN, ROLLBACK_FN = "drain-cache", "refill-cache"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
INSTANCE = "i-0abc123def4567890"


@pytest.fixture
def lam(store):
    """The action's Lambda client (default timeout_seconds 30), stubbed; the invocations' inputs."""
    client = aws.client("lambda", max_attempts=1, timeouts=(5, 32))
    sent: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **kwargs: Any) -> None:
        sent.append(json.loads(params["Payload"]))

    client.meta.events.register("provide-client-params.lambda.Invoke", capture)
    with Stubber(client) as stubber:
        stubber.sent = sent
        yield stubber
        stubber.assert_no_pending_responses()
    client.meta.events.unregister("provide-client-params.lambda.Invoke", capture)


def found(stubber: Stubber, name: str, managed: bool = True) -> None:
    tags = {MANAGED_TAG[0]: MANAGED_TAG[1]} if managed else {"team": "web"}
    stubber.add_response(
        "get_function",
        {
            "Configuration": {"FunctionName": name, "FunctionArn": ARN + name, "Runtime": "python3.13"},
            "Tags": tags,
        },
        {"FunctionName": name},
    )


def answers(stubber: Stubber, name: str, body: Any, function_error: str | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response: dict[str, Any] = {
        "StatusCode": 200,
        "ExecutedVersion": "$LATEST",
        "Payload": StreamingBody(io.BytesIO(data), len(data)),
    }
    if function_error:
        response["FunctionError"] = function_error
    expected = {"FunctionName": ARN + name, "InvocationType": "RequestResponse", "Payload": ANY}
    stubber.add_response("invoke", response, expected)


def event(model, applied: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    return action_event(model, "invoke_function", params={"function_name": APPLY_FN, **params}, applied=applied)


DONE = {"status": "done", "before": {"entries": 120}, "after": {"entries": 0}, "detail": "drained"}


def test_apply_invokes_the_function_with_the_contract_input_and_records_its_before_and_after(
    store, lambda_context, lam
):
    # Given a managed function that drains the cache
    model = impairment(instances=[INSTANCE])
    found(lam, APPLY_FN)
    answers(lam, APPLY_FN, DONE)

    # When the step runs, with a static payload
    result = run_step("apply", event(model, payload={"cache": "sessions"}), lambda_context)

    # Then the function got our input with the payload merged in
    (sent,) = lam.sent
    assert sent["contract"] == "impairment-recovery/invoke_function/1"
    assert sent["phase"] == "apply" and sent["dry_run"] is False and sent["drill"] is False
    assert sent["cache"] == "sessions"
    assert sent["idempotency_key"] == f"{model.impairment_id}#0#apply"
    assert sent["impairment_id"] == model.impairment_id and sent["workload"] == "web-api"
    assert sent["impairment_type"] == "instance_failure" and sent["severity"] == "high"
    assert sent["affected_resources"] == [{"resource_type": "ec2:instance", "resource_id": INSTANCE}]
    assert sent["step"] == {
        "index": 0,
        "params": {"function_name": APPLY_FN, "rollback_function": None, "timeout_seconds": 30},
    }
    assert "applied" not in sent
    # And its answer is the step's result and audit record
    assert result["result"] == "changed"
    assert result["targets"] == [ARN + APPLY_FN]
    assert result["before"] == {"function": ARN + APPLY_FN, "state": {"entries": 120}}
    assert result["after"] == {"function": ARN + APPLY_FN, "state": {"entries": 0}, "detail": "drained"}
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "done" and record["after"]["state"] == {"entries": 0}


def test_an_unchanged_answer_is_an_unchanged_step(store, lambda_context, lam):
    model = impairment()
    found(lam, APPLY_FN)
    answers(lam, APPLY_FN, {"status": "unchanged", "detail": "already empty"})

    result = run_step("apply", event(model), lambda_context)

    assert result["result"] == "unchanged"
    assert result["message"].endswith("already empty")


def test_a_function_error_fails_the_step_permanently_with_its_type_and_message_recorded(store, lambda_context, lam):
    # Given a function that raises
    model = impairment()
    found(lam, APPLY_FN)
    error = {"errorType": "ValueError", "errorMessage": "no such cache: sessions", "stackTrace": ["..."]}
    answers(lam, APPLY_FN, error, function_error="Unhandled")

    with pytest.raises(PermanentError) as caught:
        run_step("apply", event(model), lambda_context)

    # Then the step failed with the function's errorType and errorMessage, not retried
    assert not isinstance(caught.value, TransientError)
    assert caught.value.details["error_type"] == "ValueError"
    assert caught.value.details["function_error"] == "Unhandled"
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "failed"
    assert "ValueError: no such cache: sessions" in record["error"]
    # And what it was about to call is recorded, for the rollback
    assert record["before"]["function"] == ARN + APPLY_FN


def test_a_retryable_error_is_transient_and_the_retry_invokes_again_with_the_same_key(store, lambda_context, lam):
    # Given a function that says "try again" once, then succeeds
    model = impairment()
    found(lam, APPLY_FN)
    answers(lam, APPLY_FN, {"errorType": "RetryableError", "errorMessage": "cache busy"}, function_error="Handled")
    answers(lam, APPLY_FN, DONE)

    with pytest.raises(TransientError, match="RetryableError: cache busy"):
        run_step("apply", event(model), lambda_context)
    # When the state machine retries the step (its recorded before reused: no second GetFunction)
    result = run_step("apply", event(model), lambda_context)

    assert result["result"] == "changed"
    first, second = lam.sent
    assert first["idempotency_key"] == second["idempotency_key"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"status": "ok"}, "status"),
        ({"status": "done", "befor": {}}, "befor"),
        ({"status": "done", "after": [1, 2]}, "after"),
        (b"not json", "not json"),
        (b"null", "output"),
    ],
)
def test_an_answer_outside_the_contract_fails_the_step_permanently_saying_what_is_wrong(
    store, lambda_context, lam, body, says
):
    model = impairment()
    found(lam, APPLY_FN)
    answers(lam, APPLY_FN, body)

    with pytest.raises(PermanentError, match="does not keep the contract") as caught:
        run_step("apply", event(model), lambda_context)

    assert not isinstance(caught.value, TransientError)
    assert says in str(caught.value)


def test_an_answer_too_large_to_record_fails_the_step(store, lambda_context, lam):
    model = impairment()
    found(lam, APPLY_FN)
    answers(lam, APPLY_FN, {"status": "done", "after": {"dump": "x" * 20_000}})

    with pytest.raises(PermanentError, match="larger than 16384 bytes"):
        run_step("apply", event(model), lambda_context)


def test_a_function_without_the_managed_tag_is_refused_and_never_invoked(store, lambda_context, lam):
    model = impairment()
    found(lam, APPLY_FN, managed=False)

    with pytest.raises(ActionRefused, match="not managed"):
        run_step("apply", event(model), lambda_context)

    assert lam.sent == []


def test_a_dry_run_reads_the_function_and_invokes_nothing(store, lambda_context, lam):
    model = impairment()
    found(lam, APPLY_FN)
    dry = {**event(model), "dry_run": True}

    result = run_step("apply", dry, lambda_context)

    assert result["result"] == "would_change"
    assert result["message"] == f"would invoke {ARN + APPLY_FN}"
    assert lam.sent == []


def test_the_rollback_function_gets_the_applied_result_and_its_answer_is_recorded(store, lambda_context, lam):
    # Given the apply's result
    model = impairment()
    found(lam, APPLY_FN)
    answers(lam, APPLY_FN, DONE)
    applied = run_step("apply", event(model, rollback_function=ROLLBACK_FN), lambda_context)
    found(lam, ROLLBACK_FN)
    answers(lam, ROLLBACK_FN, {"status": "done", "before": {"entries": 0}, "after": {"entries": 120}})

    # When the step is rolled back
    result = run_step("rollback", event(model, applied=applied, rollback_function=ROLLBACK_FN), lambda_context)

    # Then the rollback function was told what the apply did
    sent = lam.sent[1]
    assert sent["phase"] == "rollback"
    assert sent["idempotency_key"] == f"{model.impairment_id}#0#rollback"
    assert sent["applied"]["after"]["state"] == {"entries": 0}
    assert result["result"] == "changed" and result["targets"] == [ARN + ROLLBACK_FN]
    assert store.get_action(model.impairment_id, 0, "rollback")["status"] == "done"


def test_without_a_rollback_function_the_step_is_irreversible(store, lambda_context, lam):
    model = impairment()
    applied = {
        "action": "invoke_function",
        "before": {"function": ARN + APPLY_FN},
        "after": {"function": ARN + APPLY_FN},
    }

    result = run_step("rollback", event(model, applied=applied), lambda_context)

    assert result["result"] == "irreversible"
    assert lam.sent == []


def test_an_apply_that_never_reached_the_function_has_nothing_to_roll_back(store, lambda_context, lam):
    model = impairment()

    result = run_step("rollback", event(model, applied={}, rollback_function=ROLLBACK_FN), lambda_context)

    assert result["result"] == "unchanged"
    assert lam.sent == []


def test_when_apply_and_rollback_functions_both_fail_both_errors_are_recorded(store, lambda_context, lam):
    # Given an apply function that fails half way (its before recorded)...
    model = impairment()
    found(lam, APPLY_FN)
    answers(lam, APPLY_FN, {"errorType": "CacheError", "errorMessage": "half drained"}, function_error="Unhandled")
    with pytest.raises(PermanentError):
        run_step("apply", event(model, rollback_function=ROLLBACK_FN), lambda_context)
    # ...and a rollback function that fails too (given only the apply's before, as PrepareRollback does)
    before = store.get_action(model.impairment_id, 0, "apply")["before"]
    found(lam, ROLLBACK_FN)
    answers(lam, ROLLBACK_FN, {"errorType": "KeyError", "errorMessage": "'after'"}, function_error="Unhandled")

    with pytest.raises(PermanentError, match="KeyError"):
        run_step(
            "rollback",
            event(model, applied={"action": "invoke_function", "before": before}, rollback_function=ROLLBACK_FN),
            lambda_context,
        )

    # Then the rollback function was told the apply has no result, and each failure is on record
    assert lam.sent[1]["applied"] == {"action": "invoke_function", "before": before}
    apply_record = store.get_action(model.impairment_id, 0, "apply")
    rollback_record = store.get_action(model.impairment_id, 0, "rollback")
    assert apply_record["status"] == rollback_record["status"] == "failed"
    assert "CacheError: half drained" in apply_record["error"]
    assert "KeyError: 'after'" in rollback_record["error"]


@pytest.mark.parametrize(
    ("code", "status"),
    [("TooManyRequestsException", 429), ("ResourceConflictException", 409), ("ServiceException", 500)],
)
def test_lambda_answers_that_a_retry_gets_past_are_transient(store, lambda_context, lam, code, status):
    model = impairment()
    found(lam, APPLY_FN)
    lam.add_client_error("invoke", service_error_code=code, http_status_code=status)

    with pytest.raises(TransientError) as caught:
        run_step("apply", event(model), lambda_context)

    assert caught.value.details == {"operation": "lambda:Invoke", "code": code}


def test_a_missing_function_is_permanent(store, lambda_context, lam):
    model = impairment()
    lam.add_client_error("get_function", service_error_code="ResourceNotFoundException", http_status_code=404)

    with pytest.raises(PermanentError) as caught:
        run_step("apply", event(model), lambda_context)

    assert not isinstance(caught.value, TransientError)


def test_a_function_slower_than_timeout_seconds_fails_without_being_invoked_again(
    store, lambda_context, lam, monkeypatch
):
    # Given a function that does not answer within the bound (the client's read times out)
    model = impairment()
    found(lam, APPLY_FN)
    client = aws.client("lambda", max_attempts=1, timeouts=(5, 32))

    def timed_out(**kwargs: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://lambda.us-east-1.amazonaws.com")

    monkeypatch.setattr(client, "invoke", timed_out)

    # Then the step fails permanently (a retry would run the slow function again)
    with pytest.raises(PermanentError, match="did not answer within 30 s") as caught:
        run_step("apply", event(model), lambda_context)
    assert not isinstance(caught.value, TransientError)
