"""The action runner's audit record under moto: one conditional put where a read and a write were
two, and a retry that still finds and resumes from its earlier attempt (actions/base.py)."""

from __future__ import annotations

from typing import Any

import pytest

from actions.base import Action, ActionParams, Context, run
from core.errors import ActionRefused, TransientError
from core.observability import metrics
from tests.builders import MANAGED_TAG, action_event, impairment


class Counted:
    """A pretend action that records its state before, then makes one change (counted)."""

    def __init__(self, fail_before_recording: Exception | None = None) -> None:
        self.changes = 0
        self.befores_given: list[Any] = []
        self.fail_before_recording = fail_before_recording

    def apply(self, ctx: Context) -> Any:
        self.befores_given.append(ctx.before)
        before = ctx.before
        if before is None:
            if self.fail_before_recording is not None:
                raise self.fail_before_recording
            before = {"desired": 2 + self.changes}  # what it reads: the change shows in it
            ctx.record_before(before)
        self.changes += 1
        return ctx.result("apply", "changed", ["web-api-asg"], before, {"desired": 3})


def run_step(action: Counted, model: Any, store: Any) -> dict[str, Any]:
    spec = Action(name="scale_out", params=ActionParams, apply=action.apply, rollback=action.apply)
    try:
        return run(spec, "apply", action_event(model, "scale_out"), store, MANAGED_TAG)
    finally:
        metrics.clear_metrics()


def test_a_first_attempt_writes_its_record_twice_and_reads_nothing(store, dynamodb_calls):
    # Given a step that never ran
    model = impairment()

    # When it runs
    result = run_step(Counted(), model, store)

    # Then it wrote "started" (conditional on no record) and "done", and read nothing
    assert dynamodb_calls == ["PutItem", "PutItem"]
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "done" and record["before"] == {"desired": 2} == result["before"]


def test_a_retry_of_a_done_step_returns_its_recorded_result_without_changing_again(store):
    # Given a step that finished
    model = impairment()
    action = Counted()
    first = run_step(action, model, store)

    # When it is run again (a retry after its result was lost)
    again = run_step(action, model, store)

    # Then the recorded result comes back and nothing was changed a second time
    assert again == first
    assert action.changes == 1


def test_a_retry_of_a_started_step_resumes_from_the_state_it_recorded(store):
    # Given an earlier attempt recorded its state before and died
    model = impairment()
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": {"desired": 7}})
    action = Counted()

    # When the step runs again
    result = run_step(action, model, store)

    # Then it learned of the attempt at its first write and ran from the recorded state
    assert action.befores_given == [None, {"desired": 7}]
    assert result["before"] == {"desired": 7}
    assert store.get_action(model.impairment_id, 0, "apply")["before"] == {"desired": 7}


def test_a_transient_error_before_the_first_write_still_resumes_an_earlier_attempt(store):
    # Given an earlier attempt recorded its state before, and what the step reads first now fails
    # transiently (the earlier attempt's change is under way)
    model = impairment()
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": {"desired": 7}})
    action = Counted(fail_before_recording=TransientError("the instance is stopping"))

    # When the step runs again
    result = run_step(action, model, store)

    # Then the runner looked its record up and resumed from it, as if it had read it first
    assert result["before"] == {"desired": 7}
    assert action.changes == 1


def test_a_refusal_before_the_first_write_keeps_an_earlier_attempts_state_before(store):
    # Given an earlier attempt recorded its state before; now the step refuses before recording
    # anything (what it reads no longer qualifies) and would refuse from the record too
    model = impairment()
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "before": {"desired": 7}})

    class Refuses(Counted):
        def apply(self, ctx: Context) -> Any:
            raise ActionRefused("no longer qualifies")

    # When the step runs again
    with pytest.raises(ActionRefused):
        run_step(Refuses(), model, store)

    # Then its record ends failed with the earlier state before kept, for the rollback
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "failed" and record["before"] == {"desired": 7}


def test_a_first_transient_failure_with_no_earlier_attempt_is_raised_for_the_retry(store, dynamodb_calls):
    # Given a step that never ran, whose first read fails transiently
    model = impairment()
    action = Counted(fail_before_recording=TransientError("throttled"))

    # When it runs, the error goes to the state machine (its retry), having written nothing
    with pytest.raises(TransientError):
        run_step(action, model, store)
    assert store.get_action(model.impairment_id, 0, "apply") is None


class WaitsOnce(Counted):
    """Records its state before, then waits once (a transient error after the record), then changes."""

    def apply(self, ctx: Context) -> Any:
        self.befores_given.append(ctx.before)
        before = ctx.before
        if before is None:
            before = {"desired": 2}
            ctx.record_before(before)
        if self.changes == 0 and len(self.befores_given) == 1:
            raise TransientError("waiting for the change to settle")
        self.changes += 1
        return ctx.result("apply", "changed", ["web-api-asg"], before, {"desired": 3})


def test_a_retry_in_the_same_environment_goes_on_from_the_record_it_remembers(store, dynamodb_calls):
    # Given a step that recorded its state before, then waited (a transient error)
    model = impairment()
    action = WaitsOnce()
    with pytest.raises(TransientError):
        run_step(action, model, store)
    dynamodb_calls.clear()

    # When the state machine's retry lands in the same warm environment
    result = run_step(action, model, store)

    # Then it went on from the remembered state without reading or planning again, in one write
    assert action.befores_given == [None, {"desired": 2}]
    assert dynamodb_calls == ["PutItem"]
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "done" and record["before"] == {"desired": 2} == result["before"]


def test_a_remembered_record_that_another_attempt_finished_is_not_written_over(store):
    # Given a step this environment left "started", which another attempt (another environment)
    # then finished
    model = impairment()
    action = WaitsOnce()
    with pytest.raises(TransientError):
        run_step(action, model, store)
    elsewhere = {"status": "done", "before": {"desired": 2}, "result": {"action": "scale_out", "from": "elsewhere"}}
    store.put_action(model.impairment_id, 0, "apply", elsewhere)

    # When the retry lands here
    result = run_step(action, model, store)

    # Then its final write found the record changed and returned the recorded result, which stands
    assert result == elsewhere["result"]
    assert store.get_action(model.impairment_id, 0, "apply")["result"] == elsewhere["result"]
