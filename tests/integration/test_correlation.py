"""Correlation: signals about the same resource within the window are one impairment and start
one recovery; MTTD counts from the earliest signal."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest

from orchestration import start
from tests.builders import REGION, SIGNAL_TIME, bus_event, create_state_machine, impairment

INSTANCE = "i-0abc123def4567890"
TG_ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-api-target-alarm"
HEALTH = "arn:aws:health:us-east-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/abc"


@pytest.fixture
def state_machine(store, monkeypatch) -> str:
    arn = create_state_machine()
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return arn


def _executions(arn: str) -> list[dict]:
    return boto3.client("stepfunctions", region_name=REGION).list_executions(stateMachineArn=arn)["executions"]


def test_three_signals_about_one_instance_start_one_recovery(state_machine, store, lambda_context):
    # Given three different signals about one instance: its status check alarm, its target
    # going unhealthy (detected first, though it fired later), and an AWS Health event
    status_check = impairment(instances=[INSTANCE], signal_time=SIGNAL_TIME)
    target = impairment(
        instances=[INSTANCE, "i-0other"], signal_id=TG_ALARM, signal_time=SIGNAL_TIME + timedelta(seconds=20)
    )
    health = impairment(instances=[INSTANCE], signal_id=HEALTH, signal_time=SIGNAL_TIME + timedelta(seconds=40))

    # When they arrive, the later-firing target alarm first
    results = [
        start.handler(bus_event(i.model_dump(mode="json")), lambda_context) for i in (target, status_check, health)
    ]

    # Then one execution, the others linked to it
    assert [r["status"] for r in results] == ["started", "correlated", "correlated"]
    assert [e["name"] for e in _executions(state_machine)] == [target.impairment_id]
    primary = store.get_impairment(target.impairment_id)
    assert [s["impairment_id"] for s in primary["linked_signals"]] == [status_check.impairment_id, health.impairment_id]
    # And MTTD counts from the earliest signal (the status check), not from the first detected
    assert primary["mttd_seconds"] == pytest.approx((target.detected_at - SIGNAL_TIME).total_seconds())
    assert store.get_impairment(status_check.impairment_id)["linked_to"] == target.impairment_id


def test_once_the_recovery_is_over_a_new_signal_starts_a_new_one(state_machine, store, lambda_context):
    first = impairment(instances=[INSTANCE])
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    store.release_locks(first.impairment_id, [f"ec2:instance/{INSTANCE}"])  # what Finalize does

    second = impairment(instances=[INSTANCE], signal_id=TG_ALARM)
    assert start.handler(bus_event(second.model_dump(mode="json")), lambda_context)["status"] == "started"
    assert len(_executions(state_machine)) == 2


def test_signals_about_different_resources_are_different_impairments(state_machine, lambda_context):
    one = impairment(instances=["i-0aaa"])
    other = impairment(instances=["i-0bbb"], signal_id=TG_ALARM)
    for item in (one, other):
        assert start.handler(bus_event(item.model_dump(mode="json")), lambda_context)["status"] == "started"
    assert len(_executions(state_machine)) == 2


def test_an_impairment_partly_covered_by_an_open_one_recovers_the_rest(state_machine, store, lambda_context):
    # Given a recovery under way for one instance
    first = impairment(instances=[INSTANCE])
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)

    # When another alarm names that instance and a second one
    both = impairment(instances=[INSTANCE, "i-0second"], signal_id=TG_ALARM, signal_time=SIGNAL_TIME)
    out = start.handler(bus_event(both.model_dump(mode="json")), lambda_context)

    # Then the second instance gets its own recovery (not dropped), the first is linked to its own
    assert out["status"] == "started"
    (execution,) = [e for e in _executions(state_machine) if e["name"] == both.impairment_id]
    given = json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"]
    )
    assert [r["resource_id"] for r in given["impairment"]["affected_resources"]] == ["i-0second"]
    assert store.get_impairment(both.impairment_id)["linked"] == {first.impairment_id: [f"ec2:instance/{INSTANCE}"]}
    (linked,) = store.get_impairment(first.impairment_id)["linked_signals"]
    assert linked["resources"] == [f"ec2:instance/{INSTANCE}"]


def test_a_zone_impairment_after_instance_alarms_supersedes_them(state_machine, store, lambda_context, any_plan):
    from core.contract import ImpairmentType, Severity
    from orchestration import admit

    # Given a status-check alarm's recovery of one instance, holding its window and its lock
    first = impairment(instances=[INSTANCE])
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    store.acquire_locks(first.impairment_id, [f"ec2:instance/{INSTANCE}"], 600)

    # When AWS Health says the zone is impaired, naming that instance and another
    zone = impairment(
        instances=[INSTANCE, "i-0second"],
        impairment_type=ImpairmentType.AZ_IMPAIRMENT,
        severity=Severity.CRITICAL,
        signal_id=HEALTH,
        signal_time=SIGNAL_TIME + timedelta(seconds=30),
        scope={"availability_zone": "use1-az2"},
    )
    out = start.handler(bus_event(zone.model_dump(mode="json")), lambda_context)

    # Then it is not folded into the instance's recovery: it starts its own, on every resource,
    # and supersedes the narrower one
    assert out["status"] == "started"
    (execution,) = [e for e in _executions(state_machine) if e["name"] == zone.impairment_id]
    given = json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"]
    )
    assert len(given["impairment"]["affected_resources"]) == 2
    assert given["supersedes"] == [first.impairment_id]
    assert store.get_impairment(first.impairment_id)["superseded_by"] == zone.impairment_id
    # and Admit takes the narrower one's lock over
    admitted = admit.handler({**given, "input": given, "execution": "arn"}, lambda_context, store=store)["admission"]
    assert store._lock_holders(admitted["lock_keys"]) == {k: zone.impairment_id for k in admitted["lock_keys"]}

    # And a later instance signal about that zone's instance is linked to the zone impairment
    later = impairment(instances=[INSTANCE], signal_time=SIGNAL_TIME + timedelta(seconds=60), signal_id=TG_ALARM)
    assert start.handler(bus_event(later.model_dump(mode="json")), lambda_context) == {
        "status": "correlated",
        "impairment_id": zone.impairment_id,
    }


def test_a_narrower_or_equal_signal_is_linked_not_superseding(state_machine, store, lambda_context):
    from core.contract import Severity

    first = impairment(instances=[INSTANCE], severity=Severity.HIGH)
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    lower = impairment(instances=[INSTANCE], severity=Severity.MEDIUM, signal_id=TG_ALARM)
    assert start.handler(bus_event(lower.model_dump(mode="json")), lambda_context)["status"] == "correlated"
    assert "superseded_by" not in store.get_impairment(first.impairment_id)


def test_a_paused_impairment_closes_its_windows_so_the_next_signal_recovers(
    state_machine, store, lambda_context, monkeypatch
):
    from orchestration import admit, escalate
    from tests.builders import capture_topic

    topic_arn, _ = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    # Given automatic recovery is paused when an instance fails
    store.set_paused(True, "change freeze")
    first = impairment(instances=[INSTANCE])
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    state = {"impairment": first.model_dump(mode="json")}
    from core.errors import RecoveryPaused

    with pytest.raises(RecoveryPaused):
        admit.handler(state, lambda_context, store=store)
    escalate.handler({**state, "error": {"Error": "RecoveryPaused", "Cause": "paused"}}, lambda_context, store=store)

    # When recovery resumes and the alarm fires again within the correlation window
    store.set_paused(False)
    again = impairment(instances=[INSTANCE], signal_time=SIGNAL_TIME + timedelta(seconds=60), signal_id=TG_ALARM)

    # Then it starts a recovery: it is not folded into the skipped one
    assert start.handler(bus_event(again.model_dump(mode="json")), lambda_context)["status"] == "started"


def test_an_impairment_skipped_for_a_held_lock_closes_its_windows(state_machine, store, lambda_context):
    from core.errors import RecoveryInProgress
    from orchestration import admit

    # Given a long recovery holding the instance's lock, past its correlation window
    holder = impairment(instances=[INSTANCE], signal_time=SIGNAL_TIME - timedelta(hours=1))
    store.acquire_locks(holder.impairment_id, [f"ec2:instance/{INSTANCE}"], 7200)

    # When a new signal's recovery is skipped at Admit
    skipped = impairment(instances=[INSTANCE], signal_id=TG_ALARM)
    start.handler(bus_event(skipped.model_dump(mode="json")), lambda_context)
    with pytest.raises(RecoveryInProgress):
        admit.handler({"impairment": skipped.model_dump(mode="json")}, lambda_context, store=store)

    # Then it holds no window: once the holder is done, the next signal recovers
    store.release_locks(holder.impairment_id, [f"ec2:instance/{INSTANCE}"])
    later = impairment(instances=[INSTANCE], signal_id=HEALTH, signal_time=SIGNAL_TIME + timedelta(seconds=30))
    assert start.handler(bus_event(later.model_dump(mode="json")), lambda_context)["status"] == "started"


GROUP = "web-api-asg"
SCOPE = {"auto_scaling_group": GROUP}


def _group_signal(**kwargs) -> object:
    """A signal about the group as a whole (an unhealthy-hosts alarm when no target is unhealthy
    any more): it names the group, no instance."""
    kwargs.setdefault("signal_id", TG_ALARM)
    return impairment(
        impairment_type=start.ImpairmentType.SERVICE_DEGRADATION,
        resources=[("autoscaling:group", GROUP)],
        signal_time=SIGNAL_TIME + timedelta(seconds=60),
        scope=SCOPE,
        **kwargs,
    )


def test_a_group_signal_while_one_of_its_instances_is_recovered_is_that_recovery(state_machine, store, lambda_context):
    # Given an instance of the group being replaced
    first = impairment(instances=[INSTANCE], scope=SCOPE)
    assert start.handler(bus_event(first.model_dump(mode="json")), lambda_context)["status"] == "started"

    # When the group's unhealthy-hosts alarm fires a minute later, naming only the group
    late = _group_signal()
    out = start.handler(bus_event(late.model_dump(mode="json")), lambda_context)

    # Then it is linked to the open recovery: no second execution (it would scale out and find
    # nothing to replace), no page
    assert out == {"status": "correlated", "impairment_id": first.impairment_id}
    assert len(_executions(state_machine)) == 1
    assert store.get_impairment(late.impairment_id)["linked_to"] == first.impairment_id


def test_a_group_signal_is_not_linked_to_another_groups_instance(state_machine, lambda_context):
    other = impairment(instances=["i-0other"], scope={"auto_scaling_group": "another-asg"})
    start.handler(bus_event(other.model_dump(mode="json")), lambda_context)
    assert start.handler(bus_event(_group_signal().model_dump(mode="json")), lambda_context)["status"] == "started"
    assert len(_executions(state_machine)) == 2


def test_a_more_severe_group_signal_recovers_on_its_own(state_machine, lambda_context):
    first = impairment(instances=[INSTANCE], scope=SCOPE)
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    critical = _group_signal(severity=start.Severity.CRITICAL)
    assert start.handler(bus_event(critical.model_dump(mode="json")), lambda_context)["status"] == "started"
    assert len(_executions(state_machine)) == 2


def test_a_group_signal_after_the_instance_recovery_ended_recovers_on_its_own(state_machine, store, lambda_context):
    first = impairment(instances=[INSTANCE], scope=SCOPE)
    start.handler(bus_event(first.model_dump(mode="json")), lambda_context)
    store.update_impairment(first.impairment_id, status="recovered", outcome="recovered")
    assert start.handler(bus_event(_group_signal().model_dump(mode="json")), lambda_context)["status"] == "started"
    assert len(_executions(state_machine)) == 2
