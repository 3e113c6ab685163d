"""The RDS detector's classification, driven by RDS events in the shape EventBridge delivers them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from jsonschema import Draft4Validator

from core.contract import DETECTED, EVENT_SOURCE, ImpairmentType, Severity, json_schema
from detectors.rds import AwsInventory, RdsEvent, classify
from detectors.resolve import Owner
from tests.builders import MANAGED_TAG
from tests.conftest import load_event

DB_ARN = "arn:aws:rds:us-east-1:123456789012:db:orders-db"
CLUSTER_ARN = "arn:aws:rds:us-east-1:123456789012:cluster:orders-aurora"
FAILURE = "rds-db-instance-event-failover.json"  # the shared sample: RDS-EVENT-0031, category failure
FAILOVER_STARTED = "rds-db-instance-event-failover-started.json"
FAILOVER_COMPLETED = "rds-db-instance-event-failover-completed.json"
CLUSTER_STARTED = "rds-db-cluster-event-failover-started.json"
CLUSTER_COMPLETED = "rds-db-cluster-event-failover-completed.json"


@dataclass
class FakeRds:
    """What the detector would look up: each database's owner, and the events DescribeEvents lists."""

    owners: dict[str, Owner | None] = field(
        default_factory=lambda: {DB_ARN: Owner("checkout"), CLUSTER_ARN: Owner("checkout")}
    )
    listed: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def database_owner(self, source_arn: str, identifier: str) -> Owner | None:
        self.calls.append(("owner", source_arn))
        return self.owners.get(source_arn)

    def events(self, kind: str, identifier: str, category: str, since: datetime, until: datetime) -> list[dict]:
        self.calls.append(("events", kind, identifier, category))
        return [
            e
            for e in self.listed
            if e["SourceIdentifier"] == identifier and category in e["EventCategories"] and since <= e["Date"] <= until
        ]

    def record(self, event: dict[str, Any]) -> None:
        """Remember an EventBridge RDS event as DescribeEvents lists it (no EventID there)."""
        detail = event["detail"]
        self.listed.append(
            {
                "SourceIdentifier": detail["SourceArn"].rsplit(":", 1)[1],
                "SourceType": "db-cluster" if ":cluster:" in detail["SourceArn"] else "db-instance",
                "Message": detail["Message"],
                "EventCategories": detail["EventCategories"],
                "Date": datetime.fromisoformat(detail["Date"]),
                "SourceArn": detail["SourceArn"],
            }
        )


def parse(event: dict[str, Any]) -> RdsEvent:
    return RdsEvent.model_validate(event)


def run(event: dict[str, Any], rds: FakeRds | None = None, now: datetime | None = None):
    parsed = parse(event)
    return classify(parsed, rds or FakeRds(), MANAGED_TAG, now or parsed.detail.Date + timedelta(seconds=2))


