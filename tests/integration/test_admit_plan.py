"""Admit chooses the plan and records it in its own transaction (issue 16): one call on the fast
path, and each thing that stands in the way (paused, the plan disabled, a lock another's, no
plan, no record yet) doing what it did when SelectPlan was a task of its own."""

from __future__ import annotations

import pytest

from core import clock
from core.contract import ImpairmentType, Severity
from core.errors import InvalidInput, InvalidPlan, NoMatchingPlan, RecoveryInProgress, RecoveryPaused
from orchestration import admit, escalate, select_plan
from tests.builders import capture_topic, get_item, impairment, use_runtime_config

REPLACE = {
    "name": "replace-failed-instance",
    "match": {"impairment_types": ["instance_failure"], "max_severity": "high"},
    "steps": [{"action": "replace_instance"}, {"action": "scale_out", "params": {"increment": 2}}],
    "verify": {"wait_seconds": 20, "max_attempts": 6},
}
ADD = {"name": "add-capacity", "match": {"impairment_types": ["instance_failure"]}, "steps": [{"action": "scale_out"}]}
# May hold the locks for 30 min of approval and an hour of acting, far beyond the lock TTL
SLOW = {
    "name": "fail-over-slowly",
    "match": {"impairment_types": ["instance_failure"]},
    "steps": [{"action": "scale_out"}],
    "requires_approval": True,
    "approval_timeout_seconds": 1800,
    "timeout_seconds": 3600,
}
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:recovery:x"


def configure(monkeypatch, tmp_path, *plans: dict) -> None:
    use_runtime_config(monkeypatch, tmp_path, plans=list(plans))


def event_of(model, **given) -> dict:
    return {"impairment": model.model_dump(mode="json"), "execution": EXECUTION, "input": given}


def detected(store, model) -> None:
    """As StartRecovery records it, before the execution starts."""
    store.put_impairment(model.model_dump(mode="json"), status="detected", mttd_seconds=model.mttd_seconds)


def lock_of(model) -> dict | None:
    return get_item(f"LOCK#{model.affected_resources[0].key}", "LOCK")


def test_the_state_gets_the_admission_and_the_plan_and_keeps_the_executions_input(
    store, monkeypatch, tmp_path, lambda_context
):
    configure(monkeypatch, tmp_path, REPLACE)
    model = impairment()
    detected(store, model)

    state = admit.handler(event_of(model, supersedes=[], note="kept"), lambda_context)

    # The workflow's state after Admit (its ResultPath is "$"): the input with both added
    assert set(state) == {"impairment", "supersedes", "note", "admission", "plan"}
    assert state["impairment"] == model.model_dump(mode="json") and state["note"] == "kept"
    assert state["admission"]["lock_keys"] == [model.affected_resources[0].key]
    assert [s["action"] for s in state["plan"]["steps"]] == ["replace_instance", "scale_out"]
    assert state["plan"]["verify"] == {"wait_seconds": 20, "max_attempts": 6}


def test_a_disabled_plan_gives_way_to_the_next_and_the_record_names_that(
    store, monkeypatch, tmp_path, lambda_context, dynamodb_calls
):
    configure(monkeypatch, tmp_path, REPLACE, ADD)
    model = impairment()
    detected(store, model)
    store.set_plan_enabled("replace-failed-instance", False, actor="oncall")
    dynamodb_calls.clear()

    state = admit.handler(event_of(model), lambda_context)
    calls = list(dynamodb_calls)

    assert state["plan"]["name"] == "add-capacity"
    record = store.get_impairment(model.impairment_id)
    assert (record["plan"], record["plan_state"]["name"], record["status"]) == ("add-capacity",) * 2 + ("recovering",)
    assert lock_of(model)["owner"] == model.impairment_id
    # The transaction refused, the switches read, the next plan admitted in one transaction
    assert calls == ["TransactWriteItems", "GetItem", "TransactWriteItems"]


