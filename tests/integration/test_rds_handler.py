"""The RDS detector's Lambda handler under moto: real databases with their tags, a real bus."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import boto3
import pytest

from core.contract import CLEARED, DETECTED, EVENT_SOURCE, ImpairmentCleared, ImpairmentDetected, Severity
from core.errors import PublishError
from core.publisher import EventPublisher
from detectors import rds
from tests.builders import BUS_NAME, REGION, capture_bus, received
from tests.conftest import load_event

FAILURE = "rds-db-instance-event-failover.json"
CLUSTER_STARTED = "rds-db-cluster-event-failover-started.json"
CLUSTER_COMPLETED = "rds-db-cluster-event-failover-completed.json"
MANAGED = {"recovery:managed": "true", "recovery:workload": "checkout"}


def _tags(tags: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in (tags or {}).items()]


def create_instance(tags: dict[str, str] | None, identifier: str = "orders-db") -> str:
    return boto3.client("rds", region_name=REGION).create_db_instance(
        DBInstanceIdentifier=identifier,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="orders",
        MasterUserPassword="not-a-secret-1",  # moto only
        MultiAZ=True,
        Tags=_tags(tags),
    )["DBInstance"]["DBInstanceArn"]


def create_cluster(tags: dict[str, str] | None, identifier: str = "orders-aurora") -> str:
    return boto3.client("rds", region_name=REGION).create_db_cluster(
        DBClusterIdentifier=identifier,
        Engine="aurora-postgresql",
        MasterUsername="orders",
        MasterUserPassword="not-a-secret-1",  # moto only
        Tags=_tags(tags),
    )["DBCluster"]["DBClusterArn"]


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


def test_a_failed_managed_db_instance_puts_one_critical_database_issue_on_the_bus(bus, lambda_context):
    # Given the managed orders-db instance
    arn = create_instance(MANAGED)
    event = load_event(FAILURE)
    assert event["detail"]["SourceArn"] == arn

    # When RDS reports it failed
    response = rds.handler(event, lambda_context)

    # Then one critical database issue about it is on the bus
    assert response["status"] == "published"
    (published,) = received(bus)
    assert (published["detail-type"], published["source"]) == (DETECTED, EVENT_SOURCE)
    impairment = ImpairmentDetected.model_validate(published["detail"])
    assert response["detected"] == [impairment.impairment_id]
    assert impairment.severity is Severity.CRITICAL
    assert impairment.workload == "checkout"
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [("rds:db", "orders-db")]
    assert impairment.scope == {"db_instance": "orders-db"}


def test_a_failover_of_a_managed_aurora_cluster_is_detected(bus, lambda_context):
    create_cluster(MANAGED)

    rds.handler(load_event(CLUSTER_STARTED), lambda_context)

    (published,) = received(bus)
    impairment = ImpairmentDetected.model_validate(published["detail"])
    assert impairment.affected_resources[0].resource_type == "rds:cluster"
    assert impairment.scope == {"db_cluster": "orders-aurora"}


@pytest.mark.parametrize("tags", [None, {"team": "payments"}, {"recovery:managed": "false"}])
def test_a_database_that_did_not_opt_in_puts_nothing_on_the_bus(bus, lambda_context, tags):
    create_instance(tags)

    response = rds.handler(load_event(FAILURE), lambda_context)

    assert response["status"] == "ignored"
    assert received(bus) == []


def test_a_backup_of_a_managed_database_puts_nothing_on_the_bus(bus, lambda_context):
    create_instance(MANAGED)

    response = rds.handler(load_event("rds-db-instance-event-backup.json"), lambda_context)

    assert response["status"] == "ignored"
    assert received(bus) == []


class ListsTheFailoverStart(rds.AwsInventory):
    """The real tags from moto; DescribeEvents as RDS would list the failover's start (moto
    records only the events it generates itself: creation and backups)."""

    def events(self, kind: str, identifier: str, category: str, since: datetime, until: datetime) -> list[dict]:
        listed = super().events(kind, identifier, category, since, until)  # the real call, under moto
        started = load_event(CLUSTER_STARTED)["detail"]
        return [
            *listed,
            {
                "SourceIdentifier": identifier,
                "SourceType": "db-cluster",
                "Message": started["Message"],
                "EventCategories": started["EventCategories"],
                "Date": datetime.fromisoformat(started["Date"]),
                "SourceArn": started["SourceArn"],
            },
        ]


def test_the_completion_of_a_failover_clears_its_detection_on_the_bus(bus, lambda_context):
    # Given a managed cluster whose failover start was detected
    create_cluster(MANAGED)
    detected = rds.handler(load_event(CLUSTER_STARTED), lambda_context)
    inventory = ListsTheFailoverStart(("recovery:managed", "true"))

    # When the failover completes
    cleared = rds.handler(load_event(CLUSTER_COMPLETED), lambda_context, inventory=inventory)

    # Then the bus carries the detection, then its clearing, under one impairment id
    events = received(bus)
    assert [e["detail-type"] for e in events] == [DETECTED, CLEARED]
    assert ImpairmentCleared.model_validate(events[1]["detail"]).impairment_id == detected["detected"][0]
    assert cleared["cleared"] == detected["detected"]


def test_a_completion_whose_start_rds_does_not_list_clears_nothing(bus, lambda_context):
    create_cluster(MANAGED)

    response = rds.handler(load_event(CLUSTER_COMPLETED), lambda_context)

    assert response["status"] == "ignored"
    assert received(bus) == []


def _broken(path: tuple[Any, ...], value: Any = None, delete: bool = False) -> dict[str, Any]:
    event = copy.deepcopy(load_event(FAILURE))
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
    "a-string": "RDS-EVENT-0031",
    "no-detail": _broken(("detail",), delete=True),
    "no-source-arn": _broken(("detail", "SourceArn"), delete=True),
    "no-date": _broken(("detail", "Date"), delete=True),
    "date-without-zone": _broken(("detail", "Date"), "2026-11-22T18:20:40.118"),
    "categories-not-a-list": _broken(("detail", "EventCategories"), "failure"),
    "tags-not-an-object": _broken(("detail", "Tags"), ["recovery:managed"]),
    "another-source": _broken(("source",), "aws.ec2"),
    "snapshot-event": _broken(("detail-type",), "RDS DB Snapshot Event"),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_rejected_without_raising_and_publishes_nothing(bus, lambda_context, event):
    create_instance(MANAGED)

    response = rds.handler(event, lambda_context)

    assert response["status"] == "rejected"
    assert received(bus) == []


class RefusingEvents:
    def put_events(self, Entries):  # boto3's parameter name
        return {"FailedEntryCount": len(Entries), "Entries": [{"ErrorCode": "InternalFailure"} for _ in Entries]}


def test_a_detection_the_bus_refuses_is_raised_so_lambda_retries_it(bus, lambda_context):
    create_instance(MANAGED)

    with pytest.raises(PublishError):
        rds.handler(load_event(FAILURE), lambda_context, publisher=EventPublisher(BUS_NAME, client=RefusingEvents()))