def with_detail(name: str, **changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    for key, value in changes.items():
        if value is None:
            event["detail"].pop(key, None)
        else:
            event["detail"][key] = value
    return event


# file -> (severity, affected resource, scope)
DETECTED_EVENTS = {
    FAILURE: (Severity.CRITICAL, ("rds:db", "orders-db"), {"db_instance": "orders-db"}),
    FAILOVER_STARTED: (Severity.HIGH, ("rds:db", "orders-db"), {"db_instance": "orders-db"}),
    "rds-db-instance-event-low-storage.json": (Severity.HIGH, ("rds:db", "orders-db"), {"db_instance": "orders-db"}),
    "rds-db-instance-event-storage-exhausted.json": (
        Severity.CRITICAL,
        ("rds:db", "orders-db"),
        {"db_instance": "orders-db"},
    ),
    "rds-db-instance-event-shutdown.json": (Severity.HIGH, ("rds:db", "orders-db"), {"db_instance": "orders-db"}),
    CLUSTER_STARTED: (Severity.HIGH, ("rds:cluster", "orders-aurora"), {"db_cluster": "orders-aurora"}),
    "rds-db-cluster-event-failover-failed.json": (
        Severity.CRITICAL,
        ("rds:cluster", "orders-aurora"),
        {"db_cluster": "orders-aurora"},
    ),
}


@pytest.mark.parametrize("file", sorted(DETECTED_EVENTS))
def test_impairing_rds_events_are_database_issues_with_severity_by_category(file):
    # Given an RDS event about a managed database
    event = load_event(file)
    severity, resource, scope = DETECTED_EVENTS[file]

    # When it is classified
    findings = run(event)

    # Then one database issue, with the severity its event says, about that database
    (impairment,) = findings.detected
    assert impairment.impairment_type is ImpairmentType.DATABASE_ISSUE
    assert impairment.severity is severity
    assert impairment.workload == "checkout"
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [resource]
    assert impairment.scope == scope
    assert impairment.signal.source == "aws.rds"
    assert impairment.signal.id == event["detail"]["SourceArn"]
    assert impairment.signal.name == event["detail"]["EventID"]
    assert event["detail"]["Message"] in impairment.description
    assert findings.cleared == []
    bus_event = {"detail-type": DETECTED, "source": EVENT_SOURCE, "detail": json.loads(impairment.model_dump_json())}
    assert list(Draft4Validator(json_schema()).iter_errors(bus_event)) == []


NOT_IMPAIRMENTS = {
    "backup": load_event("rds-db-instance-event-backup.json"),
    "stopped-notification": load_event("rds-db-instance-event-stopped-notification.json"),
    "maintenance": with_detail(FAILURE, EventCategories=["maintenance"], EventID="RDS-EVENT-0026"),
    "configuration-change": with_detail(FAILURE, EventCategories=["configuration change"], EventID="RDS-EVENT-0014"),
    "failover-not-attempted": with_detail(FAILOVER_STARTED, EventID="RDS-EVENT-0034"),
    "multi-az-activation": with_detail(FAILOVER_STARTED, EventID="RDS-EVENT-0051"),
    "enhanced-monitoring-failure": with_detail(FAILURE, EventID="RDS-EVENT-0080"),
    "uncategorized": with_detail(FAILURE, EventCategories=[], EventID="RDS-EVENT-0999"),
}


@pytest.mark.parametrize("event", NOT_IMPAIRMENTS.values(), ids=NOT_IMPAIRMENTS.keys())
def test_events_that_are_not_impairments_emit_nothing_and_cost_no_lookup(event):
    rds = FakeRds()

    findings = run(event, rds)

    assert findings.detected == [] and findings.cleared == []
    assert "not an impairment" in findings.reason
    assert rds.calls == []


def test_an_event_in_several_categories_takes_the_most_severe():
    event = with_detail(FAILOVER_STARTED, EventID="RDS-EVENT-0999", EventCategories=["notification", "failure"])

    assert run(event).detected[0].severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("started", "completed", "arn"),
    [(FAILOVER_STARTED, FAILOVER_COMPLETED, DB_ARN), (CLUSTER_STARTED, CLUSTER_COMPLETED, CLUSTER_ARN)],
    ids=["multi-az-instance", "aurora-cluster"],
)
def test_a_completed_failover_clears_the_impairment_its_start_raised(started, completed, arn):
    # Given the failover start was detected, and RDS lists that start among the database's events
    rds = FakeRds()
    detected = run(load_event(started), rds).detected[0]
    rds.record(load_event(started))

    # When the failover completes
    findings = run(load_event(completed), rds)

    # Then "Impairment Cleared" carries the id of the detection, and when it cleared
    assert findings.detected == []
    (cleared,) = findings.cleared
    assert cleared.impairment_id == detected.impairment_id
    assert cleared.workload == "checkout"
    assert cleared.signal.id == arn
    assert cleared.signal.signal_time == detected.signal.signal_time
    assert cleared.cleared_at == parse(load_event(completed)).detail.Date


def test_the_latest_start_before_the_completion_is_the_one_cleared():
    # Given two failovers of the database: an earlier one, and the one now completing
    rds = FakeRds()
    earlier = with_detail(FAILOVER_STARTED, Date="2026-11-22T14:02:00.000Z")
    later = load_event(FAILOVER_STARTED)
    after = with_detail(FAILOVER_STARTED, Date="2026-11-22T18:30:00.000Z")  # after the completion
    for event in (earlier, later, after):
        rds.record(event)
    rds.record(load_event(FAILOVER_COMPLETED))  # completions are no starts

    (cleared,) = run(load_event(FAILOVER_COMPLETED), rds).cleared

    assert cleared.impairment_id == run(later).detected[0].impairment_id


@pytest.mark.parametrize(
    "listed",
    [
        [],
        [with_detail(FAILOVER_STARTED, Date="2026-11-22T09:00:00.000Z")],  # older than CLEARING_LOOKBACK
        [with_detail(FAILOVER_STARTED, SourceArn=DB_ARN.replace("orders-db", "orders-db-2"))],
        [with_detail(FAILOVER_STARTED, Message="A Multi-AZ failover has completed.")],
    ],
    ids=["no-start", "start-too-old", "start-of-another-database", "only-a-completion"],
)
def test_a_completion_without_its_start_clears_nothing(listed):
    rds = FakeRds()
    for event in listed:
        rds.record(event)

    findings = run(load_event(FAILOVER_COMPLETED), rds)

    assert findings.detected == [] and findings.cleared == []
    assert "no failover start" in findings.reason


