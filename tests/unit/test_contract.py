"""The impairment event contract: severity order, deterministic ids, strict models, JSON Schema."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from jsonschema import Draft4Validator

from core.contract import (
    CLEARED,
    DETECTED,
    EVENT_SOURCE,
    ImpairmentCleared,
    ImpairmentDetected,
    Severity,
    json_schema,
    make_impairment_id,
)
from core.model import ValidationError
from tests.builders import ALARM_ARN, SIGNAL_TIME, impairment

# Step Functions execution names: 1-80 characters, no whitespace, brackets, wildcards,
# punctuation or control characters. Letters, digits, '-' and '_' are always safe.
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


# --- severity -------------------------------------------------------------------------------


def test_severities_sort_by_rank_not_alphabetically():
    # Given severities in an order that sorting by string would keep
    shuffled = [Severity.CRITICAL, Severity.HIGH, Severity.LOW, Severity.MEDIUM]

    # When they are sorted
    ordered = sorted(shuffled)

    # Then the order is low < medium < high < critical
    assert ordered == [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    assert max(shuffled) is Severity.CRITICAL


def test_critical_outranks_high_although_it_sorts_first_as_a_string():
    # Given the two values whose string order is the opposite of their rank
    assert "critical" < "high"

    # Then as severities critical is the greater one, for every comparison operator
    assert Severity.CRITICAL > Severity.HIGH
    assert Severity.CRITICAL >= Severity.HIGH
    assert not Severity.CRITICAL < Severity.HIGH
    assert not Severity.CRITICAL <= Severity.HIGH
    assert Severity.HIGH < Severity.CRITICAL
    assert Severity.MEDIUM <= Severity.MEDIUM


def test_severity_from_a_model_compares_by_rank():
    # Given a severity parsed from JSON, as the recovery workflow receives it
    parsed = ImpairmentDetected.model_validate(impairment(severity=Severity.CRITICAL).model_dump(mode="json"))

    # Then it is a Severity and outranks high
    assert parsed.severity is Severity.CRITICAL
    assert parsed.severity > Severity.HIGH


# --- impairment ids -------------------------------------------------------------------------


def test_the_same_signal_gives_the_same_id():
    # Given one alarm state change delivered twice (EventBridge is at-least-once)
    first = make_impairment_id("web-api", "aws.cloudwatch", ALARM_ARN, SIGNAL_TIME)

    # When the id is computed again from the same signal
    again = make_impairment_id("web-api", "aws.cloudwatch", ALARM_ARN, SIGNAL_TIME)

    # Then both deliveries are the same impairment
    assert first == again


def test_a_new_state_change_of_the_same_alarm_gives_a_new_id():
    # Given two ALARM transitions of the same alarm a few minutes apart
    first = make_impairment_id("web-api", "aws.cloudwatch", ALARM_ARN, SIGNAL_TIME)
    later = make_impairment_id("web-api", "aws.cloudwatch", ALARM_ARN, SIGNAL_TIME + timedelta(minutes=5))

    # Then they are two impairments
    assert first != later


def test_a_different_alarm_at_the_same_time_gives_a_different_id():
    first = make_impairment_id("web-api", "aws.cloudwatch", ALARM_ARN, SIGNAL_TIME)
    other = make_impairment_id("web-api", "aws.cloudwatch", ALARM_ARN + "-2", SIGNAL_TIME)

    assert first != other


@pytest.mark.parametrize(
    "workload",
    ["web-api", "x" * 200, "orders service (prod) / eu-west-1", "支払い", "---", "a.b:c*d?e[f]"],
)
def test_ids_are_valid_execution_names(workload):
    # Given a workload name of any length or alphabet
    # When an id is made for it
    impairment_id = make_impairment_id(workload, "aws.cloudwatch", ALARM_ARN, SIGNAL_TIME)

    # Then the id can name a Step Functions execution and passes the contract's own pattern
    assert len(impairment_id) <= 80
    assert EXECUTION_NAME.match(impairment_id)
    ImpairmentDetected.model_validate({**impairment().model_dump(mode="json"), "impairment_id": impairment_id})


def test_ids_refuse_a_naive_signal_time():
    with pytest.raises(ValueError, match="time zone"):
        make_impairment_id("web-api", "aws.cloudwatch", ALARM_ARN, datetime(2026, 11, 20, 9, 14))


# --- the models -----------------------------------------------------------------------------


def _detected_payload(**changes):
    payload = impairment().model_dump(mode="json")
    payload.update(changes)
    return payload


def test_a_valid_impairment_round_trips_through_json():
    # Given an impairment as the detector builds it
    original = impairment()

    # When it goes over the bus as JSON and is parsed again
    parsed = ImpairmentDetected.model_validate_json(original.model_dump_json())

    # Then nothing is lost
    assert parsed == original
    assert parsed.mttd_seconds == 5.0


def test_naive_detected_at_is_rejected():
    with pytest.raises(ValidationError, match="time zone"):
        ImpairmentDetected.model_validate(_detected_payload(detected_at="2026-11-20T09:14:36"))


def test_naive_signal_time_is_rejected():
    payload = _detected_payload()
    payload["signal"]["signal_time"] = "2026-11-20T09:14:31"

    with pytest.raises(ValidationError, match="time zone"):
        ImpairmentDetected.model_validate(payload)


def test_naive_cleared_at_is_rejected():
    payload = {
        "impairment_id": impairment().impairment_id,
        "workload": "web-api",
        "signal": _detected_payload()["signal"],
        "cleared_at": "2026-11-20T09:19:02",
    }
    with pytest.raises(ValidationError, match="time zone"):
        ImpairmentCleared.model_validate(payload)


@pytest.mark.parametrize("where", ["top", "signal", "resource"])
def test_unknown_fields_are_rejected(where):
    # Given an impairment with a field the contract does not define
    payload = _detected_payload()
    {"top": payload, "signal": payload["signal"], "resource": payload["affected_resources"][0]}[where]["sevrity"] = 1

    # Then it is refused rather than silently dropped
    with pytest.raises(ValidationError, match="sevrity"):
        ImpairmentDetected.model_validate(payload)


def test_an_impairment_without_affected_resources_is_rejected():
    with pytest.raises(ValidationError, match="affected_resources"):
        ImpairmentDetected.model_validate(_detected_payload(affected_resources=[]))


def test_mttd_is_detection_time_minus_signal_time():
    # Given an impairment detected 42.5 s after its alarm fired
    model = impairment(detected_at=SIGNAL_TIME + timedelta(seconds=42.5))

    # Then its MTTD is 42.5 s, whatever time zone the timestamps were written in
    assert model.mttd_seconds == 42.5
    shifted = ImpairmentDetected.model_validate(
        _detected_payload(detected_at=(SIGNAL_TIME + timedelta(seconds=42.5)).astimezone(timezone(timedelta(hours=2))))
    )
    assert shifted.mttd_seconds == 42.5


# --- the published JSON Schema ---------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    schema = json_schema()
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def test_schema_is_draft_04_and_defines_both_events():
    schema = json_schema()

    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert {"ImpairmentDetected", "ImpairmentCleared"} <= set(schema["definitions"])
    assert set(schema["properties"]["detail-type"]["enum"]) == {DETECTED, CLEARED}
    # draft-04 has no $defs: every reference must resolve inside "definitions"
    assert "$defs" not in json.dumps(schema)


def test_a_real_detected_event_validates(validator):
    # Given an event exactly as the publisher puts it on the bus
    event = {"detail-type": DETECTED, "source": EVENT_SOURCE, "detail": json.loads(impairment().model_dump_json())}

    # Then the published schema accepts it
    assert list(validator.iter_errors(event)) == []


def test_a_real_cleared_event_validates(validator):
    cleared = ImpairmentCleared(
        impairment_id=impairment().impairment_id,
        workload="web-api",
        signal=impairment().signal,
        cleared_at=SIGNAL_TIME + timedelta(minutes=5),
    )
    event = {"detail-type": CLEARED, "source": EVENT_SOURCE, "detail": json.loads(cleared.model_dump_json())}

    assert list(validator.iter_errors(event)) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.update(severity="urgent"),
        lambda d: d.update(affected_resources=[]),
        lambda d: d.pop("impairment_id"),
        lambda d: d.update(impairment_id="has spaces and is not a valid execution name"),
        lambda d: d.update(unexpected="field"),
    ],
    ids=["unknown-severity", "no-resources", "no-id", "bad-id", "extra-field"],
)
def test_a_bad_event_is_rejected_by_the_schema(validator, breakage):
    # Given a detail the contract models would refuse
    detail = json.loads(impairment().model_dump_json())
    breakage(detail)
    event = {"detail-type": DETECTED, "source": EVENT_SOURCE, "detail": detail}

    # Then the published schema refuses it too
    assert not validator.is_valid(event)
    with pytest.raises(ValidationError):
        ImpairmentDetected.model_validate(detail)


def test_an_event_from_another_source_is_rejected_by_the_schema(validator):
    event = {"detail-type": DETECTED, "source": "aws.cloudwatch", "detail": json.loads(impairment().model_dump_json())}

    assert not validator.is_valid(event)


def test_severity_compares_with_its_string_value_by_rank():
    # A plan or tag value read as a plain string must not fall back to alphabetical order.
    assert Severity.HIGH < "critical"
    assert not Severity.CRITICAL < "high"
    assert Severity.MEDIUM >= "medium"
