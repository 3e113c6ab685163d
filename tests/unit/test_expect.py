"""recoveryctl/expect.py: a scenario's expectations and the invariants every drill is held to, on
crafted reports and table contents (the e2e tier checks them on real drills)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from recoveryctl import expect
from recoveryctl.scenario import Expectation, Invariant

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
EPOCH = int(NOW.timestamp())
RECORD = {"pk": "IMPAIRMENT#web-api-aaaa", "sk": "RECORD", "status": "recovered", "outcome": "recovered"}
APPLIED = {
    "pk": "IMPAIRMENT#web-api-aaaa",
    "sk": "ACTION#00#apply",
    "action": "replace_instance",
    "status": "done",
    "before": {"instances": ["i-1"]},
    "after": {"instances": []},
}
EXECUTION = {"name": "web-api-aaaa", "region": "us-east-1", "status": "SUCCEEDED"}


def facts(items: list[dict[str, Any]], **fields: Any) -> expect.Facts:
    values = {
        "tables": {"us-east-1": items},
        "executions": [EXECUTION],
        "dead_letters": {"us-east-1": 0},
        "now": NOW,
        **fields,
    }
    return expect.Facts(**values)


def broken(result: dict[str, Any]) -> dict[str, list[str]]:
    return {b["invariant"]: b["details"] for b in result["broken"]}


def test_a_clean_drill_breaks_no_invariant_and_every_one_is_checked():
    # Given a recovery that released everything (a windowed budget it took stays behind, and the
    # concurrency budget item of an older version, slots in one item, holds nobody)
    budget = {"pk": "BUDGET#concurrency", "sk": "BUDGET", "holders": {}, "expiration": EPOCH + 600}
    escalated = {"pk": "LOCK#ec2:instance/i-9", "sk": "ESCALATED", "owner": "web-api-aaaa", "expiration": EPOCH + 60}

    result = expect.check_invariants(facts([RECORD, APPLIED, budget, escalated]), off={})

    assert result["broken"] == []
    assert result["checked"] == list(expect.INVARIANTS) == list(Invariant.__args__)
    assert result["off"] == {}


def test_a_lock_a_correlation_window_and_a_concurrency_slot_left_held_are_each_named():
    lock = {"pk": "LOCK#ec2:instance/i-1", "sk": "LOCK", "owner": "web-api-aaaa", "expiration": EPOCH + 300}
    window = {"pk": "LOCK#ec2:instance/i-1", "sk": "CORRELATION", "owner": "web-api-zzzz", "expiration": EPOCH - 5}
    budget = {"pk": "BUDGET#concurrency#3", "sk": "BUDGET", "owner": "web-api-aaaa", "expiration": EPOCH}

    found = broken(expect.check_invariants(facts([RECORD, APPLIED, lock, window, budget]), off={}))

    assert found["no_lock_held"] == [
        "LOCK#ec2:instance/i-1 / LOCK in us-east-1, held by web-api-aaaa (its execution SUCCEEDED), "
        "for 300 s more (its TTL)"
    ]
    assert found["no_correlation_window_held"] == [
        "LOCK#ec2:instance/i-1 / CORRELATION in us-east-1, held by web-api-zzzz (no execution of that name), "
        "expired 5 s ago but never released"
    ]
    assert found["no_concurrency_slot_held"] == [
        "a concurrency slot (BUDGET#concurrency#3) in us-east-1 held by web-api-aaaa (its execution SUCCEEDED), "
        "for 0 s more (its TTL)"
    ]


def test_an_execution_without_its_record_or_outcome_breaks_the_audit_invariant():
    other = {**EXECUTION, "name": "web-api-bbbb", "status": "FAILED"}
    running = {**EXECUTION, "name": "web-api-cccc", "status": "RUNNING"}
    started = {"pk": "IMPAIRMENT#web-api-cccc", "sk": "RECORD", "status": "started"}

    found = broken(
        expect.check_invariants(facts([RECORD, APPLIED, started], executions=[EXECUTION, other, running]), off={})
    )

    assert found["every_execution_recorded"] == [
        "execution web-api-bbbb in us-east-1 (FAILED): no audit record IMPAIRMENT#web-api-bbbb / RECORD in that "
        "region's table",
        "execution web-api-cccc in us-east-1 (RUNNING): its record has no outcome (status started)",
        "execution web-api-cccc in us-east-1 (RUNNING): still running when the drill settled",
    ]


def test_a_record_in_another_regions_replica_does_not_count():
    # The replicas are not replicated in the emulator: an execution's record is in its region's
    found = broken(expect.check_invariants(facts([], executions=[{**EXECUTION, "region": "us-west-2"}]), off={}))
    assert "every_execution_recorded" in found


def test_an_action_step_without_its_state_before_or_after_or_left_started_is_named():
    no_after = {**APPLIED, "after": None}
    no_before = {**APPLIED, "sk": "ACTION#01#apply", "before": None}
    started = {**APPLIED, "sk": "ACTION#02#apply", "action": "provision_backup", "status": "started"}
    failed = {**APPLIED, "sk": "ACTION#03#apply", "status": "failed", "after": None}  # no after: it failed

    found = broken(expect.check_invariants(facts([RECORD, no_after, no_before, started, failed]), off={}))

    assert found["every_action_recorded"] == [
        "web-api-aaaa ACTION#00#apply (replace_instance) in us-east-1: done without its state after",
        "web-api-aaaa ACTION#01#apply (replace_instance) in us-east-1: no state before",
        "web-api-aaaa ACTION#02#apply (provision_backup) in us-east-1: left started, never finished (no state after)",
    ]


def test_dead_letters_in_any_stack_break_the_invariant_and_say_where():
    found = broken(
        expect.check_invariants(
            facts([RECORD, APPLIED], dead_letters={"us-east-1": 0, "111122223333/us-east-1": 2}), off={}
        )
    )
    assert found["no_dead_letters"] == ["111122223333/us-east-1: 2 message(s) in its dead-letter queue(s)"]


def test_an_invariant_switched_off_is_not_checked_and_the_report_says_why():
    lock = {"pk": "LOCK#ec2:instance/i-1", "sk": "LOCK", "owner": "web-api-aaaa", "expiration": EPOCH + 300}
    reason = "this drill stops the execution half way on purpose"

    result = expect.check_invariants(facts([RECORD, APPLIED, lock]), off={"no_lock_held": reason})

    assert result["broken"] == []
    assert "no_lock_held" not in result["checked"]
    assert result["off"] == {"no_lock_held": reason}


@pytest.mark.parametrize(
    "off",
    [{"no_lock_held": ""}, {"no_lock_held": "because"}, {"no_such_invariant": "a reason long enough to be a reason"}],
)
def test_switching_an_invariant_off_needs_a_known_name_and_a_written_reason(off):
    with pytest.raises(ValidationError):
        Expectation.model_validate({"invariants_off": off})


# --- expectations ----------------------------------------------------------------------------
def report(**fields: Any) -> dict[str, Any]:
    base = {
        "outcome": "recovered",
        "executions_started": 1,
        "outcomes": {"recovered": 1},
        "guardrails_tripped": [],
        "region": "us-east-1",
        "executions": [{"name": "web-api-aaaa", "plan": "surge-and-replace-unhealthy"}],
        "pages": [],
        "correlated": ["web-api-cccc"],
        "actions": [
            {"type": "scale_out", "phase": "apply", "result": "changed", "targets": ["web-api-asg"]},
            {"type": "replace_instance", "phase": "apply", "result": "changed", "targets": ["i-1"]},
            {"type": "scale_out", "phase": "return", "result": "changed", "targets": ["web-api-asg"]},
        ],
        "workload": {
            "name": "web-api",
            "group": "web-api-asg",
            "standby_group": None,
            "impaired_instances": ["i-1", "i-2"],
            "before": {
                "in_service": ["i-1", "i-2", "i-3"],
                "desired_capacity": 3,
                "dns_records": [
                    {"Failover": "PRIMARY", "ResourceRecords": [{"Value": "192.0.2.10"}]},
                    {"Failover": "SECONDARY", "ResourceRecords": [{"Value": "198.51.100.10"}]},
                ],
            },
            "after": {
                "in_service": ["i-2", "i-3", "i-4"],
                "desired_capacity": 3,
                "zonal_shifts": [],
                "dns_records": [
                    {"Failover": "SECONDARY", "ResourceRecords": [{"Value": "192.0.2.10"}]},
                    {"Failover": "PRIMARY", "ResourceRecords": [{"Value": "198.51.100.10"}]},
                ],
                "routing_controls": {"web-api-us-east-1": "Off", "web-api-us-west-2": "On"},
            },
        },
    }
    return {**base, **fields}


def check(expectation: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return expect.check_expectations(Expectation.model_validate(expectation), report(**fields))


def messages(result: dict[str, Any]) -> list[str]:
    return [f["message"] for f in result["failed"]]


def test_met_expectations_list_what_was_checked():
    result = check(
        {
            "outcome": "recovered",
            "plan": "surge-and-replace-unhealthy",
            "pages": 0,
            "correlated": 1,
            "final_state": {
                "in_service": 3,
                "impaired_in_service": 1,
                "desired_capacity": 3,
                "zonal_shifts": 0,
                "dns": "standby",
                "routing_controls": {"{workload}-us-east-1": "Off"},
            },
            "actions": [
                {"type": "scale_out", "phase": "apply", "result": "changed", "targets": "group"},
                {"type": "replace_instance", "phase": "apply", "targets": "impaired", "target_count": 1},
                {"type": "scale_out", "phase": "return"},
            ],
        }
    )

    assert result["failed"] == []
    assert result["checked"] == [
        "outcome",
        "plan",
        "pages",
        "correlated",
        "final_state.in_service",
        "final_state.impaired_in_service",
        "final_state.desired_capacity",
        "final_state.zonal_shifts",
        "final_state.dns",
        "final_state.routing_controls",
        "actions",
    ]


def test_every_failure_says_what_was_expected_and_what_was_seen():
    result = check(
        {
            "outcome": "escalated",
            "plan": "replace-failed-instance",
            "pages": 1,
            "correlated": 0,
            "final_state": {"impaired_in_service": 0, "dns": "primary", "ecs_running": 2},
        }
    )

    assert messages(result) == [
        "outcome: expected escalated, saw recovered",
        "plan: expected replace-failed-instance, saw surge-and-replace-unhealthy",
        "pages: expected 1, saw 0",
        "correlated: expected 0, saw 1",
        "final_state.impaired_in_service: expected 0, saw 1",
        "final_state.dns: expected primary, saw standby",
        "final_state.ecs_running: expected 2, saw none",
    ]
    assert result["failed"][0] == {
        "expectation": "outcome",
        "expected": "escalated",
        "seen": "recovered",
        "message": "outcome: expected escalated, saw recovered",
    }


def test_actions_are_compared_in_order_field_by_field():
    result = check(
        {
            "actions": [
                {"type": "scale_out", "phase": "apply", "targets": "standby_group"},
                {"type": "replace_instance", "phase": "apply", "targets": "impaired", "target_count": 2},
                {"type": "scale_out", "phase": "rollback"},
            ]
        }
    )

    assert messages(result) == [
        "actions[0].targets: expected standby_group, saw [web-api-asg] (scale_out apply changed on web-api-asg)",
        "actions[1].target_count: expected 2, saw 1 (replace_instance apply changed on i-1)",
        "actions[2].phase: expected rollback, saw return (scale_out return changed on web-api-asg)",
    ]


def test_a_different_number_of_actions_lists_both():
    result = check({"actions": [{"type": "replace_instance", "phase": "apply", "targets": "impaired"}]})

    assert messages(result) == [
        "actions: expected 1 step(s): replace_instance apply (any result) on impaired, saw 3: scale_out apply "
        "changed on web-api-asg; replace_instance apply changed on i-1; scale_out return changed on web-api-asg"
    ]


def test_impaired_targets_are_only_instances_the_drill_impaired():
    acted = [{"type": "replace_instance", "phase": "apply", "result": "changed", "targets": ["i-1", "i-9"]}]
    result = check({"actions": [{"type": "replace_instance", "targets": "impaired"}]}, actions=acted)
    assert messages(result) == [
        "actions[0].targets: expected impaired, saw [i-1, i-9] (replace_instance apply changed on i-1, i-9)"
    ]


def test_a_plan_is_met_only_when_every_execution_chose_it():
    runs = [{"name": "a", "plan": "replace-failed-instance"}, {"name": "b", "plan": "surge-and-replace-unhealthy"}]
    result = check({"plan": "replace-failed-instance"}, executions=runs)
    assert messages(result) == [
        "plan: expected replace-failed-instance, saw replace-failed-instance, surge-and-replace-unhealthy"
    ]


@pytest.mark.parametrize(
    ("after_primary", "expected"),
    [("192.0.2.10", "primary"), ("198.51.100.10", "standby"), ("203.0.113.7", "changed: 203.0.113.7")],
)
def test_dns_says_which_endpoint_the_primary_record_now_serves(after_primary, expected):
    data = report()
    data["workload"]["after"]["dns_records"] = [{"Failover": "PRIMARY", "ResourceRecords": [{"Value": after_primary}]}]
    assert expect.final_state("dns", data) == expected


def test_a_final_state_of_a_part_the_workload_does_not_have_is_none():
    data = report()
    data["workload"]["after"] = {"ecs_service": {"running": 2, "desired": 2}}
    assert expect.final_state("in_service", data) is None
    assert expect.final_state("standby_in_service", data) is None
    assert expect.final_state("database_moved", data) is None
    assert expect.final_state("ecs_running", data) == 2


def test_a_second_group_on_the_target_group_has_its_own_final_state_and_its_impaired_instances_count():
    # Given a blue/green pair: i-1 of the group and i-7 of the second group were impaired; i-1 was
    # replaced, i-7 is still in service in the second group
    data = report()
    data["workload"]["second_group"] = "web-api-asg-green"
    data["workload"]["impaired_instances"] = ["i-1", "i-7"]
    data["workload"]["after"]["second_group"] = {
        "name": "web-api-asg-green",
        "desired_capacity": 2,
        "in_service": ["i-7", "i-8"],
    }

    result = check(
        {"final_state": {"second_in_service": 2, "second_desired_capacity": 3, "impaired_in_service": 0}},
        workload=data["workload"],
    )

    # Then the second group is compared on its own, and an impaired instance left in it counts
    assert result["checked"] == [
        "final_state.impaired_in_service",
        "final_state.second_in_service",
        "final_state.second_desired_capacity",
    ]
    assert messages(result) == [
        "final_state.impaired_in_service: expected 0, saw 1",
        "final_state.second_desired_capacity: expected 3, saw 2",
    ]


def test_without_a_second_group_its_final_state_is_none():
    assert expect.final_state("second_in_service", report()) is None
    assert expect.final_state("second_desired_capacity", report()) is None


def test_the_documented_scenario_and_actions_examples_validate():
    import json
    import re
    from pathlib import Path

    from recoveryctl.scenario import Scenario

    docs = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", docs, flags=re.DOTALL)
    example = Scenario.model_validate(json.loads(blocks[0]))
    assert example.expect.final_state is not None and example.expect.actions
    actions = next(b for b in blocks if b.lstrip().startswith('"actions"'))
    Expectation.model_validate(json.loads("{" + actions + "}"))


def test_a_capacity_change_left_under_way_breaks_the_invariant_and_open_grants_do_not():
    # Given one group's ledger left with a give-back decided and never finished, and another
    # group's ledger holding only a grant the plan keeps
    arn = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:uuid:autoScalingGroupName/web-api-asg"
    left = {
        "pk": f"CAPACITY#{arn}",
        "sk": "LEDGER",
        "grants": {"web-api-aaaa#1": {"delta": 1, "expires": EPOCH + 60}},
        "changing": {"key": "web-api-aaaa#1", "kind": "return", "found": 5, "to": 4, "delta": 1},
    }
    kept = {"pk": "CAPACITY#other", "sk": "LEDGER", "grants": {"web-api-aaaa#1": {"delta": 1, "expires": EPOCH}}}

    found = broken(expect.check_invariants(facts([RECORD, APPLIED, left, kept]), off={}))

    # Then only the change under way is named, with whose it is
    assert found["no_capacity_change_under_way"] == [
        f"CAPACITY#{arn} in us-east-1: a return 5 -> 4 by web-api-aaaa (its execution SUCCEEDED) never finished"
    ]


@pytest.mark.parametrize(
    ("replica", "expected"),
    [
        ({"source": None, "status": "available"}, "standby"),
        # promoted but still rebooting: nothing in the standby region takes writes yet
        ({"source": None, "status": "rebooting"}, "primary"),
        ({"source": "arn:aws:rds:us-east-1:123456789012:db:web-api-db", "status": "available"}, "primary"),
    ],
)
def test_the_database_writer_of_a_read_replica_is_the_standby_only_once_it_stands_alone_and_is_available(
    replica, expected
):
    data = report()
    data["workload"]["after"] = {"standby": {"region": "us-west-2"}, "read_replica": {"db_instance": "r", **replica}}
    assert expect.final_state("database_writer", data) == expected
