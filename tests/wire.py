"""AWS error answers on the wire: a real boto3 client, answered (instead of the network) with the
HTTP response a service sends for an error, in the service's own protocol, so that botocore parses
it into the exact ClientError it raises in AWS (Error.Code, HTTP status, modeled fields such as
DynamoDB's CancellationReasons)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

# A cheap call of each service the functions call: (boto3 method, its parameters).
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "autoscaling": ("describe_auto_scaling_groups", {}),
    "ec2": ("describe_instances", {}),
    "elbv2": (
        "describe_target_health",
        {"TargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/73e2d6bc24d8a067"},
    ),
    "ecs": ("update_service", {"cluster": "checkout", "service": "checkout-api", "forceNewDeployment": True}),
    "eks": ("update_nodegroup_config", {"clusterName": "prod", "nodegroupName": "workers", "scalingConfig": {}}),
    "rds": ("failover_db_cluster", {"DBClusterIdentifier": "ledger-cluster"}),
    "route53": ("list_resource_record_sets", {"HostedZoneId": "Z0EXAMPLE"}),
    "ssm": ("list_commands", {}),
    "arc-zonal-shift": ("list_zonal_shifts", {}),
    "route53-recovery-cluster": (
        "get_routing_control_state",
        {"RoutingControlArn": "arn:aws:route53-recovery-control::123456789012:controlpanel/a/routingcontrol/b"},
    ),
    "cloudwatch": ("list_tags_for_resource", {"ResourceARN": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a"}),
    "dynamodb": (
        "transact_write_items",
        {"TransactItems": [{"Put": {"TableName": "recovery", "Item": {"pk": {"S": "BUDGET#x"}}}}]},
    ),
    "events": ("put_events", {"Entries": [{"Source": "recovery.detection", "DetailType": "x", "Detail": "{}"}]}),
    "sns": ("publish", {"TopicArn": "arn:aws:sns:us-east-1:123456789012:escalations", "Message": "page"}),
    "sts": ("get_caller_identity", {}),
    "stepfunctions": ("start_execution", {"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:r"}),
}
# Clients that need an endpoint of their own (ARC's cluster is reached at its Regional endpoints).
ENDPOINTS = {"route53-recovery-cluster": "https://host-aaaaaa.us-west-2.example.com/v1"}


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def client(service: str) -> Any:
    """A client of `service` that makes one attempt (no SDK retries, as the functions' clients)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=ENDPOINTS.get(service),
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def answer_with_error(
    client: Any, code: str, status: int, message: str = "the service says no", **modeled: Any
) -> None:
    """Make every call of `client` answered by the service with this error: `code` as the
    service spells it, HTTP `status`, and `modeled` fields of the error shape in the body."""
    from botocore.awsrequest import AWSResponse

    headers, body = _error_body(client.meta.service_model, code, message, modeled)

    def send(request: Any, **_: Any) -> Any:
        return AWSResponse(request.url, status, headers, _Body(body))

    client.meta.events.register_first("before-send", send)


def error_of(service: str, code: str, status: int, **modeled: Any) -> tuple[Any, Exception]:
    """(the client, the ClientError botocore raised) for one call of `service` answered so."""
    from botocore.exceptions import ClientError

    made = client(service)
    answer_with_error(made, code, status, **modeled)
    method, params = CALLS[service]
    try:
        getattr(made, method)(**params)
    except ClientError as exc:
        return made, exc
    raise AssertionError(f"{service} {method} did not fail")


def _error_body(model: Any, code: str, message: str, modeled: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    protocol = getattr(model, "resolved_protocol", None) or model.protocol
    request_id = "5f1d7e0a-1b2c-4d3e-8f90-a1b2c3d4e5f6"
    if protocol in ("query", "rest-xml"):
        fields = "".join(f"<{k}>{v}</{k}>" for k, v in modeled.items())
        xml = (
            '<ErrorResponse xmlns="https://example.amazonaws.com/doc/">'
            f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>{fields}</Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return {"x-amzn-RequestId": request_id, "Content-Type": "text/xml"}, xml.encode()
    if protocol == "ec2":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        return {"Content-Type": "text/xml"}, xml.encode()
    if protocol == "json":
        target = model.metadata.get("targetPrefix", "")
        headers = {
            "x-amzn-RequestId": request_id,
            "Content-Type": f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.0')}",
        }
        if model.metadata.get("awsQueryCompatible") is not None:
            # A service that moved from the query protocol (CloudWatch) names its old code here.
            headers["x-amzn-query-error"] = f"{code};Sender"
        body = {"__type": f"com.amazonaws.{target.lower()}#{code}", "message": message, **modeled}
        return headers, json.dumps(body).encode()
    if protocol == "rest-json":
        headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/"}
        return headers, json.dumps({"message": message, **modeled}).encode()
    raise AssertionError(f"no error answer for the {protocol} protocol of {model.service_name}")