def test_a_plan_disabled_between_its_choice_and_the_transaction_is_never_run(
    store, monkeypatch, tmp_path, lambda_context
):
    # Given the plan an operator disables while Admit is choosing it (the race the transaction's
    # check closes: the choice is made before the switches are read)
    configure(monkeypatch, tmp_path, REPLACE, ADD)
    model = impairment()
    detected(store, model)
    chosen = []
    original = select_plan.choose

    def choose_then_disable(*args, **kwargs):
        choice = original(*args, **kwargs)
        chosen.append(choice.plan.name)
        if len(chosen) == 1:
            store.set_plan_enabled(choice.plan.name, False, actor="oncall")
        return choice

    monkeypatch.setattr(select_plan, "choose", choose_then_disable)

    # When it is admitted
    state = admit.handler(event_of(model), lambda_context)

    # Then the transaction refused the disabled plan: the next one is chosen, run and recorded
    assert chosen == ["replace-failed-instance", "add-capacity"]
    assert state["plan"]["name"] == "add-capacity"
    record = store.get_impairment(model.impairment_id)
    assert record["plan"] == "add-capacity" and record["plan_state"]["name"] == "add-capacity"


def test_paused_wins_over_a_disabled_plan(store, monkeypatch, tmp_path, lambda_context):
    # Both switches stand in the way of the one check: the kill switch is what the record says
    configure(monkeypatch, tmp_path, REPLACE, ADD)
    model = impairment()
    detected(store, model)
    store.set_plan_enabled("replace-failed-instance", False, actor="oncall")
    store.set_paused(True, "game day", "oncall")

    with pytest.raises(RecoveryPaused, match="game day"):
        admit.handler(event_of(model), lambda_context)

    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "skipped" and "plan" not in record and "plan_state" not in record
    assert lock_of(model) is None


def test_a_long_plans_locks_are_held_for_its_hold_from_the_start(
    store, monkeypatch, tmp_path, lambda_context, dynamodb_calls
):
    configure(monkeypatch, tmp_path, SLOW)
    model = impairment()
    detected(store, model)
    dynamodb_calls.clear()

    admit.handler(event_of(model), lambda_context)

    # One call, and the locks last the approval, the time-box and the capacity wait already
    assert dynamodb_calls == ["TransactWriteItems"]
    lock = lock_of(model)
    assert lock["owner"] == model.impairment_id
    remaining = int(lock["expiration"]) - int(clock.utc_now().timestamp())
    assert remaining >= 1800 + 3600 + 600
    assert remaining > 3600  # the lock TTL (LOCK_TTL_SECONDS' default)


def test_a_long_plan_chosen_step_by_step_holds_the_locks_as_long(store, monkeypatch, tmp_path, lambda_context):
    # No record yet (the execution started by hand): the slow way, with the same hold
    configure(monkeypatch, tmp_path, SLOW)
    model = impairment()

    state = admit.handler(event_of(model), lambda_context)

    assert state["plan"]["name"] == "fail-over-slowly"
    remaining = int(lock_of(model)["expiration"]) - int(clock.utc_now().timestamp())
    assert remaining >= 1800 + 3600 + 600
    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "recovering" and record["plan"] == "fail-over-slowly"
    assert record["mttd_seconds"] == model.mttd_seconds and record["execution_arn"] == EXECUTION


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "no-record"])
def test_no_plan_is_escalated_after_the_impairment_is_admitted_and_locked(
    store, monkeypatch, tmp_path, lambda_context, recorded
):
    # Given an impairment no plan covers (a critical failure, above the plan's bound)
    configure(monkeypatch, tmp_path, REPLACE)
    model = impairment(severity=Severity.CRITICAL)
    if recorded:
        detected(store, model)

    # When it is admitted, then the workflow is told to escalate, naming what was not covered
    with pytest.raises(NoMatchingPlan, match="instance_failure at severity critical"):
        admit.handler(event_of(model), lambda_context)

    # And the record says admitted, its resources locked, as before a plan was chosen
    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "admitted" and "plan" not in record
    assert record["lock_keys"] == [model.affected_resources[0].key] and record["execution_arn"] == EXECUTION
    assert lock_of(model)["owner"] == model.impairment_id

    # And the escalation (Admit's catch) releases what was locked
    topic_arn, _ = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    escalate.handler(
        {
            "impairment": model.model_dump(mode="json"),
            "error": {"Error": "NoMatchingPlan", "Cause": "no plan covers it"},
        },
        lambda_context,
    )
    assert lock_of(model) is None


