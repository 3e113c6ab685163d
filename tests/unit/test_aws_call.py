"""The one call helper (core.aws.call): errors classified, named by their IAM action."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from core import aws
from core.errors import PermanentError, TransientError

COMMAND_ID = "3a4b9d2e-0c1f-4e5a-9b8c-7d6e5f4a3b2c"
OTHER_ID = "8f7e6d5c-4b3a-4291-8a7b-6c5d4e3f2a1b"


def _client(service: str):
    return boto3.client(service, region_name="us-east-1")


def test_a_throttled_call_is_transient_and_named_by_its_iam_action():
    client = _client("elbv2")  # its IAM prefix is not its boto3 name
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_target_health", service_error_code="Throttling", http_status_code=400)

        with pytest.raises(TransientError) as caught:
            aws.call(client, "describe_target_health", TargetGroupArn="arn")

    assert caught.value.details == {"operation": "elasticloadbalancing:DescribeTargetHealth", "code": "Throttling"}


def test_a_refused_call_is_permanent():
    client = _client("rds")
    with Stubber(client) as stubber:
        stubber.add_client_error("failover_db_cluster", service_error_code="InvalidDBClusterStateFault")

        with pytest.raises(PermanentError) as caught:
            aws.call(client, "failover_db_cluster", DBClusterIdentifier="c1")

    assert not isinstance(caught.value, TransientError)
    assert caught.value.details == {"operation": "rds:FailoverDBCluster", "code": "InvalidDBClusterStateFault"}


def test_a_code_can_be_transient_for_one_call_only():
    # SSM's InvocationDoesNotExist, just after SendCommand, means "not visible yet"
    client = _client("ssm")
    with Stubber(client) as stubber:
        stubber.add_client_error("get_command_invocation", service_error_code="InvocationDoesNotExist")
        stubber.add_client_error("get_command_invocation", service_error_code="InvocationDoesNotExist")

        with pytest.raises(TransientError):
            aws.call(
                client,
                "get_command_invocation",
                transient_codes={"InvocationDoesNotExist"},
                CommandId=COMMAND_ID,
                InstanceId="i-0abc123def4567890",
            )
        with pytest.raises(PermanentError) as caught:
            aws.call(client, "get_command_invocation", CommandId=COMMAND_ID, InstanceId="i-0abc123def4567890")

    assert not isinstance(caught.value, TransientError)


def test_route53_prior_request_not_complete_is_transient():
    client = _client("route53")
    with Stubber(client) as stubber:
        stubber.add_client_error("change_resource_record_sets", service_error_code="PriorRequestNotComplete")

        with pytest.raises(TransientError):
            aws.call(
                client,
                "change_resource_record_sets",
                HostedZoneId="Z1",
                ChangeBatch={
                    "Changes": [{"Action": "DELETE", "ResourceRecordSet": {"Name": "a.example.com", "Type": "A"}}]
                },
            )


def test_pages_follows_the_token_until_the_last_page():
    client = _client("ssm")
    with Stubber(client) as stubber:
        stubber.add_response("list_commands", {"Commands": [{"CommandId": COMMAND_ID}], "NextToken": "t1"})
        stubber.add_response("list_commands", {"Commands": [{"CommandId": OTHER_ID}]}, {"NextToken": "t1"})

        commands = aws.items(client, "list_commands", "Commands")

    assert [c["CommandId"] for c in commands] == [COMMAND_ID, OTHER_ID]
