"""CheckGuardrails under moto: the budgets in the table (rate limits, concurrency, blast radius),
maintenance windows, what is recorded on the impairment and who is paged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.errors import GuardrailTripped, InvalidInput
from core.store import CONCURRENCY_BUDGET
from orchestration import check_guardrails
from tests.builders import build_workload, capture_topic, impairment, received, use_runtime_config

REPLACE = {"name": "replace", "steps": [{"index": 0, "action": "replace_instance", "params": {}}]}
SCALE = {"name": "scale", "steps": [{"index": 0, "action": "scale_out", "params": {}}]}
PLANS = [
    {"name": "replace", "match": {"impairment_types": ["instance_failure"]}, "steps": [{"action": "replace_instance"}]},
    {"name": "scale", "match": {"impairment_types": ["resource_exhaustion"]}, "steps": [{"action": "scale_out"}]},
]


@pytest.fixture
def topic(store, monkeypatch) -> str:
    topic_arn, url = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    return url


def _config(monkeypatch, tmp_path, **guardrails: Any) -> None:
    use_runtime_config(monkeypatch, tmp_path, plans=PLANS, guardrails=guardrails, maintenance=guardrails.pop("_m", {}))


def _state(model, plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "impairment": model.model_dump(mode="json"),
        "plan": plan,
        "admission": {"lock_keys": [r.key for r in model.affected_resources]},
    }


def _check(store, model, plan, context) -> dict[str, Any]:
    store.put_impairment(model.model_dump(mode="json"), status="admitted")
    return check_guardrails.handler(_state(model, plan), context, store=store)


def test_a_recovery_within_every_limit_passes_unchanged(store, topic, monkeypatch, tmp_path, lambda_context):
    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=3)
    model = workload.impairment_of(workload.instance_ids()[0])

    out = _check(store, model, REPLACE, lambda_context)

    assert out["impairment"] == model.model_dump(mode="json")
    assert out["guardrails"]["tripped"] == [] and out["guardrails"]["deferred"] == []
    assert out["plan"] == REPLACE
    assert store.budget_holders(CONCURRENCY_BUDGET).keys() == {model.impairment_id}
    assert received(topic) == []


def test_the_blast_radius_narrows_the_impairment_and_pages_for_the_rest(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=6, max_size=8)
    ids = workload.instance_ids()
    model = workload.impairment_of(*ids[:3])

    out = _check(store, model, REPLACE, lambda_context)

    acted = [r["resource_id"] for r in out["impairment"]["affected_resources"]]
    assert acted == ids[:2] and out["guardrails"]["deferred"] == [ids[2]]
    record = store.get_impairment(model.impairment_id)
    assert record["guardrails_tripped"] == ["blast_radius"]
    assert record["deferred_resources"] == [f"ec2:instance/{ids[2]}"]
    (envelope,) = received(topic)
    page = json.loads(envelope["Message"])
    assert page["deferred"] == [ids[2]] and page["guardrail"] == "blast_radius"
    assert "blast radius" in envelope["Subject"]

    # A second impairment of the same group within the window: nothing left to act on
    second = workload.impairment_of(ids[3], signal_time=model.signal.signal_time + timedelta(seconds=1))
    with pytest.raises(GuardrailTripped, match="blast_radius"):
        _check(store, second, REPLACE, lambda_context)


def test_plans_that_do_not_remove_capacity_are_not_limited_by_the_blast_radius(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=3)
    model = workload.impairment_of(*workload.instance_ids())
    out = _check(store, model, SCALE, lambda_context)
    assert out["guardrails"]["tripped"] == []


def test_the_rate_limit_per_workload_trips_and_is_recorded(store, topic, monkeypatch, tmp_path, lambda_context):
    _config(monkeypatch, tmp_path, rate_limits={"per_workload_per_hour": 2, "max_concurrent": 100})
    models = [
        impairment(instances=[f"i-{n:017x}"], signal_time=impairment().signal.signal_time + timedelta(minutes=n))
        for n in range(3)
    ]
    for model in models[:2]:
        _check(store, model, SCALE, lambda_context)

    with pytest.raises(GuardrailTripped, match="rate_limit") as raised:
        _check(store, models[2], SCALE, lambda_context)

    assert raised.value.details["guardrails"] == ["rate_limit"]
    record = store.get_impairment(models[2].impairment_id)
    assert record["guardrails_tripped"] == ["rate_limit"]
    assert record["guardrail_trips"][0]["evidence"]["limit"] == 2
    assert record["page"] is True


def test_a_plans_own_rate_limit_applies(store, topic, monkeypatch, tmp_path, lambda_context):
    _config(monkeypatch, tmp_path)
    plan = {**SCALE, "max_recoveries_per_hour": 1}
    first = impairment(instances=["i-00000000000000001"])
    second = impairment(instances=["i-00000000000000002"], signal_time=first.signal.signal_time + timedelta(seconds=9))
    _check(store, first, plan, lambda_context)
    with pytest.raises(GuardrailTripped, match="BUDGET#rate#plan#scale"):
        _check(store, second, plan, lambda_context)


def test_concurrent_recoveries_are_capped_and_a_finished_one_frees_its_slot(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    _config(monkeypatch, tmp_path, rate_limits={"max_concurrent": 1})
    first = impairment(instances=["i-00000000000000001"])
    second = impairment(instances=["i-00000000000000002"], signal_time=first.signal.signal_time + timedelta(seconds=9))
    _check(store, first, SCALE, lambda_context)
    with pytest.raises(GuardrailTripped, match="concurrency"):
        _check(store, second, SCALE, lambda_context)

    # When the first recovery ends (Finalize and Escalate release its locks and its slot)
    store.release_locks(first.impairment_id, ["ec2:instance/i-00000000000000001"])
    third = impairment(instances=["i-00000000000000003"], signal_time=first.signal.signal_time + timedelta(seconds=20))
    assert _check(store, third, SCALE, lambda_context)["guardrails"]["tripped"] == []


def test_a_retried_check_does_not_count_twice(store, topic, monkeypatch, tmp_path, lambda_context):
    _config(monkeypatch, tmp_path, rate_limits={"per_workload_per_hour": 1})
    model = impairment()
    _check(store, model, SCALE, lambda_context)
    assert check_guardrails.handler(_state(model, SCALE), lambda_context, store=store)["guardrails"]["tripped"] == []


def test_a_maintenance_window_stops_every_action_and_pages_once(
    store, topic, monkeypatch, tmp_path, lambda_context, frozen_clock
):
    window = {"windows": [{"start": "00:00", "end": "23:59"}]}
    _config(monkeypatch, tmp_path, _m={"web-api": window})
    model = impairment()

    with pytest.raises(GuardrailTripped, match="maintenance_window"):
        _check(store, model, SCALE, lambda_context)
    record = store.get_impairment(model.impairment_id)
    assert record["guardrails_tripped"] == ["maintenance_window"] and record["page"] is True
    # nothing was taken from the budgets
    assert store.budget_holders(CONCURRENCY_BUDGET) == {}

    # The same resource tripping again within the window (a sweep every minute) is not paged again
    again = impairment(signal_time=model.signal.signal_time + timedelta(minutes=1))
    with pytest.raises(GuardrailTripped):
        _check(store, again, SCALE, lambda_context)
    assert store.get_impairment(again.impairment_id)["page"] is False


def test_fail_open_stops_a_replacement_when_most_of_the_group_is_unhealthy(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    import boto3

    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=3)
    ids = workload.instance_ids()
    autoscaling = boto3.client("autoscaling")
    for instance in ids[1:]:
        autoscaling.set_instance_health(InstanceId=instance, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False)
    model = workload.impairment_of(ids[0])

    with pytest.raises(GuardrailTripped, match="fail_open"):
        _check(store, model, REPLACE, lambda_context)
    record = store.get_impairment(model.impairment_id)
    assert record["guardrail_trips"][0]["evidence"]["fleet_size"] == 3


def test_a_state_without_a_plan_is_refused(store, topic, monkeypatch, tmp_path, lambda_context):
    _config(monkeypatch, tmp_path)
    with pytest.raises(InvalidInput):
        check_guardrails.handler({"impairment": impairment().model_dump(mode="json")}, lambda_context, store=store)


def test_escalate_records_a_repeat_trip_without_paging_again(store, topic, monkeypatch, tmp_path, lambda_context):
    from orchestration import escalate

    window = {"windows": [{"start": "00:00", "end": "23:59"}]}
    _config(monkeypatch, tmp_path, _m={"web-api": window})
    first = impairment()
    again = impairment(signal_time=first.signal.signal_time + timedelta(minutes=1))
    for model in (first, again):
        with pytest.raises(GuardrailTripped) as raised:
            _check(store, model, SCALE, lambda_context)
        error = {"Error": "GuardrailTripped", "Cause": json.dumps({"errorMessage": str(raised.value)})}
        escalate.handler({**_state(model, SCALE), "error": error}, lambda_context, store=store)

    pages = received(topic)
    assert len(pages) == 1 and first.impairment_id in pages[0]["Message"]
    assert store.get_impairment(first.impairment_id)["outcome"] == "escalated"
    repeat = store.get_impairment(again.impairment_id)
    assert repeat["outcome"] == "skipped" and repeat["paged"] is False
    assert "not paged again" in repeat["reason"] and repeat["guardrails_tripped"] == ["maintenance_window"]


@pytest.mark.parametrize(
    ("error", "says"),
    [
        ({"Error": "States.Timeout", "Cause": ""}, "none came within 1800 s"),
        ({"Error": "ApprovalRejected", "Cause": "not during the sale"}, "rejected (not during the sale)"),
    ],
)
def test_an_approval_that_fails_is_escalated_as_the_approval_guardrail(
    store, topic, monkeypatch, tmp_path, lambda_context, error, says
):
    from orchestration import escalate

    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="awaiting_approval")
    plan = {**REPLACE, "approval_timeout_seconds": 1800, "requires_approval": True}
    out = escalate.handler({**_state(model, plan), "approval_error": error}, lambda_context, store=store)

    assert says in out["reason"] and out["guardrails_tripped"] == ["approval"]
    record = store.get_impairment(model.impairment_id)
    assert record["outcome"] == "escalated" and record["guardrails_tripped"] == ["approval"]
    assert len(received(topic)) == 1
