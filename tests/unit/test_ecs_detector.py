"""The ECS detector's classification, driven by task state changes in the shape ECS sends them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft4Validator

from core.contract import DETECTED, EVENT_SOURCE, ImpairmentType, Severity, json_schema
from detectors.ecs import TaskStateChangeEvent, classify
from detectors.resolve import Owner
from tests.conftest import load_event

SERVICE_ARN = "arn:aws:ecs:us-east-1:123456789012:service/checkout/checkout-api"
SHARED_SAMPLE = "ecs-task-state-change-stopped.json"  # an essential container exited UNHEALTHY (137)


@dataclass
class FakeServices:
    """The services the detector would look up: service ARN -> its owner (None: not managed)."""

    owners: dict[str, Owner | None] = field(default_factory=lambda: {SERVICE_ARN: Owner("checkout")})
    calls: list[str] = field(default_factory=list)

    def service_owner(self, service_arn: str, service: str) -> Owner | None:
        self.calls.append(service_arn)
        return self.owners.get(service_arn)


def parse(event: dict[str, Any]) -> TaskStateChangeEvent:
    return TaskStateChangeEvent.model_validate(event)


def run(event: dict[str, Any], services: FakeServices | None = None, now: datetime | None = None):
    parsed = parse(event)
    return classify(parsed, services or FakeServices(), now or parsed.time + timedelta(seconds=3))


def affected(findings) -> list[tuple[str, str]]:
    return [(r.resource_type, r.resource_id) for r in findings.detected[0].affected_resources]


# file -> (impairment type, exit code in the metrics or None)
FAILURES = {
    SHARED_SAMPLE: (ImpairmentType.SERVICE_DEGRADATION, 137),
    "ecs-task-stopped-app-exit.json": (ImpairmentType.APPLICATION_ERROR, 1),
    "ecs-task-stopped-container-health-check.json": (ImpairmentType.SERVICE_DEGRADATION, None),
    "ecs-task-stopped-elb-health-check.json": (ImpairmentType.SERVICE_DEGRADATION, None),
    "ecs-task-stopped-failed-to-start.json": (ImpairmentType.SERVICE_DEGRADATION, None),
    "ecs-task-stopped-out-of-memory.json": (ImpairmentType.RESOURCE_EXHAUSTION, 137),
}

NOT_FAILURES = {
    "ecs-task-stopped-deployment.json": "stopped on purpose",
    "ecs-task-stopped-by-user.json": "UserInitiated",
    "ecs-task-stopped-spot-interruption.json": "SpotInterruption",
    "ecs-task-stopped-standalone.json": "task of no service",
    "ecs-task-running.json": "not STOPPED",
}


@pytest.mark.parametrize("file", sorted(FAILURES))
def test_a_failed_task_of_a_managed_service_is_an_impairment_of_the_service(file):
    # Given a task of the managed checkout-api service that stopped because it failed
    event = load_event(file)
    impairment_type, exit_code = FAILURES[file]

    # When it is classified
    findings = run(event)

    # Then one impairment of the expected type is about the service and the task, in its scope
    (impairment,) = findings.detected
    assert impairment.impairment_type is impairment_type
    assert impairment.severity is Severity.HIGH
    assert impairment.workload == "checkout"
    assert affected(findings) == [("ecs:service", SERVICE_ARN), ("ecs:task", event["detail"]["taskArn"])]
    assert impairment.scope == {"ecs_cluster": "checkout", "ecs_service": "checkout-api"}
    assert impairment.signal.source == "aws.ecs"
    assert impairment.signal.id == event["detail"]["taskArn"]
    assert impairment.metrics == ({"exit_code": float(exit_code)} if exit_code is not None else {})
    assert findings.cleared == []
    bus_event = {"detail-type": DETECTED, "source": EVENT_SOURCE, "detail": json.loads(impairment.model_dump_json())}
    assert list(Draft4Validator(json_schema()).iter_errors(bus_event)) == []


@pytest.mark.parametrize("file", sorted(NOT_FAILURES))
def test_tasks_stopped_on_purpose_are_not_impairments_and_cost_no_lookup(file):
    # Given a task the scheduler, a person or AWS stopped on purpose (or one still running)
    services = FakeServices()

    # When it is classified
    findings = run(load_event(file), services)

    # Then nothing is emitted, the reason says why, and no service was looked up
    assert findings.detected == [] and findings.cleared == []
    assert NOT_FAILURES[file] in findings.reason
    assert services.calls == []


def test_the_application_exit_code_wins_over_the_sidecars_the_stop_killed():
    # Given the app exited with 1 and ECS then stopped its log router (143)
    findings = run(load_event("ecs-task-stopped-app-exit.json"))

    # Then it is the application's error, naming the app container
    impairment = findings.detected[0]
    assert impairment.impairment_type is ImpairmentType.APPLICATION_ERROR
    assert "container api exited with 1" in impairment.description


def test_an_essential_container_that_exited_cleanly_is_not_an_impairment():
    event = copy.deepcopy(load_event("ecs-task-stopped-app-exit.json"))
    for container in event["detail"]["containers"]:
        container["exitCode"] = 0

    findings = run(event)

    assert findings.detected == []
    assert "exited cleanly" in findings.reason


def test_a_task_of_an_unmanaged_service_is_ignored():
    services = FakeServices(owners={SERVICE_ARN: None})

    findings = run(load_event("ecs-task-stopped-app-exit.json"), services)

    assert findings.detected == []
    assert services.calls == [SERVICE_ARN]  # the service ARN built from the cluster and the group


def test_mttd_counts_from_when_the_task_began_stopping():
    # Given ECS began stopping the task at T (stoppingAt) and reported it STOPPED later
    event = load_event(SHARED_SAMPLE)
    stopping = datetime.fromisoformat(event["detail"]["stoppingAt"])

    impairment = run(event, now=stopping + timedelta(seconds=9)).detected[0]

    assert impairment.signal.signal_time == stopping
    assert impairment.mttd_seconds == 9.0


def test_a_task_that_never_began_stopping_counts_from_when_it_stopped():
    event = load_event("ecs-task-stopped-failed-to-start.json")
    assert "stoppingAt" not in event["detail"]

    impairment = run(event).detected[0]

    assert impairment.signal.signal_time == datetime.fromisoformat(event["detail"]["stoppedAt"])


def test_redelivery_is_the_same_impairment_and_another_task_is_another():
    event = load_event(SHARED_SAMPLE)
    other = copy.deepcopy(event)
    other["detail"]["taskArn"] = other["detail"]["taskArn"][:-4] + "ffff"

    first = run(event).detected[0]
    again = run(event, now=parse(event).time + timedelta(minutes=2)).detected[0]
    second = run(other).detected[0]

    assert first.impairment_id == again.impairment_id
    assert second.impairment_id != first.impairment_id
    # and both are about the same service, so the recovery side correlates them
    assert first.affected_resources[0] == second.affected_resources[0]


def test_an_event_from_before_stop_codes_is_read_by_its_reason():
    event = copy.deepcopy(load_event("ecs-task-stopped-app-exit.json"))
    del event["detail"]["stopCode"]

    assert run(event).detected[0].impairment_type is ImpairmentType.APPLICATION_ERROR


def test_the_task_time_without_a_zone_does_not_parse():
    # Timestamps without a zone are ambiguous: the event is malformed, not misread
    event = copy.deepcopy(load_event(SHARED_SAMPLE))
    event["detail"]["stoppingAt"] = "2026-11-21T16:45:01.372"

    with pytest.raises(ValueError):
        parse(event)
