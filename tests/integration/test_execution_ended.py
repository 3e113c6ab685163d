"""ExecutionEnded under moto: an execution that died (failed in a state without a catch, timed
out, aborted) leaves nothing behind: its record ends, its locks, slot and windows are released,
what it applied is rolled back by the cleanup state machine, and a human is paged."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from core import paging
from core.errors import TransientError
from core.store import CONCURRENCY_BUDGET, Claim
from orchestration import execution_ended
from tests.builders import ACCOUNT, REGION, capture_topic, create_state_machine, impairment, received

PLAN = {"name": "replace", "steps": [{"index": 0, "action": "scale_out", "params": {}}], "dry_run": False}


@pytest.fixture
def machines(store, monkeypatch) -> dict[str, str]:
    arns = {"recovery": create_state_machine("recovery"), "cleanup": create_state_machine("recovery-cleanup")}
    monkeypatch.setenv("STATE_MACHINE_ARN", arns["recovery"])
    monkeypatch.setenv("CLEANUP_STATE_MACHINE_ARN", arns["cleanup"])
    return arns


@pytest.fixture
def pages(store, monkeypatch) -> str:
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    return queue


def status_change(machine: str, name: str, status: str, error: str = "States.Timeout", cause: str = "") -> dict:
    """The event Step Functions sends when an execution's status changes (as AWS documents it)."""
    execution = machine.replace(":stateMachine:", ":execution:") + f":{name}"
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": "2026-11-20T09:30:00Z",
        "region": REGION,
        "resources": [execution],
        "detail": {
            "executionArn": execution,
            "stateMachineArn": machine,
            "name": name,
            "status": status,
            "startDate": 1795686871104,
            "stopDate": 1795687800000,
            "input": "{}",
            "output": None,
            "inputDetails": {"included": True},
            "outputDetails": None,
            "error": error,
            "cause": cause,
        },
    }


def recovering(store, model, **fields: Any) -> list[str]:
    """A recovery under way: its record, its locks, its concurrency slot and correlation windows."""
    keys = [r.key for r in model.affected_resources]
    store.put_impairment(model.model_dump(mode="json"), status="recovering", lock_keys=keys, **fields)
    store.acquire_locks(model.impairment_id, keys, 3600)
    store.correlate(model.impairment_id, keys, 300, model.signal.signal_time)
    store.take_budgets(model.impairment_id, [Claim("concurrency", CONCURRENCY_BUDGET, 25, 1, 2**31, slotted=True)])
    return keys


def held(store, keys: list[str]) -> dict[str, Any]:
    from tests.builders import get_item

    return {
        "locks": store._lock_holders(keys),
        "windows": [k for k in keys if get_item(f"LOCK#{k}", "CORRELATION")],
        "slot": store.budget_holders(CONCURRENCY_BUDGET, slots=25),
    }


def test_an_execution_that_timed_out_before_changing_anything_is_released_and_paged(
    machines, pages, store, lambda_context
):
    # Given a recovery that timed out while waiting (nothing applied yet)
    model = impairment()
    keys = recovering(store, model, plan="replace", plan_state=PLAN)

    # When Step Functions says so
    out = execution_ended.handler(
        status_change(machines["recovery"], model.impairment_id, "TIMED_OUT"), lambda_context, store=store
    )

    # Then its record ends, nothing it held is left, and a human is told why
    assert out["status"] == "escalated"
    record = store.get_impairment(model.impairment_id)
    assert record["outcome"] == "escalated" and "timed out" in record["reason"]
    assert "nothing had been changed" in record["reason"] and record["page_status"] == "sent"
    assert held(store, keys) == {"locks": {}, "windows": [], "slot": {}}
    (page,) = received(pages)
    assert "timed out" in paging.details(json.loads(page["Message"]))["reason"]


def test_an_aborted_execution_with_changes_applied_is_rolled_back_by_the_cleanup(
    machines, pages, store, lambda_context
):
    # Given a recovery aborted mid-step: its scale-out recorded its state before, then stopped
    model = impairment()
    keys = recovering(store, model, plan="replace", plan_state=PLAN)
    before = {"group": "web-api-asg", "desired_capacity": 3}
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "action": "scale_out", "before": before})

    # When the abort is reported
    out = execution_ended.handler(
        status_change(machines["recovery"], model.impairment_id, "ABORTED", error="", cause=""),
        lambda_context,
        store=store,
    )

    # Then the cleanup state machine rolls the step back (from the audit trail) and escalates;
    # the locks stay with it until then, and the step's record ends failed
    assert out == {"status": "rolling_back", "impairment_id": model.impairment_id, "steps": [0]}
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=machines["cleanup"])["executions"]
    assert execution["name"] == model.impairment_id
    given = json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"]
    )
    assert given["plan"] == PLAN and given["admission"]["lock_keys"] == keys
    assert given["error"]["Error"] == "ExecutionDied" and "aborted" in given["error"]["Cause"]
    assert store.get_impairment(model.impairment_id)["status"] == "rolling_back"
    assert store.get_action(model.impairment_id, 0, "apply")["status"] == "failed"
    assert held(store, keys)["locks"] == {k: model.impairment_id for k in keys}
    assert received(pages) == []

    # And a redelivered event does not start a second cleanup
    execution_ended.handler(
        status_change(machines["recovery"], model.impairment_id, "ABORTED"), lambda_context, store=store
    )
    assert len(boto3.client("stepfunctions").list_executions(stateMachineArn=machines["cleanup"])["executions"]) == 1


