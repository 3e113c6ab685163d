"""OpsItems: moto has no OpsCenter, so botocore's Stubber checks each call against the real
Systems Manager API model (CreateOpsItem, DescribeOpsItems, UpdateOpsItem) and answers with its
shapes."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from core import paging
from core.errors import PermanentError, TransientError
from notify import opsitems
from tests.builders import impairment

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:recovery:web-api-1"


def ssm_stubbed() -> tuple[object, Stubber]:
    client = boto3.client("ssm", region_name="us-east-1")
    return client, Stubber(client)


def page_body(**extra) -> dict:
    model = impairment().model_dump(mode="json")
    model["affected_resources"].append(
        {"resource_type": "elasticloadbalancing:targetgroup", "resource_id": "arn:aws:elasticloadbalancing:x"}
    )
    message = {
        "summary": "Automatic recovery of web-api needs a human",
        "impairment_id": model["impairment_id"],
        "impairment": model,
        "execution": EXECUTION,
        "sent_at": "2026-11-22T20:07:00+00:00",
        **extra,
    }
    return paging.notification("web-api", "not healthy", message)


def test_an_escalation_opens_one_ops_item_deduplicated_by_the_impairment_id():
    ssm, stub = ssm_stubbed()
    body = page_body()
    impairment_id = body["metadata"]["additionalContext"]["impairment_id"]
    expected = {
        "Title": ANY,
        "Description": "Automatic recovery of web-api needs a human",
        "Source": "impairment-recovery",
        "Category": "Availability",
        "Severity": "2",
        "Priority": 2,
        "OperationalData": ANY,
    }
    stub.add_response("create_ops_item", {"OpsItemId": "oi-0123456789ab"}, expected)
    with stub:
        assert opsitems.sync(body, ssm) == "opened oi-0123456789ab"
        stub.assert_no_pending_responses()
    data = opsitems_data(body)
    assert json.loads(data["/aws/dedup"]["Value"]) == {"dedupString": impairment_id}
    assert data["/aws/dedup"]["Type"] == "SearchableString"
    assert data[opsitems.DEDUP_DATA_KEY]["Value"] == impairment_id
    assert json.loads(data["/aws/resources"]["Value"]) == [{"arn": "arn:aws:elasticloadbalancing:x"}]
    assert json.loads(data["details"]["Value"])["execution"] == EXECUTION


def opsitems_data(body: dict) -> dict:
    """The OperationalData CreateOpsItem is sent (captured from a stubbed call)."""
    captured = {}

    class Capture:
        def create_ops_item(self, **request):
            captured.update(request)
            return {"OpsItemId": "oi-1"}

    opsitems.sync(body, Capture())
    return captured["OperationalData"]


def test_an_ops_item_already_open_for_the_key_is_reused():
    ssm, stub = ssm_stubbed()
    stub.add_client_error(
        "create_ops_item",
        "OpsItemAlreadyExistsException",
        "exists",
        400,
        modeled_fields={"OpsItemId": "oi-existing0001"},
    )
    with stub:
        assert opsitems.sync(page_body(), ssm) == "opened oi-existing0001"


def test_a_resolve_resolves_every_open_ops_item_of_its_key_across_pages():
    ssm, stub = ssm_stubbed()
    filters = [
        {
            "Key": "OperationalData",
            "Values": [json.dumps({"key": opsitems.DEDUP_DATA_KEY, "value": "web-api-1"})],
            "Operator": "Equal",
        },
        {"Key": "Status", "Values": ["Open", "InProgress"], "Operator": "Equal"},
    ]
    stub.add_response(
        "describe_ops_items",
        {"OpsItemSummaries": [{"OpsItemId": "oi-000000000001"}], "NextToken": "t1"},
        {"OpsItemFilters": filters, "MaxResults": 50},
    )
    stub.add_response(
        "describe_ops_items",
        {"OpsItemSummaries": [{"OpsItemId": "oi-000000000002"}]},
        {"OpsItemFilters": filters, "MaxResults": 50, "NextToken": "t1"},
    )
    for ops_item in ("oi-000000000001", "oi-000000000002"):
        stub.add_response("update_ops_item", {}, {"OpsItemId": ops_item, "Status": "Resolved"})
    resolve = paging.notification("web-api", "resolved", {"impairment_id": "web-api-1"}, paging.RESOLVE)

    with stub:
        assert opsitems.sync(resolve, ssm) == "resolved 2"
        stub.assert_no_pending_responses()


def test_an_ops_item_deleted_meanwhile_is_not_an_error():
    ssm, stub = ssm_stubbed()
    stub.add_response("describe_ops_items", {"OpsItemSummaries": [{"OpsItemId": "oi-000000000001"}]})
    stub.add_client_error("update_ops_item", "OpsItemNotFoundException", "gone", 400)
    with stub:
        assert opsitems.resolve(ssm, "web-api-1") == ["oi-000000000001"]


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("InternalServerError", 500, TransientError),
        ("OpsItemLimitExceededException", 400, PermanentError),
        ("OpsItemInvalidParameterException", 400, PermanentError),
    ],
)
def test_create_errors_are_classified(code, status, error):
    ssm, stub = ssm_stubbed()
    stub.add_client_error("create_ops_item", code, "no", status)
    with stub, pytest.raises(error) as caught:
        opsitems.sync(page_body(), ssm)
    assert caught.value.details["code"] == code


def test_a_message_that_is_not_a_page_opens_nothing():
    assert opsitems.sync({"AlarmName": "x", "NewStateValue": "ALARM"}, object()) is None
