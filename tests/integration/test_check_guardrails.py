"""CheckGuardrails under moto: the budgets in the table (rate limits, concurrency, blast radius),
maintenance windows, what is recorded on the impairment and who is paged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core import paging
from core.dynamo import Table
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
    # one of the 25 slots (the default cap) is its, noted for it (its guardrails item, not its
    # record) and in the state for its release
    holders = store.budget_holders(CONCURRENCY_BUDGET, slots=25)
    assert holders.keys() == {model.impairment_id}
    slot = holders[model.impairment_id]["slot"]
    assert out["guardrails"]["slots"] == {CONCURRENCY_BUDGET: slot}
    assert store.get_impairment_checked(model.impairment_id)["budget_slots"] == {CONCURRENCY_BUDGET: slot}
    assert "budget_slots" not in store.get_impairment(model.impairment_id)
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
    page = paging.details(json.loads(envelope["Message"]))
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
    record = store.get_impairment_checked(models[2].impairment_id)  # Escalate records it with the outcome
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


def test_a_spent_budget_stops_the_recovery_before_the_fleet_or_its_refreshes_are_read(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    _config(monkeypatch, tmp_path)
    plan = {**SCALE, "max_recoveries_per_hour": 1}
    reads: list[str] = []
    fail_open, blocked_check = check_guardrails._fail_open, check_guardrails.blocked.check
    monkeypatch.setattr(check_guardrails, "_fail_open", lambda *a, **k: reads.append("fleet") or fail_open(*a, **k))
    monkeypatch.setattr(
        check_guardrails.blocked, "check", lambda *a, **k: reads.append("blocking") or blocked_check(*a, **k)
    )
    first = impairment(instances=["i-00000000000000001"])
    second = impairment(instances=["i-00000000000000002"], signal_time=first.signal.signal_time + timedelta(seconds=9))
    _check(store, first, plan, lambda_context)
    assert reads == ["blocking", "fleet"]

    with pytest.raises(GuardrailTripped, match="BUDGET#rate#plan#scale"):
        _check(store, second, plan, lambda_context)
    assert reads == ["blocking", "fleet"], "a storm past its rate limit describes no group"
    record = store.get_impairment_checked(second.impairment_id)
    assert record["guardrails_tripped"] == ["rate_limit"] and record["guardrail_trips"][0]["evidence"]["limit"] == 1
    # the first one's retry still holds its unit: it goes on reading and acting
    assert check_guardrails.handler(_state(first, plan), lambda_context, store=store)["guardrails"]["tripped"] == []
    assert reads[-2:] == ["blocking", "fleet"]


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
    record = store.get_impairment_checked(model.impairment_id)
    assert record["guardrails_tripped"] == ["maintenance_window"] and record["page"] is True
    # nothing was taken from the budgets
    assert store.budget_holders(CONCURRENCY_BUDGET, slots=25) == {}

    # The same resource tripping again within the window (a sweep every minute) is not paged again
    again = impairment(signal_time=model.signal.signal_time + timedelta(minutes=1))
    with pytest.raises(GuardrailTripped):
        _check(store, again, SCALE, lambda_context)
    assert store.get_impairment_checked(again.impairment_id)["page"] is False


def test_fail_open_stops_a_replacement_when_most_of_the_group_is_unhealthy(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    import boto3

    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=5, max_size=8)
    ids = workload.instance_ids()
    autoscaling = boto3.client("autoscaling")
    for instance in ids[1:3]:
        autoscaling.set_instance_health(InstanceId=instance, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False)
    model = workload.impairment_of(ids[0])

    with pytest.raises(GuardrailTripped, match="fail_open"):
        _check(store, model, REPLACE, lambda_context)
    record = store.get_impairment_checked(model.impairment_id)
    evidence = record["guardrail_trips"][0]["evidence"]
    assert evidence["fleet_size"] == 5 and evidence["impaired"] == sorted(ids[:3])
    assert evidence["group"] == workload.group_name


def _stop_instances(*instance_ids: str) -> None:
    import boto3

    boto3.client("ec2").stop_instances(InstanceIds=list(instance_ids))


def _acting_on(out: dict[str, Any]) -> list[str]:
    return [r["resource_id"] for r in out["impairment"]["affected_resources"] if r["resource_type"] == "ec2:instance"]


def test_the_only_instance_of_a_group_is_recovered(store, topic, monkeypatch, tmp_path, lambda_context):
    # Given a one-instance group whose instance stopped (100 % of the fleet impaired)
    _config(monkeypatch, tmp_path)
    workload = build_workload(min_size=1, max_size=2, desired=1)
    (only,) = workload.instance_ids()
    _stop_instances(only)

    # When its replacement is checked
    out = _check(store, workload.impairment_of(only), REPLACE, lambda_context)

    # Then it may go ahead: a fleet of one says nothing about a shared cause, and a stopped
    # instance is no healthy capacity to keep
    assert _acting_on(out) == [only]
    assert out["guardrails"]["tripped"] == [] and out["guardrails"]["groups"] == [workload.group_name]
    assert received(topic) == []


def test_a_group_of_three_that_loses_two_has_one_replaced_now_and_one_deferred(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    # Given a three-instance group, two of whose instances stopped, named by one impairment
    _config(monkeypatch, tmp_path)
    workload = build_workload(min_size=3, max_size=3, desired=3)
    ids = workload.instance_ids()
    _stop_instances(*ids[:2])
    model = workload.impairment_of(*ids[:2])
    store.acquire_locks(model.impairment_id, [r.key for r in model.affected_resources], 600)

    out = _check(store, model, REPLACE, lambda_context)

    # Then fail open does not trip (three is below its minimum fleet): a third of the group is
    # acted on now, the other is deferred, paged, and its lock given back for a later signal
    assert _acting_on(out) == [ids[0]] and out["guardrails"]["deferred"] == [ids[1]]
    assert out["guardrails"]["tripped"] == ["blast_radius"]
    assert store._lock_holders([f"ec2:instance/{ids[1]}"]) == {}
    assert store._lock_holders([f"ec2:instance/{ids[0]}"]) == {f"ec2:instance/{ids[0]}": model.impairment_id}
    (page,) = received(topic)
    assert paging.details(json.loads(page["Message"]))["deferred"] == [ids[1]]


def test_two_recoveries_of_a_small_group_deciding_at_the_same_moment_cannot_both_pass(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    # Given a three-instance group (a third: one instance at a time), two of whose instances fail
    # at the same moment, each behind its own signal
    _config(monkeypatch, tmp_path)
    workload = build_workload(min_size=3, max_size=3, desired=3)
    ids = workload.instance_ids()
    _stop_instances(*ids[:2])
    models = [
        workload.impairment_of(instance, signal_time=impairment().signal.signal_time + timedelta(seconds=n))
        for n, instance in enumerate(ids[:2])
    ]
    for model in models:
        store.put_impairment(model.model_dump(mode="json"), status="admitted")

    # And both CheckGuardrails read the budgets before either writes (DynamoDB applies each
    # transaction atomically; moto is made to as well)
    both_read = threading.Barrier(2, timeout=10)
    first_reads: set[int] = set()
    read = Table.get_many

    def read_then_wait(self, keys):
        items = read(self, keys)
        checking = threading.current_thread() is not threading.main_thread()
        if checking and threading.get_ident() not in first_reads:
            first_reads.add(threading.get_ident())
            both_read.wait()
        return items

    monkeypatch.setattr(Table, "get_many", read_then_wait)
    atomic = threading.Lock()
    transact = DynamoDBBackend.transact_write_items

    def transact_atomically(self, items):
        with atomic:
            return transact(self, items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", transact_atomically)

    outcomes: dict[str, Any] = {}

    def check(model) -> None:
        try:
            outcomes[model.impairment_id] = check_guardrails.handler(
                _state(model, REPLACE), lambda_context, store=store
            )
        except GuardrailTripped as exc:
            outcomes[model.impairment_id] = exc

    threads = [threading.Thread(target=check, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then exactly one may act, and the other is stopped by the blast radius
    passed = [o for o in outcomes.values() if isinstance(o, dict)]
    stopped = [o for o in outcomes.values() if isinstance(o, GuardrailTripped)]
    assert len(passed) == 1 and len(stopped) == 1, outcomes
    assert "blast_radius" in str(stopped[0])
    holders = store.budget_holders(f"BUDGET#blast_radius#{workload.group_name}")
    assert [h["instances"] for h in holders.values()] == [_acting_on(passed[0])]


def _second_group_on(workload, name: str, desired: int) -> str:
    import boto3

    subnet = workload.group()["VPCZoneIdentifier"]
    boto3.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "web-api", "Version": "$Latest"},
        MinSize=1,
        MaxSize=desired + 2,
        DesiredCapacity=desired,
        VPCZoneIdentifier=subnet,
        TargetGroupARNs=[workload.target_group_arn],
        Tags=[{"Key": "recovery:managed", "Value": "true", "PropagateAtLaunch": False}],
    )
    group = boto3.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return sorted(i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"])


def test_an_impairment_spanning_two_groups_is_guarded_per_group(store, topic, monkeypatch, tmp_path, lambda_context):
    # Given a target group shared by two groups (four and two instances), and an impairment of
    # three instances of the first and one of the second
    _config(monkeypatch, tmp_path, fail_open={"impaired_share": 1.0})
    workload = build_workload(desired=4, max_size=6, min_size=1)
    first = workload.instance_ids()
    second = _second_group_on(workload, "web-api-canary", 2)
    model = impairment(
        resources=[("ec2:instance", i) for i in [*first[:3], second[0]]],
        scope={"target_group_arn": workload.target_group_arn},
    )

    out = _check(store, model, REPLACE, lambda_context)

    # Then each group gets its own blast radius: one of the first (a third of four), one of the second
    assert _acting_on(out) == [first[0], second[0]]
    assert out["guardrails"]["deferred"] == first[1:3]
    assert out["guardrails"]["groups"] == sorted([workload.group_name, "web-api-canary"])


def test_most_of_one_of_two_groups_impaired_fails_open(store, topic, monkeypatch, tmp_path, lambda_context):
    # Given the same shared target group, with three of the first group's four instances impaired
    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=4, max_size=6, min_size=1)
    first = workload.instance_ids()
    second = _second_group_on(workload, "web-api-canary", 2)
    model = impairment(
        resources=[("ec2:instance", i) for i in [*first[:3], second[0]]],
        scope={"target_group_arn": workload.target_group_arn},
    )

    # Then fail open trips on that group: no instance of either is acted on
    with pytest.raises(GuardrailTripped, match="fail_open") as raised:
        _check(store, model, REPLACE, lambda_context)
    assert f"of group {workload.group_name}" in str(raised.value)


def test_the_other_groups_failing_targets_of_a_shared_target_group_are_left_out_of_verification(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    # Given a target group shared by two groups, an instance of the first stopped (failing in the
    # target group: another impairment's, say deferred by its blast radius), and an impairment of
    # one instance of the second
    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=4, max_size=6, min_size=1)
    first = workload.instance_ids()
    second = _second_group_on(workload, "web-api-green", 3)
    _stop_instances(first[0])
    model = impairment(resources=[("ec2:instance", second[0])], scope={"target_group_arn": workload.target_group_arn})

    out = _check(store, model, REPLACE, lambda_context)

    # Then only the second group is guarded, and the first group's failing target is not this
    # recovery's to fix: Verify leaves it out rather than wait for it
    assert out["guardrails"]["groups"] == ["web-api-green"]
    assert _acting_on(out) == [second[0]]
    assert out["guardrails"]["impaired_elsewhere"] == [first[0]]


def test_an_instance_whose_group_cannot_be_read_is_never_acted_on_unguarded(
    store, topic, monkeypatch, tmp_path, lambda_context
):
    from core.errors import TransientError

    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=3)
    model = workload.impairment_of(workload.instance_ids()[0])
    from core.reads import groups

    def unreadable(client, names):
        raise TransientError("autoscaling:DescribeAutoScalingGroups failed: Throttling")

    monkeypatch.setattr(groups, "describe_many", unreadable)  # every read of a group goes through it
    with pytest.raises(TransientError):
        _check(store, model, REPLACE, lambda_context)
    assert store.budget_holders(CONCURRENCY_BUDGET, slots=25) == {}


def test_a_recovery_that_verified_gives_its_share_back(store, topic, monkeypatch, tmp_path, lambda_context):
    from orchestration import finalize

    # Given a recovery holding the only instance a three-instance group may have acted on at once
    _config(monkeypatch, tmp_path)
    workload = build_workload(min_size=3, max_size=3, desired=3)
    ids = workload.instance_ids()
    _stop_instances(*ids[:2])
    first = workload.impairment_of(ids[0])
    second = workload.impairment_of(ids[1], signal_time=first.signal.signal_time + timedelta(seconds=30))
    out = _check(store, first, REPLACE, lambda_context)
    with pytest.raises(GuardrailTripped, match="blast_radius"):
        _check(store, second, REPLACE, lambda_context)

    # When it verifies (its replacement is healthy)
    finalize.handler({**out, "plan": {**REPLACE, "dry_run": False}, "actions": []}, lambda_context, store=store)

    # Then the group's next failure may be acted on at once, not after the window
    third = workload.impairment_of(ids[1], signal_time=first.signal.signal_time + timedelta(seconds=60))
    assert _acting_on(_check(store, third, REPLACE, lambda_context)) == [ids[1]]


def test_the_check_after_an_approval_sees_the_fleet_as_it_is_then(store, topic, monkeypatch, tmp_path, lambda_context):
    import boto3

    # Given a recovery that passed its guardrails, then waited for a human's approval
    _config(monkeypatch, tmp_path, rate_limits={"per_workload_per_hour": 1})
    workload = build_workload(desired=5, max_size=8, min_size=1)
    ids = workload.instance_ids()
    model = workload.impairment_of(ids[0])
    checked = _check(store, model, REPLACE, lambda_context)
    assert checked["guardrails"]["checks"] == 1

    # When it is checked again after the approval: its budgets are its own (the rate limit of
    # one is not taken twice) ...
    again = check_guardrails.handler(checked, lambda_context, store=store)
    assert again["guardrails"]["checks"] == 2 and _acting_on(again) == [ids[0]]

    # ... but the fleet changed while it waited: now most of it is unhealthy, so it fails open
    for instance in ids[1:4]:
        boto3.client("autoscaling").set_instance_health(
            InstanceId=instance, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False
        )
    with pytest.raises(GuardrailTripped, match="fail_open"):
        check_guardrails.handler(checked, lambda_context, store=store)
    # and the share of the group it held is given back: it acted on nothing
    assert store.budget_holders(f"BUDGET#blast_radius#{workload.group_name}") == {}


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


def test_the_shared_target_group_is_described_once_per_check(store, topic, monkeypatch, tmp_path, lambda_context):
    # Given the impairment's target group is also its group's: the fleet's read of it is reused
    # for what fails elsewhere
    from core import aws

    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=4, max_size=6, min_size=1)
    second = _second_group_on(workload, "web-api-green", 3)
    model = impairment(resources=[("ec2:instance", second[0])], scope={"target_group_arn": workload.target_group_arn})
    described: list[str] = []
    aws.client("elbv2", max_attempts=1).meta.events.register(
        "before-call.elastic-load-balancing-v2.DescribeTargetHealth", lambda params, **_: described.append("x")
    )

    out = _check(store, model, REPLACE, lambda_context)

    assert _acting_on(out) == [second[0]]
    assert len(described) == 1


def test_the_group_read_is_carried_to_the_actions_and_its_named_group_needs_no_look_up(
    store, topic, monkeypatch, tmp_path, lambda_context, aws_calls
):
    # Given a group of 3 whose impaired instance is stopped, the impairment naming the group
    import boto3

    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=3)
    impaired = workload.instance_ids()[0]
    boto3.client("ec2", region_name="us-east-1").stop_instances(InstanceIds=[impaired])
    model = workload.impairment_of(impaired)
    aws_calls.clear()

    # When the guardrails are checked
    out = _check(store, model, REPLACE, lambda_context)

    # Then the group is read once, its instances' membership taken from it (no
    # DescribeAutoScalingInstances), and what the actions need of the read is in the state
    # one read of the group (it tells the blocking check which group's instance refreshes to
    # read, then serves the fleet), no look-up
    assert [c for c in aws_calls if c.startswith("auto-scaling")] == [
        "auto-scaling:DescribeAutoScalingGroups",
        "auto-scaling:DescribeInstanceRefreshes",
    ]
    carried = out["guardrails"]["fleets"][workload.group_name]
    assert carried["instances"] == [impaired]
    assert carried["failing"][impaired].startswith(("EC2 state stopped", "target"))


def test_a_group_with_too_many_failing_members_is_not_carried():
    # Given a group decision with more failing members than the state carries
    from actions.fleet import Fleet

    failing = {f"i-{n:017x}": "target unhealthy" for n in range(check_guardrails.CARRIED_FAILING_MAX + 1)}
    decision = check_guardrails._GroupDecision(Fleet({"AutoScalingGroupName": "big"}, failing), ["i-1"], None)
    small = check_guardrails._GroupDecision(Fleet({"AutoScalingGroupName": "small"}, {"i-1": "x"}), ["i-1"], None)

    # Then only the small group is carried (the action reads the big one whole)
    assert list(check_guardrails.carried_fleets([decision, small])) == ["small"]


def test_the_blast_radius_is_read_with_the_other_budgets_and_its_shards_are_named_for_their_release(
    store, topic, monkeypatch, tmp_path, lambda_context, dynamodb_calls
):
    from core.guardrails import blast_healthy_key, blast_key

    # Given a group of six, two of whose instances fail (one the group still counts healthy:
    # only the load balancer sees it failing)
    _config(monkeypatch, tmp_path)
    workload = build_workload(desired=6, max_size=8)
    ids = workload.instance_ids()
    _stop_instances(ids[0])
    model = workload.impairment_of(*ids[:2])
    store.put_impairment(model.model_dump(mode="json"), status="admitted")
    dynamodb_calls.clear()

    out = check_guardrails.handler(_state(model, REPLACE), lambda_context, store=store)

    # Then its budgets (rates, concurrency, the group's 32 count shards and healthy item) were
    # read in one BatchGetItem, and the summary names the items its two units went to: two
    # shards of one, and the healthy item for the healthy instance it acts on
    assert dynamodb_calls.count("BatchGetItem") == 1
    assert _acting_on(out) == ids[:2]
    held = out["guardrails"]["blast_items"]
    assert len(held) == 3 and blast_healthy_key(workload.group_name) in held
    assert all(k.startswith(f"{blast_key(workload.group_name)}#") for k in held if "healthy" not in k)
    holders = store.budget_holders(blast_key(workload.group_name))
    assert holders[model.impairment_id]["instances"] == ids[:2]
