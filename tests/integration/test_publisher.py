"""EventPublisher: every event reaches the bus in batches of 10, and a partial failure is raised."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.contract import DETECTED, EVENT_SOURCE, ImpairmentDetected
from core.errors import PermanentError, PublishError, TransientError
from core.publisher import EventPublisher
from tests.builders import BUS_NAME, SIGNAL_TIME, capture_bus, impairment, received


def impairments(count: int) -> list[ImpairmentDetected]:
    """Distinct impairments (one per alarm state change a minute apart)."""
    return [impairment(signal_time=SIGNAL_TIME + timedelta(minutes=n)) for n in range(count)]


class FakeEvents:
    """An EventBridge client that records each PutEvents call and fails the entries it is told to."""

    def __init__(self, fail: dict[int, str] | None = None, raises: Exception | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail or {}  # position across all calls -> error code
        self.raises = raises

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # boto3's name
        if self.raises:
            raise self.raises
        offset = sum(len(c) for c in self.calls)
        self.calls.append(Entries)
        results = []
        for position in range(offset, offset + len(Entries)):
            if position in self.fail:
                results.append({"ErrorCode": self.fail[position], "ErrorMessage": f"entry {position} refused"})
            else:
                results.append({"EventId": f"event-{position}"})
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}


def test_events_are_put_in_batches_of_ten_with_the_contract_envelope():
    # Given 23 impairments to publish
    client = FakeEvents()
    details = impairments(23)

    # When they are published
    count = EventPublisher(BUS_NAME, client=client).publish(DETECTED, details)

    # Then PutEvents is called with at most 10 entries a call, each on the bus with the contract's
    # source and detail-type, in order, and nothing is left out
    assert count == 23
    assert [len(call) for call in client.calls] == [10, 10, 3]
    entries = [entry for call in client.calls for entry in call]
    assert {(e["EventBusName"], e["Source"], e["DetailType"]) for e in entries} == {(BUS_NAME, EVENT_SOURCE, DETECTED)}
    assert [json.loads(e["Detail"])["impairment_id"] for e in entries] == [d.impairment_id for d in details]


def test_failed_entries_raise_publish_error_listing_each_one():
    # Given PutEvents accepts most entries but refuses the 3rd and the 12th
    client = FakeEvents(fail={2: "InternalFailure", 11: "ThrottlingException"})
    details = impairments(12)

    # When they are published
    with pytest.raises(PublishError) as caught:
        EventPublisher(BUS_NAME, client=client).publish(DETECTED, details)

    # Then the error lists exactly the refused events, with their codes, after trying every batch
    failed = caught.value.details["failed"]
    assert [(json.loads(f["detail"])["impairment_id"], f["code"]) for f in failed] == [
        (details[2].impairment_id, "InternalFailure"),
        (details[11].impairment_id, "ThrottlingException"),
    ]
    assert failed[0]["message"] == "entry 2 refused"
    assert "2 of 12" in str(caught.value)
    assert len(client.calls) == 2


def test_throttled_put_events_is_transient():
    throttled = ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "PutEvents",
    )

    with pytest.raises(TransientError, match="events:PutEvents"):
        EventPublisher(BUS_NAME, client=FakeEvents(raises=throttled)).publish(DETECTED, impairments(1))


def test_a_missing_bus_is_permanent(mocked_aws):
    # Given no bus of that name exists: a deployment error, not something to retry
    with pytest.raises(PermanentError) as caught:
        EventPublisher("no-such-bus").publish(DETECTED, impairments(1))

    assert not isinstance(caught.value, TransientError)


def test_every_event_arrives_on_a_real_bus(mocked_aws):
    # Given the bus with a rule copying its impairment events to a queue
    queue = capture_bus(BUS_NAME)
    details = impairments(12)

    # When 12 events are published (two batches)
    EventPublisher(BUS_NAME).publish(DETECTED, details)

    # Then all 12 arrive, each one parseable back into the contract model
    events = received(queue)
    assert sorted(e["detail"]["impairment_id"] for e in events) == sorted(d.impairment_id for d in details)
    assert all(ImpairmentDetected.model_validate(e["detail"]) for e in events)
