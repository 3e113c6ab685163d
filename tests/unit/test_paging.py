"""Paging a human: SNS Publish errors are classified like every other call's."""

from __future__ import annotations

import pytest

from core import paging
from core.errors import PermanentError, TransientError
from tests.wire import answer_with_error, client

TOPIC = "arn:aws:sns:us-east-1:123456789012:escalations"


@pytest.mark.parametrize(
    ("code", "status"),
    [("Throttled", 429), ("Throttled", 400), ("KMSThrottling", 400), ("InternalError", 500)],
)
def test_a_throttled_or_failed_page_is_retried_not_lost(code, status):
    # Given SNS throttles the publish (the account's rate, or KMS encrypting for the topic's key)
    sns = client("sns")
    answer_with_error(sns, code, status)

    # When a page is sent
    with pytest.raises(TransientError) as caught:
        paging.page(TOPIC, "web-api", "recovery failed", {"impairment_id": "web-api-1"}, sns=sns)

    # Then the task fails with a retryable error that names the call and the code
    assert caught.value.details == {"operation": "sns:Publish", "code": code}


@pytest.mark.parametrize("code", ["KMSAccessDenied", "AuthorizationError", "NotFound"])
def test_a_page_refused_for_good_is_permanent(code):
    sns = client("sns")
    answer_with_error(sns, code, 400)

    with pytest.raises(PermanentError) as caught:
        paging.page(TOPIC, "web-api", "recovery failed", {}, sns=sns)

    assert not isinstance(caught.value, TransientError)
