"""The ECS detector's Lambda handler under moto: a real service with its tags, a real bus."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest

from core.contract import DETECTED, EVENT_SOURCE, ImpairmentDetected, ImpairmentType
from core.errors import PublishError
from core.publisher import EventPublisher
from detectors import ecs
from tests.builders import BUS_NAME, REGION, capture_bus, received
from tests.conftest import load_event

APP_EXIT = "ecs-task-stopped-app-exit.json"


def create_service(tags: dict[str, str] | None, cluster: str = "checkout", service: str = "checkout-api") -> str:
    """A cluster and a service in moto, as in the sample events, with the given tags."""
    client = boto3.client("ecs", region_name=REGION)
    client.create_cluster(clusterName=cluster)
    client.register_task_definition(
        family=service, containerDefinitions=[{"name": "api", "image": "checkout-api:42", "memory": 512}]
    )
    kwargs: dict[str, Any] = {}
    if tags:
        kwargs["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    return client.create_service(
        cluster=cluster, serviceName=service, taskDefinition=service, desiredCount=2, **kwargs
    )["service"]["serviceArn"]


MANAGED = {"recovery:managed": "true", "recovery:workload": "checkout"}


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


def test_a_crashed_task_of_a_managed_service_puts_one_impairment_on_the_bus(bus, lambda_context):
    # Given the managed checkout-api service
    service_arn = create_service(MANAGED)
    event = load_event(APP_EXIT)

    # When ECS reports one of its tasks stopped because the app exited with 1
    response = ecs.handler(event, lambda_context)

    # Then one application error about the service and the task is on the bus
    assert response["status"] == "published"
    (published,) = received(bus)
    assert published["detail-type"] == DETECTED
    assert published["source"] == EVENT_SOURCE
    impairment = ImpairmentDetected.model_validate(published["detail"])
    assert response["detected"] == [impairment.impairment_id]
    assert impairment.impairment_type is ImpairmentType.APPLICATION_ERROR
    assert impairment.workload == "checkout"
    assert [r.resource_id for r in impairment.affected_resources] == [service_arn, event["detail"]["taskArn"]]
    assert impairment.scope == {"ecs_cluster": "checkout", "ecs_service": "checkout-api"}


def test_a_managed_service_without_a_workload_tag_is_its_own_workload(bus, lambda_context):
    create_service({"recovery:managed": "true"})

    ecs.handler(load_event("ecs-task-state-change-stopped.json"), lambda_context)

    (published,) = received(bus)
    assert published["detail"]["workload"] == "checkout-api"


@pytest.mark.parametrize("tags", [None, {"team": "payments"}, {"recovery:managed": "false"}])
def test_a_task_of_a_service_that_did_not_opt_in_puts_nothing_on_the_bus(bus, lambda_context, tags):
    create_service(tags)

    response = ecs.handler(load_event(APP_EXIT), lambda_context)

    assert response["status"] == "ignored"
    assert received(bus) == []


def test_a_task_of_a_deleted_service_is_ignored(bus, lambda_context):
    # Given the cluster exists but the service the task belonged to does not any more
    boto3.client("ecs", region_name=REGION).create_cluster(clusterName="checkout")

    response = ecs.handler(load_event(APP_EXIT), lambda_context)

    assert response["status"] == "ignored"
    assert received(bus) == []


def test_a_deployment_replacing_tasks_puts_nothing_on_the_bus(bus, lambda_context):
    create_service(MANAGED)

    response = ecs.handler(load_event("ecs-task-stopped-deployment.json"), lambda_context)

    assert response["status"] == "ignored"
    assert "on purpose" in response["reason"]
    assert received(bus) == []


def _broken(path: tuple[str, ...], value: Any = None, delete: bool = False) -> dict[str, Any]:
    event = copy.deepcopy(load_event(APP_EXIT))
    node = event
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return event


MALFORMED = {
    "empty-object": {},
    "null": None,
    "a-list": [load_event(APP_EXIT)],
    "no-detail": _broken(("detail",), delete=True),
    "no-task-arn": _broken(("detail", "taskArn"), delete=True),
    "cluster-arn-not-an-arn": _broken(("detail", "clusterArn"), "checkout"),
    "garbage-stopped-at": _broken(("detail", "stoppedAt"), "yesterday"),
    "containers-not-a-list": _broken(("detail", "containers"), {"api": 1}),
    "exit-code-not-a-number": _broken(("detail", "containers", 0, "exitCode"), "crashed"),
    "another-source": _broken(("source",), "aws.ec2"),
    "another-detail-type": _broken(("detail-type",), "ECS Container Instance State Change"),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_rejected_without_raising_and_publishes_nothing(bus, lambda_context, event):
    # Given a managed service, so that a parse that got through would publish
    create_service(MANAGED)

    response = ecs.handler(event, lambda_context)

    assert response["status"] == "rejected"
    assert received(bus) == []


class RefusingEvents:
    def put_events(self, Entries):  # boto3's parameter name
        return {"FailedEntryCount": len(Entries), "Entries": [{"ErrorCode": "InternalFailure"} for _ in Entries]}


def test_a_detection_the_bus_refuses_is_raised_so_lambda_retries_it(bus, lambda_context):
    create_service(MANAGED)

    with pytest.raises(PublishError):
        ecs.handler(load_event(APP_EXIT), lambda_context, publisher=EventPublisher(BUS_NAME, client=RefusingEvents()))
