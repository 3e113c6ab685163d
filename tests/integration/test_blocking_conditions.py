"""CheckGuardrails with blocking conditions under moto (instance refreshes answered in the real
shape by tests/integration/conftest.py, moto having none): a blocked recovery waits, takes no
budget, and says why on its record; after the bound it acts or escalates as configured."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from core.errors import GuardrailTripped
from orchestration import check_guardrails
from tests.builders import build_workload, use_runtime_config

PLANS = [
    {"name": "replace", "match": {"impairment_types": ["instance_failure"]}, "steps": [{"action": "replace_instance"}]}
]
REPLACE = {"name": "replace", "steps": [{"index": 0, "action": "replace_instance", "params": {}}]}


def _check(store, model, plan, context, guardrails: dict[str, Any] | None = None, state=None) -> dict[str, Any]:
    if state is None:
        store.put_impairment(model.model_dump(mode="json"), status="admitted")
        state = {
            "impairment": model.model_dump(mode="json"),
            "plan": plan,
            "admission": {"lock_keys": [r.key for r in model.affected_resources]},
        }
    return check_guardrails.handler(state, context, store=store)


@pytest.fixture
def configured(store, monkeypatch, tmp_path):
    def configure(**blocking: Any) -> None:
        use_runtime_config(monkeypatch, tmp_path, plans=PLANS, guardrails={"blocking": blocking} if blocking else {})

    monkeypatch.setenv("ESCALATION_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:escalations")
    return configure


def test_a_refresh_in_progress_makes_the_recovery_wait_holding_no_budget(
    store, configured, instance_refreshes, frozen_clock, lambda_context
):
    configured()  # the defaults: a refresh blocks, 15 min, then escalate
    workload = build_workload(desired=3)
    instance_refreshes[workload.group_name] = [
        {"InstanceRefreshId": "r-1", "AutoScalingGroupName": workload.group_name, "Status": "InProgress"}
    ]
    model = workload.impairment_of(workload.instance_ids()[0])

    out = _check(store, model, REPLACE, lambda_context)

    assert out["guardrails"]["blocked"] == {"wait_seconds": 60}
    assert "slots" not in out["guardrails"]  # nothing taken while it waits: a storm is not starved
    record = store.get_impairment_checked(model.impairment_id)
    evidence = record["blocked_by"][0]["evidence"]
    assert evidence == {"instance_refresh_id": "r-1", "status": "InProgress", "percentage_complete": None}
    assert "budget_slots" not in record

    # the refresh completes during the wait: the next check passes, and the record says it cleared
    instance_refreshes[workload.group_name][0]["Status"] = "Successful"
    frozen_clock.advance(60)
    passed = _check(store, model, REPLACE, lambda_context, state=out)
    assert "blocked" not in passed["guardrails"] and passed["guardrails"]["slots"]
    assert passed["guardrails"]["blocking"]["outcome"] == "cleared"
    assert store.get_impairment(model.impairment_id)["blocking"]["outcome"] == "cleared"


def test_a_blocking_alarm_that_never_clears_escalates_after_the_bound_with_the_reason(
    store, configured, frozen_clock, lambda_context
):
    configured(instance_refresh=False, alarms=["payments-5xx"], max_wait_seconds=300, then="escalate")
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    cloudwatch.put_metric_alarm(
        AlarmName="payments-5xx",
        MetricName="5xx",
        Namespace="App",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName="payments-5xx", StateValue="ALARM", StateReason="errors")
    workload = build_workload(desired=3)
    model = workload.impairment_of(workload.instance_ids()[0])

    state = _check(store, model, REPLACE, lambda_context)
    waits = []
    while "blocked" in state.get("guardrails", {}):
        waits.append(state["guardrails"]["blocked"]["wait_seconds"])
        frozen_clock.advance(waits[-1])
        try:
            state = _check(store, model, REPLACE, lambda_context, state=state)
        except GuardrailTripped as exc:
            raised = exc
            break

    assert sum(waits) == 300 and waits == [60] * 5
    assert raised.details["guardrails"] == ["blocked"] and "payments-5xx is in ALARM" in str(raised)
    record = store.get_impairment_checked(model.impairment_id)  # the trip noted, for Escalate to record
    assert record["guardrails_tripped"] == ["blocked"]
    assert "still blocked after 300 s" in record["guardrail_trips"][0]["reason"]
    assert record["blocked_by"][0]["evidence"]["alarm"] == "payments-5xx"
    assert record["blocking"]["outcome"] == "escalated"


def test_a_plan_of_its_own_acts_after_the_bound_where_the_deployment_would_escalate(
    store, configured, instance_refreshes, frozen_clock, lambda_context
):
    configured()  # the deployment escalates; this plan acts
    workload = build_workload(desired=3)
    instance_refreshes[workload.group_name] = [
        {"InstanceRefreshId": "r-2", "AutoScalingGroupName": workload.group_name, "Status": "Baking"}
    ]
    model = workload.impairment_of(workload.instance_ids()[0])
    plan = {**REPLACE, "blocking": {"max_wait_seconds": 60, "then": "act"}}

    waiting = _check(store, model, plan, lambda_context)
    frozen_clock.advance(waiting["guardrails"]["blocked"]["wait_seconds"])
    acted = _check(store, model, plan, lambda_context, state=waiting)

    assert "blocked" not in acted["guardrails"] and acted["guardrails"]["blocking"]["outcome"] == "acted_while_blocked"
    assert acted["guardrails"]["blocking"]["blocked_by"][0]["evidence"]["instance_refresh_id"] == "r-2"


def test_a_plan_that_turns_refreshes_off_is_not_blocked_by_one(store, configured, instance_refreshes, lambda_context):
    configured()
    workload = build_workload(desired=3)
    instance_refreshes[workload.group_name] = [
        {"InstanceRefreshId": "r-3", "AutoScalingGroupName": workload.group_name, "Status": "InProgress"}
    ]
    model = workload.impairment_of(workload.instance_ids()[0])

    out = _check(store, model, {**REPLACE, "blocking": {"instance_refresh": False}}, lambda_context)

    assert "blocked" not in out["guardrails"] and out["guardrails"]["blocking"] is None
