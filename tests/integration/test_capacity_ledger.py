"""The capacity ledger under moto: recoveries that each add emergency capacity to one Auto Scaling
group give all of it back, in any order, around operators and concurrent recoveries; each group
keeps its own ledger."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from actions import base, scale_out
from core import aws
from core.errors import PermanentError, TransientError
from core.store import RecoveryStore
from orchestration import prepare_rollback
from tests.builders import REGION, TABLE_NAME, action_event, build_workload

MANAGED = ("recovery:managed", "true")


def recovery(workload, name: str):
    """An impairment of the group, from its own alarm: one recovery."""
    return workload.impairment_of(signal_id=f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{name}")


def scale(store, model, increment: int = 1) -> dict[str, Any]:
    event = action_event(model, "scale_out", params={"increment": increment})
    return base.run(scale_out.ACTION, "apply", event, store, MANAGED)


def give_back(store, model, applied: dict[str, Any]) -> dict[str, Any]:
    event = action_event(model, "scale_out", applied=applied)
    return base.run(scale_out.ACTION, "rollback", event, store, MANAGED)


def ledger_of(store: RecoveryStore, workload):
    return store.capacity.read(workload.group()["AutoScalingGroupARN"])


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["first-granted-first", "last-granted-first"])
def test_two_recoveries_that_each_scaled_out_a_group_give_all_of_it_back_in_either_order(store, order):
    # Given two recoveries of one group each added one instance: 4 -> 5 -> 6
    workload = build_workload(min_size=1, desired=4, max_size=10)
    models = [recovery(workload, "first"), recovery(workload, "second")]
    applied = [scale(store, m) for m in models]
    assert workload.desired_capacity() == 6

    # When each gives back its capacity, in either order
    first, second = (give_back(store, models[i], applied[i]) for i in order)

    # Then the group is back at its 4, each gave back its own one, and the ledger is empty
    assert workload.desired_capacity() == 4
    assert (first["before"]["desired_capacity"], first["after"]["desired_capacity"]) == (6, 5)
    assert "gave back 1 of the 2 added by recoveries" in first["message"]
    assert "stays until it is given back" in first["message"]
    assert second["message"].startswith("desired capacity 5 -> 4: gave back 1 of the 1 added by recovery")
    assert ledger_of(store, workload).grants == {}


def test_an_operator_who_lowered_the_group_between_two_grants_is_not_fought(store):
    # Given two recoveries added one each (4 -> 6), then an operator put the group back to 5
    workload = build_workload(min_size=1, desired=4, max_size=10)
    models = [recovery(workload, "first"), recovery(workload, "second")]
    applied = [scale(store, m) for m in models]
    workload.set_desired_capacity(5)

    # When the first gives back: the one the operator took counts as its own, given back
    first = give_back(store, models[0], applied[0])
    assert workload.desired_capacity() == 5
    assert first["result"] == "unchanged"
    assert "already been taken away by someone else" in first["message"]

    # And when the second gives back, the group is at its own 4, never raised, never below
    give_back(store, models[1], applied[1])
    assert workload.desired_capacity() == 4


def test_an_operator_who_raised_the_group_between_two_grants_keeps_what_he_added(store):
    # Given two recoveries added one each (4 -> 6), then an operator raised the group to 8
    workload = build_workload(min_size=1, desired=4, max_size=10)
    models = [recovery(workload, "first"), recovery(workload, "second")]
    applied = [scale(store, m) for m in models]
    workload.set_desired_capacity(8)

    # When both give back
    for model, result in zip(models, applied, strict=True):
        give_back(store, model, result)

    # Then only the recoveries' 2 went: the operator's 2 stay
    assert workload.desired_capacity() == 6


class RacingClient:
    """The table's client, except that before the first ledger write it is given, `race` runs
    (another recovery's write lands between this one's read and its write)."""

    def __init__(self, race) -> None:
        self._client = boto3.client("dynamodb", region_name=REGION)
        self.race = race
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        if kwargs.get("Item", {}).get("sk", {}).get("S") == "LEDGER":
            self.writes += 1
            if self.writes == 1:
                self.race()
        return self._client.put_item(**kwargs)


def test_a_grant_made_while_a_recovery_gives_back_is_kept_and_the_give_back_decides_again(store):
    # Given recovery A added one instance (4 -> 5)
    workload = build_workload(min_size=1, desired=4, max_size=10)
    a, b = recovery(workload, "a"), recovery(workload, "b")
    applied_a = scale(store, a)

    # When A gives back, and recovery B scales the group out (5 -> 6) between A's read of the
    # ledger and its write
    racing = RacingClient(lambda: scale(store, b))
    returned = give_back(RecoveryStore(TABLE_NAME, client=racing), a, applied_a)

    # Then A's write lost the race and was retried on what B wrote: A took its own one off the
    # group as B left it (6 -> 5), and B's grant is still in the ledger
    assert racing.writes >= 3  # A's lost write, A's retried one, A's finish
    assert (returned["before"]["desired_capacity"], returned["after"]["desired_capacity"]) == (6, 5)
    assert workload.desired_capacity() == 5
    assert [g["impairment_id"] for g in ledger_of(store, workload).grants.values()] == [b.impairment_id]

    # And once B gives back too, the group is at its own 4
    give_back(store, b, store.get_action(b.impairment_id, 0, "apply")["result"])
    assert workload.desired_capacity() == 4


def test_a_recovery_waits_while_another_recoverys_change_of_the_group_is_under_way(store):
    # Given recovery A decided a change of the group and has not finished it (its Lambda is
    # setting the desired capacity right now)
    workload = build_workload(min_size=1, desired=4, max_size=10)
    a, b = recovery(workload, "a"), recovery(workload, "b")
    arn = workload.group()["AutoScalingGroupARN"]
    grant = {"impairment_id": a.impairment_id, "step": 0, "action": "scale_out", "expires": 4102444800}
    store.capacity.begin(
        arn, f"{a.impairment_id}#0", lambda _: {"kind": "grant", "found": 4, "to": 5, "delta": 1, "grant": grant}
    )

    # When recovery B scales the same group out
    with pytest.raises(TransientError, match="is changing this group's desired capacity"):
        scale(store, b)

    # Then it changed nothing (the state machine retries it once A's change is done)
    assert workload.desired_capacity() == 4


def test_grants_of_two_groups_are_independent(store):
    # Given one recovery scaled out group one (3 -> 5) and another group two (2 -> 3)
    one = build_workload(min_size=1, desired=3, max_size=10)
    two = build_workload("orders", min_size=1, desired=2, max_size=10)
    first, second = recovery(one, "one"), recovery(two, "two")
    applied_one = scale(store, first, increment=2)
    applied_two = scale(store, second)

    # When the first gives its capacity back
    give_back(store, first, applied_one)

    # Then group one is back at 3, group two keeps its grant and its capacity, untouched
    assert one.desired_capacity() == 3
    assert two.desired_capacity() == 3
    assert [g["delta"] for g in ledger_of(store, two).grants.values()] == [1]
    assert ledger_of(store, one).grants == {}

    # And the second gives back its own
    give_back(store, second, applied_two)
    assert two.desired_capacity() == 2


def test_a_scale_out_rolled_back_right_after_its_verify_failed_gives_back_its_own(store, lambda_context):
    # Given recovery A scaled the group out (4 -> 5) and recovery B after it (5 -> 6); then A's
    # Verify failed and the workflow rolls A back at once, from its audit trail
    workload = build_workload(min_size=1, desired=4, max_size=10)
    a, b = recovery(workload, "a"), recovery(workload, "b")
    store.put_impairment(a.model_dump(mode="json"), status="recovering")  # as Start records it
    scale(store, a)
    applied_b = scale(store, b)
    state = {
        "impairment": a.model_dump(mode="json"),
        "plan": {"name": "p", "steps": [{"index": 0, "action": "scale_out", "params": {"increment": 1}}]},
        "error": {"Error": "VerificationFailed", "Cause": "the group did not recover"},
    }
    (step,) = prepare_rollback.handler(state, lambda_context, store=store)

    # When A's rollback runs
    undone = give_back(store, a, step["applied"])

    # Then A's one goes (6 -> 5), B's stays until B gives it back, and then the group is at 4
    assert undone["result"] == "changed" and workload.desired_capacity() == 5
    give_back(store, b, applied_b)
    assert workload.desired_capacity() == 4


def test_a_raise_that_failed_half_way_is_rolled_back_without_taking_the_groups_own_capacity(store):
    # Given scale_out recorded its grant, and then Auto Scaling refused to set the capacity
    workload = build_workload(min_size=1, desired=4, max_size=10)
    model = recovery(workload, "a")
    group = workload.group()
    client = aws.client("autoscaling", max_attempts=1)  # the client the action uses
    with Stubber(client) as stubber:
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stubber.add_client_error("set_desired_capacity", service_error_code="ValidationError", http_status_code=400)
        with pytest.raises(PermanentError):
            scale(store, model)
    assert workload.desired_capacity() == 4

    # When the workflow rolls the step back, from the state it recorded before
    record = store.get_action(model.impairment_id, 0, "apply")
    undone = give_back(store, model, {"before": record["before"], "after": {}})

    # Then nothing is taken off the group (the raise never landed), and the ledger is empty
    assert workload.desired_capacity() == 4
    assert undone["result"] == "unchanged"
    assert ledger_of(store, workload).grants == {} and ledger_of(store, workload).changing is None


def test_a_grant_no_longer_given_back_becomes_the_groups_own_when_it_expires(store, frozen_clock):
    # Given recovery A added one instance the plan keeps (4 -> 5), then recovery B one (5 -> 6)
    from core.capacity import HOLD_SECONDS

    workload = build_workload(min_size=1, desired=4, max_size=10)
    a, b = recovery(workload, "a"), recovery(workload, "b")
    kept = base.run(scale_out.ACTION, "apply", action_event(a, "scale_out", params={"keep": True}), store, MANAGED)
    applied_b = scale(store, b)

    # When A's grant has outlived any rollback of A, and B gives its one back
    frozen_clock.advance(HOLD_SECONDS + 1)
    assert list(ledger_of(store, workload).grants) == [f"{b.impairment_id}#0"]
    give_back(store, b, applied_b)

    # Then A's instance is the group's own now: it stays, and A has nothing left to give back
    assert workload.desired_capacity() == 5
    late = give_back(store, a, kept)
    assert late["result"] == "unchanged" and "nothing to give back" in late["message"]
    assert workload.desired_capacity() == 5