def test_no_plan_for_a_resource_another_recovery_holds_is_skipped_not_escalated(
    store, monkeypatch, tmp_path, lambda_context
):
    configure(monkeypatch, tmp_path, REPLACE)
    first = impairment()
    admit.handler(event_of(first), lambda_context)
    uncovered = impairment(severity=Severity.CRITICAL, signal_id="arn:aws:cloudwatch:us-east-1:1:alarm:other")

    with pytest.raises(RecoveryInProgress):
        admit.handler(event_of(uncovered), lambda_context)

    assert store.get_impairment(uncovered.impairment_id)["status"] == "skipped"
    assert lock_of(first)["owner"] == first.impairment_id


def test_every_plan_disabled_is_no_plan(store, monkeypatch, tmp_path, lambda_context):
    configure(monkeypatch, tmp_path, REPLACE, ADD)
    model = impairment()
    detected(store, model)
    for name in ("replace-failed-instance", "add-capacity"):
        store.set_plan_enabled(name, False, actor="oncall")

    with pytest.raises(NoMatchingPlan):
        admit.handler(event_of(model), lambda_context)
    assert store.get_impairment(model.impairment_id)["status"] == "admitted"
    assert lock_of(model)["owner"] == model.impairment_id


def test_a_plan_this_deployment_cannot_run_is_escalated_not_rejected(store, monkeypatch, tmp_path, lambda_context):
    # A configuration edited by hand (synthesis refuses it): InvalidPlan, which the workflow's
    # "Rejected" catch (InvalidInput, by name) does not take
    broken = {"name": "broken", "match": {"impairment_types": ["database_issue"]}, "steps": [{"action": "nope"}]}
    configure(monkeypatch, tmp_path, broken)
    model = impairment(impairment_type=ImpairmentType.DATABASE_ISSUE)
    detected(store, model)

    with pytest.raises(InvalidPlan, match="plan 'broken'") as caught:
        admit.handler(event_of(model), lambda_context)

    assert type(caught.value).__name__ != InvalidInput.__name__
    assert store.get_impairment(model.impairment_id)["status"] == "admitted"


def test_a_recovery_that_supersedes_another_takes_its_locks_over_with_its_plan(
    store, monkeypatch, tmp_path, lambda_context, dynamodb_calls
):
    # Given a narrower impairment holds the instance, and a wider one (both instances) supersedes it
    configure(monkeypatch, tmp_path, REPLACE)
    narrow = impairment(instances=["i-0abc123def4567890"])
    admit.handler(event_of(narrow), lambda_context)
    wide = impairment(
        instances=["i-0abc123def4567890", "i-0fedcba9876543210"], signal_id="arn:aws:cloudwatch:us-east-1:1:alarm:w"
    )
    detected(store, wide)
    dynamodb_calls.clear()

    # When the wider one is admitted, StartRecovery naming what it supersedes
    state = admit.handler(event_of(wide, supersedes=[narrow.impairment_id]), lambda_context)

    # Then it takes the lock over in the one transaction, its plan recorded with it
    assert dynamodb_calls == ["TransactWriteItems"]
    assert lock_of(narrow)["owner"] == wide.impairment_id
    assert state["supersedes"] == [narrow.impairment_id]
    assert store.get_impairment(wide.impairment_id)["plan"] == "replace-failed-instance"