def test_a_restart_clears_a_shutdown_and_a_plain_reboot_clears_nothing():
    restarted = with_detail(
        "rds-db-instance-event-shutdown.json",
        EventID="RDS-EVENT-0006",
        Message="DB instance restarted.",
        Date="2026-11-22T20:12:10.500Z",
    )
    rds = FakeRds()
    assert run(restarted, rds).cleared == []  # a reboot: no shutdown before it

    rds.record(load_event("rds-db-instance-event-shutdown.json"))
    (cleared,) = run(restarted, rds).cleared
    assert cleared.impairment_id == run(load_event("rds-db-instance-event-shutdown.json")).detected[0].impairment_id


def test_an_event_without_an_event_id_is_read_by_its_message():
    # Given cluster events as they may arrive without an EventID
    rds = FakeRds()
    started = with_detail(CLUSTER_STARTED, EventID=None)
    completed = with_detail(CLUSTER_COMPLETED, EventID=None)

    detected = run(started, rds).detected[0]
    rds.record(started)
    (cleared,) = run(completed, rds).cleared

    assert detected.severity is Severity.HIGH
    assert cleared.impairment_id == detected.impairment_id


def test_a_database_that_did_not_opt_in_is_ignored():
    rds = FakeRds(owners={DB_ARN: None})

    findings = run(load_event(FAILURE), rds)

    assert findings.detected == []
    assert rds.calls == [("owner", DB_ARN)]


def test_tags_carried_by_the_event_are_used_without_a_lookup():
    # Given RDS put the database's tags in the event
    managed = with_detail(FAILURE, Tags={"recovery:managed": "true", "recovery:workload": "orders"})
    unmanaged = with_detail(FAILURE, Tags={"team": "payments"})
    rds = FakeRds()

    # Then they decide, and nothing is looked up
    assert run(managed, rds).detected[0].workload == "orders"
    assert run(unmanaged, rds).detected == []
    assert rds.calls == []


def test_an_event_about_something_else_than_a_db_instance_or_cluster_is_ignored():
    event = with_detail(FAILURE, SourceArn="arn:aws:rds:us-east-1:123456789012:snapshot:rds:orders-db-2026-11-22")

    assert run(event).detected == []


def test_id_is_deterministic_and_mttd_counts_from_the_event_date():
    event = load_event(FAILURE)
    date = parse(event).detail.Date

    first = run(event, now=date + timedelta(seconds=6)).detected[0]
    again = run(event, now=date + timedelta(minutes=3)).detected[0]
    later = run(with_detail(FAILURE, Date="2026-11-22T18:40:00.000Z")).detected[0]

    assert first.impairment_id == again.impairment_id != later.impairment_id
    assert first.signal.signal_time == date
    assert first.mttd_seconds == 6.0


# --- the real API shapes --------------------------------------------------------------------


def test_describe_events_is_asked_for_the_database_category_and_window():
    import boto3

    client = boto3.client("rds", region_name="us-east-1")
    since, until = (
        datetime.fromisoformat("2026-11-22T12:21:31+00:00"),
        datetime.fromisoformat("2026-11-22T18:21:31+00:00"),
    )
    listed = {
        "SourceIdentifier": "orders-aurora",
        "SourceType": "db-cluster",
        "Message": "Started cross AZ failover to DB instance: orders-aurora-2",
        "EventCategories": ["failover"],
        "Date": until - timedelta(minutes=1),
        "SourceArn": CLUSTER_ARN,
    }
    with Stubber(client) as stub:
        stub.add_response(
            "describe_events",
            {"Events": [listed]},
            {
                "SourceIdentifier": "orders-aurora",
                "SourceType": "db-cluster",
                "StartTime": since,
                "EndTime": until,
                "EventCategories": ["failover"],
            },
        )
        events = AwsInventory(MANAGED_TAG, client=client).events("cluster", "orders-aurora", "failover", since, until)

    assert events == [listed]


def test_a_deleted_database_has_no_owner():
    import boto3

    client = boto3.client("rds", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("list_tags_for_resource", "DBInstanceNotFound", http_status_code=404)
        assert AwsInventory(MANAGED_TAG, client=client).database_owner(DB_ARN, "orders-db") is None