@pytest.mark.parametrize("applied", [False, True], ids=["nothing-applied", "step-applied"])
def test_an_execution_that_died_right_after_admit_is_cleaned_up_from_the_plan_admit_recorded(
    machines, pages, store, lambda_context, any_plan, applied
):
    # Given Admit recorded the impairment with its plan in one transaction, and the execution
    # died before its next state recorded anything (a step's own record aside, when it started)
    from orchestration import admit

    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="detected")
    state = admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, lambda_context, store=store)
    keys = state["admission"]["lock_keys"]
    if applied:
        before = {"group": "web-api-asg", "desired_capacity": 3}
        store.put_action(
            model.impairment_id, 0, "apply", {"status": "started", "action": "scale_out", "before": before}
        )

    # When it is reported dead
    out = execution_ended.handler(
        status_change(machines["recovery"], model.impairment_id, "FAILED", "States.Runtime", "boom"),
        lambda_context,
        store=store,
    )

    # Then what it applied is rolled back by the plan the record has (Admit's), else it is released
    cleanups = boto3.client("stepfunctions").list_executions(stateMachineArn=machines["cleanup"])["executions"]
    if applied:
        assert out["status"] == "rolling_back"
        (execution,) = cleanups
        given = json.loads(
            boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"]
        )
        assert given["plan"] == state["plan"] and given["admission"]["lock_keys"] == keys
    else:
        assert out["status"] == "escalated" and cleanups == []
        assert store._lock_holders(keys) == {}
        assert len(received(pages)) == 1


def test_a_cleanup_that_dies_too_is_released_and_paged_without_another_cleanup(machines, pages, store, lambda_context):
    model = impairment()
    keys = recovering(store, model, plan="replace", plan_state=PLAN, outcome="died")
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "action": "scale_out", "before": {}})
    store.put_action(model.impairment_id, 0, "apply", {"status": "failed", "action": "scale_out", "before": {"a": 1}})

    out = execution_ended.handler(
        status_change(machines["cleanup"], model.impairment_id, "FAILED", "Lambda.Unknown", "boom"),
        lambda_context,
        store=store,
    )

    assert out["status"] == "escalated"
    record = store.get_impairment(model.impairment_id)
    assert "its cleanup failed" in record["reason"] and "not rolled back: steps [0]" in record["reason"]
    assert held(store, keys) == {"locks": {}, "windows": [], "slot": {}}
    assert len(received(pages)) == 1
    assert boto3.client("stepfunctions").list_executions(stateMachineArn=machines["cleanup"])["executions"] == []


def test_a_cleanup_that_escalated_as_designed_is_not_paged_again(machines, pages, store, lambda_context):
    # Given a cleanup that rolled back and escalated: its Escalate recorded the outcome and paged,
    # then it ended in the Fail state "Escalated" as every escalation does
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="escalated", outcome="escalated", page_status="sent")

    # When its own status change (FAILED) arrives
    out = execution_ended.handler(
        status_change(machines["cleanup"], model.impairment_id, "FAILED", "RecoveryEscalated"),
        lambda_context,
        store=store,
    )

    # Then it is left alone: one page in all (the cleanup's), its reason kept
    assert out["status"] == "ended"
    assert received(pages) == []
    assert store.get_impairment(model.impairment_id).get("reason") is None


def test_an_escalation_is_left_alone_unless_its_page_never_went_out(machines, pages, store, lambda_context):
    # Given an execution that escalated (ended in the Fail state "Escalated") and paged
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="escalated", outcome="escalated", page_status="sent")
    event = status_change(machines["recovery"], model.impairment_id, "FAILED", "RecoveryEscalated")
    assert execution_ended.handler(event, lambda_context, store=store)["status"] == "ended"
    assert received(pages) == []

    # But one whose page failed every retry is paged once more
    store.update_impairment(model.impairment_id, page_status="failed", reason="rollback failed: boom")
    assert execution_ended.handler(event, lambda_context, store=store)["status"] == "paged"
    assert len(received(pages)) == 1
    assert store.get_impairment(model.impairment_id)["page_status"] == "sent"


def test_a_page_that_still_cannot_be_sent_is_raised(machines, store, lambda_context, monkeypatch):
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", f"arn:aws:sns:{REGION}:{ACCOUNT}:gone")
    model = impairment()
    keys = recovering(store, model)
    with pytest.raises(TransientError):
        execution_ended.handler(
            status_change(machines["recovery"], model.impairment_id, "FAILED"), lambda_context, store=store
        )
    # the record and the release came first
    assert store.get_impairment(model.impairment_id)["page_status"] == "failed"
    assert held(store, keys)["locks"] == {}


@pytest.mark.parametrize(
    "event",
    [
        {"detail-type": "Step Functions Execution Status Change", "source": "aws.states", "detail": {}},
        {"not": "an event"},
    ],
)
def test_what_is_not_an_execution_status_change_is_ignored(machines, store, lambda_context, event):
    assert execution_ended.handler(event, lambda_context, store=store)["status"] == "ignored"


def test_a_succeeded_execution_is_none_of_its_business(machines, store, lambda_context):
    event = status_change(machines["recovery"], "whatever", "SUCCEEDED")
    assert execution_ended.handler(event, lambda_context, store=store)["status"] == "ignored"
