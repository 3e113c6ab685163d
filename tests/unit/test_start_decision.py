"""Start's decisions, without I/O: fully correlated, partly correlated, a broader impairment
superseding a narrower one, and a group-level signal explained by an open member recovery."""

from __future__ import annotations

from datetime import timedelta

from core.contract import ImpairmentType, Severity
from orchestration.start import broader_than, decide, member_groups, open_recovery_of_a_member
from tests.builders import SIGNAL_TIME, impairment

I1, I2 = "i-0aaaaaaaaaaaaaaa1", "i-0aaaaaaaaaaaaaaa2"


def _member_record(impairment_id: str = "member", **changes):
    """An open recovery of one instance of group web-asg."""
    record = {
        "impairment_id": impairment_id,
        "status": "recovering",
        "impairment_type": ImpairmentType.INSTANCE_FAILURE.value,
        "severity": Severity.HIGH.value,
        "impairment": {
            "account_id": impairment().account_id,
            "scope": {"auto_scaling_group": "web-asg"},
            "affected_resources": [{"resource_type": "ec2:instance", "resource_id": I1}],
        },
    }
    return {**record, **changes}


def test_every_resource_held_is_correlated_to_the_first_holder():
    model = impairment(instances=[I1, I2])
    keys = [r.key for r in model.affected_resources]
    decision = decide(model, {keys[0]: "b-open", keys[1]: "a-open"})
    assert decision.status == "correlated"
    assert decision.linked_to == "a-open"
    assert decision.linked == {"a-open": [keys[1]], "b-open": [keys[0]]}
    assert decision.remaining == []


def test_some_resources_held_recovers_the_rest():
    model = impairment(instances=[I1, I2])
    keys = [r.key for r in model.affected_resources]
    decision = decide(model, {keys[0]: "open"})
    assert decision.status == "partly_correlated"
    assert [r.resource_id for r in decision.remaining] == [I2]
    assert decision.linked == {"open": [keys[0]]}
    assert decision.linked_to is None


def test_nothing_held_is_a_recovery_of_its_own():
    model = impairment(instances=[I1])
    decision = decide(model, {})
    assert decision.status == "own"
    assert decision.remaining == model.affected_resources
    assert decision.linked == {}


def test_a_broader_scope_or_a_higher_severity_supersedes_a_narrower_one():
    zone = impairment(impairment_type=ImpairmentType.AZ_IMPAIRMENT, severity=Severity.HIGH)
    narrower = {"impairment_type": ImpairmentType.INSTANCE_FAILURE.value, "severity": Severity.CRITICAL.value}
    same = {"impairment_type": ImpairmentType.AZ_IMPAIRMENT.value, "severity": Severity.HIGH.value}
    region = {"impairment_type": ImpairmentType.REGION_IMPAIRMENT.value, "severity": Severity.LOW.value}
    lower = {"impairment_type": ImpairmentType.AZ_IMPAIRMENT.value, "severity": Severity.LOW.value}
    holders = {"narrower": narrower, "same": same, "region": region, "lower": lower, "unreadable": {}}
    assert broader_than(zone, holders) == {"narrower", "lower"}


def test_a_group_level_signal_is_explained_by_an_open_recovery_of_a_member():
    group = impairment(resources=[("autoscaling:group", "web-asg")])
    groups = member_groups(group)
    assert groups == {"web-asg"}
    assert open_recovery_of_a_member(group, groups, [_member_record()]) == "member"


def test_a_group_level_signal_is_its_own_when_no_open_member_recovery_explains_it():
    group = impairment(resources=[("autoscaling:group", "web-asg")], signal_time=SIGNAL_TIME + timedelta(seconds=60))
    groups = member_groups(group)
    assert open_recovery_of_a_member(group, groups, [_member_record(status="recovered")]) is None
    assert open_recovery_of_a_member(group, groups, [_member_record(outcome="recovered")]) is None
    other_group = _member_record()
    other_group["impairment"] = {**other_group["impairment"], "scope": {"auto_scaling_group": "other"}}
    assert open_recovery_of_a_member(group, groups, [other_group]) is None
    lower = _member_record(severity=Severity.LOW.value)
    assert open_recovery_of_a_member(group, groups, [lower]) is None  # the group signal is broader


def test_a_signal_naming_a_member_is_never_a_group_level_signal():
    assert member_groups(impairment(instances=[I1], scope={"auto_scaling_group": "web-asg"})) == set()
    assert member_groups(
        impairment(resources=[("autoscaling:group", "web-asg")], scope={"auto_scaling_group": "b"})
    ) == {
        "web-asg",
        "b",
    }
