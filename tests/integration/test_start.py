"""Start under moto: one Step Functions execution per impairment, named by its id."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest

from core.contract import CLEARED, DETECTED, ImpairmentCleared
from orchestration import start
from tests.builders import REGION, bus_event, create_state_machine, impairment


@pytest.fixture
def state_machine(store, monkeypatch) -> str:
    arn = create_state_machine()
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return arn


def executions(state_machine_arn: str) -> list[dict]:
    return boto3.client("stepfunctions", region_name=REGION).list_executions(stateMachineArn=state_machine_arn)[
        "executions"
    ]


def test_an_impairment_starts_an_execution_named_by_its_id(state_machine, lambda_context):
    # Given an "Impairment Detected" event from the bus
    model = impairment()

    # When Start receives it
    response = start.handler(bus_event(model.model_dump(mode="json")), lambda_context)

    # Then one execution runs, named by the impairment id, with the impairment as its input
    assert response["status"] == "started"
    (execution,) = executions(state_machine)
    assert execution["name"] == model.impairment_id
    assert execution["executionArn"] == response["execution_arn"]
    described = boto3.client("stepfunctions", region_name=REGION).describe_execution(
        executionArn=response["execution_arn"]
    )
    assert json.loads(described["input"]) == {"impairment": model.model_dump(mode="json")}


def test_a_second_delivery_of_the_same_event_does_not_start_a_second_execution(state_machine, lambda_context):
    # Given the impairment's execution was started
    event = bus_event(impairment().model_dump(mode="json"))
    start.handler(event, lambda_context)

    # When EventBridge delivers the same event again
    start.handler(event, lambda_context)

    # Then there is still exactly one execution
    assert len(executions(state_machine)) == 1


def test_a_first_delivery_records_and_opens_its_windows_in_one_call(
    state_machine, store, lambda_context, dynamodb_calls
):
    model = impairment()

    start.handler(bus_event(model.model_dump(mode="json")), lambda_context)

    assert dynamodb_calls == ["TransactWriteItems"]
    assert store.get_impairment(model.impairment_id)["status"] == "detected"
    key = model.affected_resources[0].key
    window = store.table.get_item(Key={"pk": f"LOCK#{key}", "sk": "CORRELATION"})["Item"]
    assert window["owner"] == model.impairment_id


def test_a_redelivery_once_admitted_does_not_call_step_functions(state_machine, store, lambda_context, monkeypatch):
    # Given the impairment's execution started and Admit recorded it
    model = impairment()
    event = bus_event(model.model_dump(mode="json"))
    start.handler(event, lambda_context)
    store.update_impairment(model.impairment_id, status="admitted", execution_arn="arn:aws:states:x")

    # When EventBridge delivers the event again, Then StartExecution is not called at all
    class NoStepFunctions:
        def start_execution(self, **_: object) -> None:
            raise AssertionError("StartExecution called on a redelivery already started")

    response = start.handler(event, lambda_context, sfn=NoStepFunctions())
    assert response == {"status": "duplicate", "impairment_id": model.impairment_id}
    assert store.get_impairment(model.impairment_id)["status"] == "admitted"


def test_a_redelivery_before_admit_ran_relies_on_step_functions_refusing_a_second(state_machine, lambda_context):
    # Given the execution started but Admit has not recorded it yet: the record says detected
    event = bus_event(impairment().model_dump(mode="json"))
    start.handler(event, lambda_context)

    # When the event is delivered again: Step Functions starts no second (same name, same input)
    start.handler(event, lambda_context)
    assert len(executions(state_machine)) == 1


def test_a_repeat_of_the_same_signal_is_reported_as_a_duplicate(state_machine, lambda_context):
    # Given the impairment's execution was started
    first = impairment()
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)

    # When the detector handles the same alarm state change again (a Lambda retry): same id,
    # later detection time
    repeat = impairment(detected_after=65.0)
    assert repeat.impairment_id == first.impairment_id
    response = start.handler(bus_event(repeat.model_dump(mode="json")), lambda_context)

    # Then no second execution is started, and Start says why
    assert response == {"status": "duplicate", "impairment_id": first.impairment_id}
    assert len(executions(state_machine)) == 1


def test_the_next_occurrence_of_the_alarm_starts_its_own_execution(state_machine, lambda_context):
    first = impairment()
    later = impairment(signal_time=first.signal.signal_time + timedelta(hours=1))

    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    start.handler(bus_event(later.model_dump(mode="json")), lambda_context)

    assert sorted(e["name"] for e in executions(state_machine)) == sorted([first.impairment_id, later.impairment_id])


INVALID = {
    "empty-object": {},
    "a-list": [],
    "unknown-detail-type": bus_event(impairment().model_dump(mode="json"), detail_type="Something Else"),
    "detail-not-an-impairment": bus_event({"impairment_id": "x"}),
    "naive-timestamps": bus_event({**impairment().model_dump(mode="json"), "detected_at": "2026-11-20T09:14:36"}),
    "cleared-detail-as-detected": bus_event(
        {
            "impairment_id": impairment().impairment_id,
            "workload": "web-api",
            "signal": impairment().model_dump(mode="json")["signal"],
            "cleared_at": "2026-11-20T09:20:00Z",
        },
        detail_type=DETECTED,
    ),
}


@pytest.mark.parametrize("event", INVALID.values(), ids=INVALID.keys())
def test_invalid_events_are_rejected_without_raising_and_start_nothing(state_machine, lambda_context, event):
    # When Start receives something that is not a valid impairment event
    response = start.handler(event, lambda_context)

    # Then it rejects it (a retry could not succeed) and starts nothing
    assert response == {"status": "rejected"}
    assert executions(state_machine) == []


def test_a_cleared_event_is_recorded_on_the_impairment_and_starts_nothing(state_machine, store, lambda_context):
    # Given an impairment being recovered
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="recovering")
    cleared = ImpairmentCleared(
        impairment_id=model.impairment_id,
        workload=model.workload,
        signal=model.signal,
        cleared_at=model.detected_at + timedelta(minutes=4),
    )

    # When its alarm's "Impairment Cleared" arrives
    response = start.handler(bus_event(cleared.model_dump(mode="json"), detail_type=CLEARED), lambda_context)

    # Then the record notes when it cleared, and no execution is started for it
    assert response == {"status": "cleared", "recorded": True, "page_resolved": False}  # still recovering
    record = store.get_impairment(model.impairment_id)
    assert record["cleared_at"] == cleared.cleared_at.isoformat()
    assert record["status"] == "recovering"
    assert executions(state_machine) == []
