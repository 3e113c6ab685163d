"""What the functions tell CloudWatch: EMF metrics with low-cardinality dimensions, logs correlated
by impairment id, and practice drills counted apart from real impairments."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from actions.base import Action, ActionInput, ActionParams, Context, run
from core.contract import ImpairmentDetected, ImpairmentType, Severity
from core.entry import correlation_id_of
from core.errors import ActionRefused
from core.observability import logger
from detectors import alarm
from orchestration import finalize
from tests.builders import FakeInventory, RecordingPublisher, action_event, alarm_tags, bus_event, impairment
from tests.conftest import load_event
from tests.emf import datapoints, named

STATUS_CHECK = "cloudwatch-alarm-status-check-instance.json"
STATUS_CHECK_ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-api-i-0abc123def4567890-status-check"


@pytest.fixture
def detector_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_BUS_NAME", "recovery-test-bus")


def _status_check_alarm(reason: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event(STATUS_CHECK))
    if reason is not None:
        event["detail"]["state"]["reason"] = reason
    return event


def _detect(event: dict[str, Any], lambda_context: Any) -> tuple[dict[str, Any], ImpairmentDetected]:
    inventory = FakeInventory(
        tags={STATUS_CHECK_ARN: alarm_tags(impairment_type="instance_failure", severity="critical")},
        owners={"i-0abc123def4567890": "web-api"},  # the instance is in web-api's group
    )
    publisher = RecordingPublisher()
    response = alarm.handler(event, lambda_context, inventory=inventory, publisher=publisher)
    assert response["status"] == "published"
    (_, (model,)) = publisher.published[0]
    return response, model


@pytest.mark.parametrize(
    ("tags", "state"),
    [
        (alarm_tags(), "INSUFFICIENT_DATA"),  # missing data is no evidence of failure
        ({"team": "payments"}, "ALARM"),  # an alarm that did not opt in
        ({"recovery:managed": "true"}, "ALARM"),  # managed, but names no workload
    ],
    ids=["insufficient-data", "unmanaged", "no-workload"],
)
def test_every_alarm_the_detector_ignores_is_counted_as_an_ignored_signal(
    tags, state, detector_env, lambda_context, capsys
):
    # Given an alarm state change that is not an impairment of ours
    event = _status_check_alarm()
    event["detail"]["state"]["value"] = state
    inventory = FakeInventory(tags={STATUS_CHECK_ARN: tags}, owners={"i-0abc123def4567890": "web-api"})
    publisher = RecordingPublisher()

    # When it reaches the detector
    response = alarm.handler(event, lambda_context, inventory=inventory, publisher=publisher)

    # Then nothing is published, and it is counted as SignalsIgnored, as the other detectors count
    assert response["status"] == "ignored"
    assert publisher.published == []
    assert [p.value for p in named(datapoints(capsys.readouterr().out), "SignalsIgnored")] == [1.0]


def test_an_alarm_refused_for_its_workload_tag_is_counted_by_reason(detector_env, lambda_context, capsys):
    # Given an alarm tagged for orders about an instance of web-api's group
    inventory = FakeInventory(
        tags={STATUS_CHECK_ARN: alarm_tags("orders", impairment_type="instance_failure")},
        owners={"i-0abc123def4567890": "web-api"},
    )
    publisher = RecordingPublisher()

    response = alarm.handler(_status_check_alarm(), lambda_context, inventory=inventory, publisher=publisher)

    # Then nothing is published; SignalsRefused counts it, in all and by reason; not as ignored
    assert response["status"] == "refused"
    assert response["refusal"] == "workload_mismatch"
    assert publisher.published == []
    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "SignalsRefused")] == [1.0]
    assert [p.value for p in named(points, "SignalsRefused", reason="workload_mismatch")] == [1.0]
    assert named(points, "SignalsIgnored") == []


# --- detection ------------------------------------------------------------------------------


def test_a_detection_is_counted_by_type_and_severity_with_its_mttd(detector_env, lambda_context, capsys):
    # Given a managed status-check alarm tagged instance_failure / critical
    # When its ALARM state change reaches the detector
    response, model = _detect(_status_check_alarm(), lambda_context)

    # Then one EMF datapoint counts it by type and severity, and the flushed document has the
    # total and the MTTD, with no other dimension than the service
    points = datapoints(capsys.readouterr().out)
    by_type = named(points, "ImpairmentsDetected", impairment_type="instance_failure", severity="critical")
    assert [p.value for p in by_type] == [1.0]
    assert [p.value for p in named(points, "ImpairmentsDetected")] == [1.0]
    assert [p.value for p in named(points, "MTTD")] == [pytest.approx(model.mttd_seconds)]
    assert named(points, "MTTD")[0].unit == "Seconds"
    assert not [p for p in points if p.name.startswith("Drill")]
    # No id is ever a dimension (each value would be a metric of its own)
    (impairment_id,) = response["detected"]
    assert all(impairment_id not in p.dimensions.values() for p in points)
    assert {p.namespace for p in points} == {"ImpairmentRecovery"}
    # And the invocation's logs are correlated by the impairment id
    assert logger.get_correlation_id() == impairment_id
    assert model.drill is False


@pytest.mark.parametrize(
    "reason",
    [
        "[practice drill] scheduled drill web-api-weekly",
        "recoveryctl drill: instance-failure by alice",
    ],
)
def test_a_practice_drill_is_marked_and_counted_apart(reason, detector_env, lambda_context, capsys):
    # Given an alarm set to ALARM by a practice drill (the state reason says so)
    # When the detector sees it
    _, model = _detect(_status_check_alarm(reason), lambda_context)

    # Then the impairment is a drill, recovered like any other, but not counted as a real one
    assert model.drill is True
    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "DrillsDetected")] == [1.0]
    assert len(named(points, "DrillMTTD")) == 1
    assert not [p for p in points if p.name in ("ImpairmentsDetected", "MTTD")]


@pytest.mark.parametrize(
    ("reason", "drill"),
    [
        ("[practice drill] x", True),
        ("  recoveryctl drill", True),
        ("Threshold Crossed: 1 datapoint [practice drill]", False),
        ("Practice drill", False),
        ("", False),
    ],
)
def test_only_a_reason_that_starts_with_a_drill_prefix_is_a_drill(reason, drill):
    assert alarm.is_drill(reason) is drill


# --- correlation ----------------------------------------------------------------------------


def test_every_handler_shape_has_its_correlation_id():
    model = impairment()
    # A state machine task (orchestration, action, rollback)
    assert correlation_id_of(action_event(model, "replace_instance")) == model.impairment_id
    # An impairment event on the recovery bus (the start function)
    assert correlation_id_of(bus_event(model.model_dump(mode="json"))) == model.impairment_id
    # An AWS event at a detector: its event id, until the detector has found the impairment
    aws_event = load_event(STATUS_CHECK)
    assert correlation_id_of(aws_event) == aws_event["id"]
    # Anything else: none
    assert correlation_id_of({"impairment": {"impairment_id": ""}}) is None
    assert correlation_id_of(["not", "an", "event"]) is None


# --- actions --------------------------------------------------------------------------------


class MemoryStore:
    def __init__(self) -> None:
        self.actions: dict[tuple[str, int, str], dict[str, Any]] = {}

    def get_action(self, impairment_id: str, index: int, phase: str) -> dict[str, Any] | None:
        return self.actions.get((impairment_id, index, phase))

    def put_action(self, impairment_id: str, index: int, phase: str, record: dict[str, Any]) -> None:
        self.actions[(impairment_id, index, phase)] = record

    def put_first_action(self, impairment_id: str, index: int, phase: str, record: dict[str, Any]) -> Any:
        found = self.actions.get((impairment_id, index, phase))
        if found is None:
            self.put_action(impairment_id, index, phase, record)
        return found


def _spec(apply: Any) -> Action:
    return Action(
        name="scale_out",
        params=ActionParams,
        apply=apply,
        rollback=lambda ctx: ctx.result("rollback", "changed", ["g"]),
    )


def _changed(ctx: Context) -> Any:
    ctx.record_before({"desired": 2})
    return ctx.result("apply", "changed", ["web-api-asg"], {"desired": 2}, {"desired": 3})


def test_an_action_step_counts_its_success_and_duration_by_action_and_phase(capsys):
    # Given a step that changes something
    event = action_event(impairment(), "scale_out")
    # When it runs, apply then rollback
    run(_spec(_changed), "apply", event, MemoryStore(), ("recovery:managed", "true"))
    run(_spec(_changed), "rollback", event, MemoryStore(), ("recovery:managed", "true"))

    # Then each phase counts one success and one duration, dimensioned by action and phase only
    points = datapoints(capsys.readouterr().out)
    for phase in ("apply", "rollback"):
        assert [p.value for p in named(points, "ActionSucceeded", action="scale_out", phase=phase)] == [1.0]
        (duration,) = named(points, "ActionDuration", action="scale_out", phase=phase)
        assert duration.unit == "Milliseconds" and duration.value >= 0
    assert not [p for p in points if p.name == "ActionFailed"]


def test_a_failed_action_step_counts_a_failure_and_a_replayed_step_counts_nothing(capsys):
    def refuse(ctx: Context) -> Any:
        raise ActionRefused("the group is not managed")

    store = MemoryStore()
    event = action_event(impairment(), "scale_out")
    with pytest.raises(ActionRefused):
        run(_spec(refuse), "apply", event, store, ("recovery:managed", "true"))
    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "ActionFailed", action="scale_out", phase="apply")] == [1.0]
    assert len(named(points, "ActionDuration", action="scale_out", phase="apply")) == 1
    assert not [p for p in points if p.name == "ActionSucceeded"]

    # A step already done (a retry after the result was recorded) is not counted twice
    done = MemoryStore()
    run(_spec(_changed), "apply", event, done, ("recovery:managed", "true"))
    capsys.readouterr()
    run(_spec(_changed), "apply", event, done, ("recovery:managed", "true"))
    assert datapoints(capsys.readouterr().out) == []


def test_a_dry_run_step_is_not_counted_as_an_action_that_succeeded(capsys):
    event = {**action_event(impairment(), "scale_out"), "dry_run": True}
    ActionInput.model_validate(event)  # the shape the state machine passes
    run(_spec(_changed), "apply", event, MemoryStore(), ("recovery:managed", "true"))
    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "ActionDryRuns", action="scale_out", phase="apply")] == [1.0]
    assert not [p for p in points if p.name in ("ActionSucceeded", "ActionDuration")]


# --- finalize -------------------------------------------------------------------------------


class RecordStore:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.history = self  # the flapping history's notes (core/history.py): none kept here

    def recovered_items(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []

    def update_impairment(self, impairment_id: str, **fields: Any) -> None:
        self.updates.append(fields)

    def release_locks(self, impairment_id: str, keys: list[str]) -> None:
        pass

    def finish(self, impairment_id: str, keys: list[str], budgets: list[str], **fields: Any) -> None:
        self.updates.append(fields)


@pytest.mark.parametrize("drill", [False, True])
def test_a_verified_recovery_counts_a_success_with_its_mttr(drill, monkeypatch, lambda_context, capsys):
    monkeypatch.setenv("TABLE_NAME", "recovery-test")
    model = impairment(impairment_type=ImpairmentType.DATABASE_ISSUE, severity=Severity.LOW)
    model = model.model_copy(update={"drill": drill})
    event = {"impairment": model.model_dump(mode="json"), "plan": {"name": "p", "steps": []}}

    result = finalize.handler(event, lambda_context, store=RecordStore())

    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "RecoveriesSucceeded")] == [1.0]
    assert [p.value for p in named(points, "RecoveriesSucceeded", impairment_type="database_issue")] == [1.0]
    mttr, other = ("DrillMTTR", "MTTR") if drill else ("MTTR", "DrillMTTR")
    assert [p.value for p in named(points, mttr)] == [pytest.approx(result["mttr_seconds"])]
    assert not [p for p in points if p.name == other]
    assert logger.get_correlation_id() == model.impairment_id
