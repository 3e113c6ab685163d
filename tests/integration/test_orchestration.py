"""The workflow's other tasks under moto: plan selection, verification, rollback preparation,
finalization and escalation, each with the input the state machine gives it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import boto3
import pytest

from actions import replace_instance
from actions.base import Action, ActionParams, ActionResult, Context, run
from core import paging
from core.contract import ImpairmentType, Severity
from core.errors import InvalidInput, NoMatchingPlan, PermanentError
from core.guardrails import blast_key
from core.observability import metrics
from core.store import CONCURRENCY_BUDGET, Claim
from orchestration import admit, escalate, finalize, prepare_rollback, verify
from tests.builders import (
    MANAGED_TAG,
    REGION,
    action_event,
    build_workload,
    capture_topic,
    get_item,
    impairment,
    received,
    use_runtime_config,
)
from tests.emf import datapoints, named

INSTANCE = "i-0abc123def4567890"
PLANS = [
    {
        "name": "replace-failed-instance",
        "match": {"impairment_types": ["instance_failure"], "max_severity": "high"},
        "steps": [{"action": "replace_instance"}, {"action": "scale_out", "params": {"increment": 2}}],
        "verify": {"wait_seconds": 20, "max_attempts": 6},
    },
    {
        "name": "add-capacity",
        "match": {"impairment_types": ["resource_exhaustion", "service_degradation"]},
        "steps": [{"action": "scale_out"}],
    },
]


@pytest.fixture
def plans(monkeypatch, tmp_path) -> None:
    use_runtime_config(monkeypatch, tmp_path, plans=PLANS)


def plan_of(model, context) -> dict[str, Any]:
    """The plan Admit chooses for the impairment (and records with its admission)."""
    return admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, context)["plan"]


def lock_owner(resource_key: str) -> str | None:
    item = get_item(f"LOCK#{resource_key}", "LOCK")
    return item["owner"] if item else None


# --- the plan Admit selects ----------------------------------------------------------------------------


def test_admit_selects_the_matching_plan_with_indexed_steps(store, plans, lambda_context):
    # Given an admitted instance failure of high severity
    model = impairment(impairment_type=ImpairmentType.INSTANCE_FAILURE, severity=Severity.HIGH)
    store.put_impairment(model.model_dump(mode="json"), status="admitted")

    # When the plan is selected
    plan = plan_of(model, lambda_context)

    # Then it is the plan for instance failures, with its steps numbered for the action tasks
    assert plan["name"] == "replace-failed-instance"
    assert plan["steps"] == [
        {"index": 0, "action": "replace_instance", "params": {}},
        {"index": 1, "action": "scale_out", "params": {"increment": 2}},
    ]
    assert plan["verify"] == {"wait_seconds": 20, "max_attempts": 6}
    record = store.get_impairment(model.impairment_id)
    assert record["plan"] == "replace-failed-instance"
    assert record["status"] == "recovering"


def test_the_plan_selected_runs_an_alias_step_as_its_kinds_action(store, monkeypatch, tmp_path, lambda_context):
    # Given a configuration file whose plan names the alias with a kind (written by hand, not
    # through synthesis, which resolves it already)
    raw = {
        "name": "db",
        "match": {"impairment_types": ["database_issue"]},
        "steps": [{"action": "failover", "params": {"kind": "database", "db_cluster_identifier": "ledger"}}],
    }
    use_runtime_config(monkeypatch, tmp_path, plans=[raw])
    model = impairment(impairment_type=ImpairmentType.DATABASE_ISSUE, severity=Severity.HIGH)
    store.put_impairment(model.model_dump(mode="json"), status="admitted")

    # When the plan is selected
    plan = plan_of(model, lambda_context)

    # Then the execution and its record see the kind's action, the kind left out of its params
    expected = [{"index": 0, "action": "failover_database", "params": {"db_cluster_identifier": "ledger"}}]
    assert plan["steps"] == expected
    assert store.get_impairment(model.impairment_id)["plan_state"]["steps"] == expected


REGIONAL = {
    "name": "regional",
    "match": {"impairment_types": ["database_issue"]},
    "steps": [
        {"action": "scale_out", "params": {"increment": 1}, "when_scope_has": "auto_scaling_group"},
        {"action": "failover", "params": {"kind": "database"}, "when_scope_has": "db_cluster"},
        {"action": "scale_out", "params": {"increment": 2}},
    ],
}


def test_a_step_for_a_scope_the_impairment_lacks_is_skipped_and_recorded(store, monkeypatch, tmp_path, lambda_context):
    # Given a plan whose database step runs only for workloads that declare a cluster, and an
    # impairment of a workload that declares a group but no cluster
    use_runtime_config(monkeypatch, tmp_path, plans=[REGIONAL])
    model = impairment(impairment_type=ImpairmentType.DATABASE_ISSUE, scope={"auto_scaling_group": "web-asg"})
    store.put_impairment(model.model_dump(mode="json"), status="admitted")

    # When the plan is selected
    plan = plan_of(model, lambda_context)

    # Then the steps it runs, indexed as they run, leave the database step out, and the record says why
    assert [(s["index"], s["action"], s["params"]) for s in plan["steps"]] == [
        (0, "scale_out", {"increment": 1}),
        (1, "scale_out", {"increment": 2}),
    ]
    skipped = store.get_impairment(model.impairment_id)["plan_state"]["skipped_steps"]
    assert skipped == [
        {"action": "failover_database", "params": {}, "reason": "the impairment's scope has no db_cluster"}
    ]


def test_a_plan_none_of_whose_steps_applies_gives_way_to_the_next(store, monkeypatch, tmp_path, lambda_context):
    # Given a first plan whose only step needs a cluster, then one that always applies
    only_cluster = {**REGIONAL, "name": "cluster-only", "steps": [REGIONAL["steps"][1]]}
    fallback = {**REGIONAL, "name": "fallback", "steps": [REGIONAL["steps"][2]]}
    use_runtime_config(monkeypatch, tmp_path, plans=[only_cluster, fallback])
    model = impairment(impairment_type=ImpairmentType.DATABASE_ISSUE, scope={})
    store.put_impairment(model.model_dump(mode="json"), status="admitted")

    # When the plan is selected for an impairment without a cluster: the one that can act
    plan = plan_of(model, lambda_context)
    assert plan["name"] == "fallback"
    assert "skipped_steps" not in plan

    # And with a cluster in its scope, the first plan runs its step
    other = impairment(
        impairment_type=ImpairmentType.DATABASE_ISSUE, scope={"db_cluster": "ledger"}, signal_id="x", instances=["i-2"]
    )
    store.put_impairment(other.model_dump(mode="json"), status="admitted")
    assert plan_of(other, lambda_context)["name"] == "cluster-only"


@pytest.mark.parametrize(
    ("impairment_type", "severity"),
    [
        (ImpairmentType.DATABASE_ISSUE, Severity.HIGH),
        (ImpairmentType.INSTANCE_FAILURE, Severity.CRITICAL),
    ],
    ids=["uncovered-type", "above-max-severity"],
)
def test_admit_raises_no_matching_plan_when_nothing_covers_it(store, plans, lambda_context, impairment_type, severity):
    # Given an impairment no plan covers (a critical instance failure is above the plan's bound)
    model = impairment(impairment_type=impairment_type, severity=severity)
    store.put_impairment(model.model_dump(mode="json"), status="admitted")

    # When the plan is selected, then the workflow is told to escalate, naming what was not covered
    with pytest.raises(NoMatchingPlan, match=f"{impairment_type.value} at severity {severity.value}"):
        plan_of(model, lambda_context)
    assert store.get_impairment(model.impairment_id)["status"] == "admitted"


@pytest.mark.parametrize(
    ("step", "named"),
    [
        ({"action": "reboot_everything"}, "steps.0.action: no action is named 'reboot_everything'"),
        ({"action": "scale_out", "params": {"increment": 0}}, "steps.0.params.increment (action scale_out): must be"),
        (
            {"action": "failover", "params": {"kind": "dns", "db_instance_identifier": "orders"}},
            "steps.0.params.db_instance_identifier (action failover, kind dns)",
        ),
    ],
    ids=["unknown-action", "bad-params", "field-of-another-kind"],
)
def test_a_plan_this_deployments_actions_cannot_run_is_refused_before_anything_acts(
    store, monkeypatch, tmp_path, lambda_context, step, named
):
    # Given the deployed configuration's plan names a step its actions do not take (synthesis
    # refuses it: a configuration file edited by hand)
    bad = {"name": "broken", "match": {"impairment_types": ["instance_failure"]}, "steps": [step]}
    use_runtime_config(monkeypatch, tmp_path, plans=[bad])
    model = impairment(impairment_type=ImpairmentType.INSTANCE_FAILURE, severity=Severity.HIGH)
    store.put_impairment(model.model_dump(mode="json"), status="admitted")

    # When the plan is selected, then it is refused, naming the plan and the step
    with pytest.raises(InvalidInput, match=f"plan 'broken': .*{re.escape(named)}"):
        plan_of(model, lambda_context)
    assert store.get_impairment(model.impairment_id)["status"] == "admitted"


# --- verify ---------------------------------------------------------------------------------


def verify_event(model, attempt: int = 0, max_attempts: int = 3) -> dict[str, Any]:
    event: dict[str, Any] = {
        "impairment": model.model_dump(mode="json"),
        "plan": {"name": "p", "verify": {"wait_seconds": 0, "max_attempts": max_attempts}},
    }
    if attempt:
        event["verification"] = {"attempt": attempt}
    return event


def test_verify_passes_once_the_group_has_replaced_the_impaired_instance(store, lambda_context):
    # Given an impaired instance was replaced by its group
    workload = build_workload(min_size=1, desired=3)
    model = workload.impairment_of(workload.instance_ids()[0])
    replace_instance.apply_handler(action_event(model, "replace_instance"), lambda_context)

    # When the recovery is verified
    result = verify.handler(verify_event(model), lambda_context)

    # Then the group is at its desired healthy capacity without the impaired instance
    assert result["healthy"] is True
    group_check = next(c for c in result["checks"] if c["check"] == "group_capacity")
    assert group_check["impaired_still_in_service"] == []
    assert group_check["healthy_in_service"] == 3


def test_verify_fails_and_asks_for_another_attempt_while_the_impaired_instance_serves(store, lambda_context):
    # Given nothing was done about the impaired instance
    workload = build_workload(min_size=1, desired=3)
    impaired = workload.instance_ids()[0]
    model = workload.impairment_of(impaired)

    # When verified on the first of three attempts, and then on the last
    first = verify.handler(verify_event(model, attempt=0, max_attempts=3), lambda_context)
    last = verify.handler(verify_event(model, attempt=2, max_attempts=3), lambda_context)

    # Then it is not healthy; the state machine waits and retries, until attempts run out
    assert first["healthy"] is False
    assert first["retry"] is True
    assert first["attempt"] == 1
    assert next(c for c in first["checks"] if c["check"] == "group_capacity")["impaired_still_in_service"] == [impaired]
    assert last["attempt"] == 3
    assert last["retry"] is False


def test_verify_stops_retrying_when_the_plans_time_box_is_over(store, lambda_context):
    # Given a recovery whose plan's time is up before another attempt could be made
    from core import clock

    workload = build_workload(min_size=1, desired=3)
    model = workload.impairment_of(workload.instance_ids()[0])
    event = verify_event(model, attempt=0, max_attempts=10)
    event["plan"]["verify"]["wait_seconds"] = 60
    event["plan"]["deadline"] = (clock.utc_now() + timedelta(seconds=30)).isoformat()

    # When it verifies unhealthy on its first of ten attempts
    result = verify.handler(event, lambda_context)

    # Then it does not ask for another: the workflow rolls back and escalates now
    assert result["healthy"] is False and result["retry"] is False
    assert next(c for c in result["checks"] if c["check"] == "time_box")["passed"] is False


def _failover_records(zone_id: str, primary_role: str, standby_role: str) -> None:
    route53 = boto3.client("route53", region_name=REGION)
    changes = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": "api.example.com.",
                "Type": "A",
                "TTL": 60,
                "SetIdentifier": set_id,
                "Failover": role,
                "ResourceRecords": [{"Value": address}],
            },
        }
        for set_id, role, address in (
            ("web-api-primary", primary_role, "192.0.2.10"),
            ("web-api-standby", standby_role, "198.51.100.10"),
        )
    ]
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})


def test_verify_after_a_dns_failover_passes_only_once_the_standby_record_is_primary(store, lambda_context):
    # Given a regional failover's impairment: the standby group and the DNS records in its scope
    standby = build_workload("web-api-standby", min_size=0, desired=2)
    zone_id = (
        boto3.client("route53", region_name=REGION)
        .create_hosted_zone(Name="example.com", CallerReference="verify-dns")["HostedZone"]["Id"]
        .split("/")[-1]
    )
    scope = {
        "auto_scaling_group": standby.group_name,
        "dns_hosted_zone_id": zone_id,
        "dns_record_name": "api.example.com",
        "dns_record_type": "A",
        "dns_primary_set": "web-api-primary",
        "dns_secondary_set": "web-api-standby",
    }
    model = standby.impairment_of().model_copy(update={"scope": scope})
    event = verify_event(model)
    event["plan"]["steps"] = [
        {"index": 0, "action": "provision_standby_group", "params": {}},
        {"index": 1, "action": "failover_dns", "params": {}},
    ]

    # When the records still send traffic to the old primary
    _failover_records(zone_id, "PRIMARY", "SECONDARY")
    before = verify.handler(event, lambda_context)

    # Then the standby's capacity passes but the DNS check does not
    checks = {c["check"]: c for c in before["checks"]}
    assert checks["group_capacity"]["passed"] is True
    assert checks["dns_failover"]["passed"] is False
    assert before["healthy"] is False

    # And the capacity checked is the one configured for the standby, not only the group's own
    short = verify.handler(
        {
            **event,
            "impairment": model.model_copy(
                update={
                    "scope": {
                        **scope,
                        "standby_auto_scaling_group": standby.group_name,
                        "standby_desired_capacity": "3",
                    }
                }
            ).model_dump(mode="json"),
        },
        lambda_context,
    )
    capacity = next(c for c in short["checks"] if c["check"] == "group_capacity")
    assert capacity["passed"] is False and capacity["desired_capacity"] == 3

    # And once the standby's record is PRIMARY, it is healthy
    _failover_records(zone_id, "SECONDARY", "PRIMARY")
    after = verify.handler(event, lambda_context)
    assert after["healthy"] is True
    assert {c["check"]: c["passed"] for c in after["checks"]}["dns_failover"] is True


# --- prepare rollback -----------------------------------------------------------------------


class HalfDone(ActionParams):
    pass


def _fails_half_way(ctx: Context) -> ActionResult:
    ctx.record_before({"desired_capacity": 3, "group": "web-api-asg"})
    raise PermanentError("the second call was refused")


def _refused_up_front(ctx: Context) -> ActionResult:
    raise PermanentError("refused before changing anything")


def _applied(ctx: Context) -> ActionResult:
    before = {"group": "web-api-asg", "desired_capacity": 3}
    ctx.record_before(before)
    return ActionResult(
        action="first",
        phase="apply",
        step_index=ctx.step_index,
        result="changed",
        targets=["web-api-asg"],
        before=before,
        after={"group": "web-api-asg", "desired_capacity": 4},
    )


def run_step(name: str, apply, model, index: int, store) -> dict[str, Any]:
    """Run one step through the real runner, as an action task would (one invocation each)."""
    action = Action(name=name, params=HalfDone, apply=apply, rollback=_refused_up_front)
    try:
        return run(action, "apply", action_event(model, name, index=index), store, MANAGED_TAG)
    finally:
        metrics.clear_metrics()  # the handler decorator flushes metrics after each invocation


def test_prepare_rollback_returns_started_and_done_steps_newest_first(store, lambda_context):
    # Given a plan of four steps: step 0 finished, step 1 changed something and then failed,
    # step 2 was refused before changing anything, step 3 never ran
    model = impairment()
    steps = [
        {"index": 0, "action": "first", "params": {}},
        {"index": 1, "action": "second", "params": {}},
        {"index": 2, "action": "third", "params": {}},
        {"index": 3, "action": "fourth", "params": {}},
    ]
    done = run_step("first", _applied, model, 0, store)
    with pytest.raises(PermanentError):
        run_step("second", _fails_half_way, model, 1, store)
    with pytest.raises(PermanentError):
        run_step("third", _refused_up_front, model, 2, store)
    # (an earlier rollback attempt's own record must not be rolled back in turn)
    store.put_action(model.impairment_id, 0, "rollback", {"status": "done", "before": {"desired_capacity": 4}})
    store.put_impairment(model.model_dump(mode="json"), status="recovering")

    # When the rollback is prepared
    event = {"impairment": model.model_dump(mode="json"), "plan": {"name": "p", "steps": steps}, "error": {}}
    rollback = prepare_rollback.handler(event, lambda_context)

    # Then the half-done step 1 comes first, with the state recorded before it changed anything,
    # then step 0 with its full result; step 2 (changed nothing) and step 3 (never ran) are absent
    assert [r["step"] for r in rollback] == [steps[1], steps[0]]
    assert rollback[0]["applied"] == {"before": {"desired_capacity": 3, "group": "web-api-asg"}, "after": {}}
    assert rollback[1]["applied"] == done
    assert store.get_impairment(model.impairment_id)["status"] == "rolling_back"


def test_prepare_rollback_of_a_real_scale_out_restores_the_group(store, lambda_context):
    # Given a plan whose scale_out step ran (3 -> 5) and whose verification then failed
    workload = build_workload(min_size=1, desired=3, max_size=10)
    model = workload.impairment_of()
    step = {"index": 0, "action": "scale_out", "params": {"increment": 2}}
    from actions import scale_out

    scale_out.apply_handler(action_event(model, "scale_out", params=step["params"]), lambda_context)
    store.put_impairment(model.model_dump(mode="json"), status="recovering")

    # When the rollback is prepared and each step it returns is rolled back, as the Map state does
    event = {"impairment": model.model_dump(mode="json"), "plan": {"name": "p", "steps": [step]}}
    for item in prepare_rollback.handler(event, lambda_context):
        scale_out.rollback_handler(
            {"impairment": event["impairment"], "step": item["step"], "applied": item["applied"], "plan": "p"},
            lambda_context,
        )

    # Then the group is back where it was
    assert workload.desired_capacity() == 3


# --- finalize -------------------------------------------------------------------------------


def test_finalize_records_the_recovery_with_mttr_and_releases_the_locks(store, plans, lambda_context, frozen_clock):
    # Given an impairment detected 95 s ago was admitted (its instance locked) and has verified
    model = impairment(
        instances=[INSTANCE],
        signal_time=frozen_clock.now - timedelta(seconds=100),
        detected_at=frozen_clock.now - timedelta(seconds=95),
    )
    admission = admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, lambda_context)[
        "admission"
    ]
    assert lock_owner(f"ec2:instance/{INSTANCE}") == model.impairment_id

    # When the recovery is finalized
    result = finalize.handler({"impairment": model.model_dump(mode="json"), "admission": admission}, lambda_context)

    # Then the record says recovered, with MTTR = resolved - detected and MTTD = detected - signal
    assert result["outcome"] == "recovered"
    assert result["mttr_seconds"] == 95.0
    record = store.get_impairment(model.impairment_id)
    assert record["outcome"] == "recovered"
    assert record["status"] == "recovered"
    assert record["mttr_seconds"] == 95.0
    assert record["mttd_seconds"] == 5.0
    assert record["resolved_at"] == frozen_clock.now.isoformat()
    # and the instance is free for the next recovery
    assert lock_owner(f"ec2:instance/{INSTANCE}") is None
    nxt = impairment(instances=[INSTANCE], signal_id="arn:aws:cloudwatch:us-east-1:123456789012:alarm:next")
    admit.handler({"impairment": nxt.model_dump(mode="json"), "execution": "y"}, lambda_context)
    assert lock_owner(f"ec2:instance/{INSTANCE}") == nxt.impairment_id


@pytest.mark.parametrize(("mttr", "within"), [(95, True), (400, False)], ids=["within", "beyond"])
def test_a_recovery_is_judged_against_its_workloads_rto_from_selection_to_finalize(
    store, monkeypatch, tmp_path, lambda_context, frozen_clock, capsys, mttr, within
):
    # Given a workload whose recovery time objective is 5 minutes, and an impairment of it
    # detected `mttr` seconds ago that was admitted and had its plan selected
    model = impairment(instances=[INSTANCE], detected_at=frozen_clock.now - timedelta(seconds=mttr))
    use_runtime_config(monkeypatch, tmp_path, plans=PLANS, rto_seconds={model.workload: 300, "other": 60})
    event = {"impairment": model.model_dump(mode="json"), "execution": "x"}
    event = admit.handler(event, lambda_context)
    assert event["plan"]["rto_seconds"] == 300  # the workload's own, carried by the execution

    # When it verifies and is finalized
    capsys.readouterr()
    finalize.handler(event, lambda_context)

    # Then the record says whether it recovered within the objective
    record = store.get_impairment(model.impairment_id)
    assert (record["rto_seconds"], record["within_rto"]) == (300, within)
    # and the workload's RTO alarm has its metric: 1 when missed, 0 when met, by workload
    points = datapoints(capsys.readouterr().out)
    missed = named(points, "RecoveryTimeObjectiveMissed", workload=model.workload)
    assert [p.value for p in missed] == [0.0 if within else 1.0]
    assert [p.value for p in named(points, "WorkloadMTTR", workload=model.workload)] == [float(mttr)]


def test_a_workload_without_an_rto_records_no_judgement(store, plans, lambda_context, frozen_clock, capsys):
    model = impairment(instances=[INSTANCE], detected_at=frozen_clock.now - timedelta(seconds=9000))
    event = {"impairment": model.model_dump(mode="json"), "execution": "x"}
    event = admit.handler(event, lambda_context)
    capsys.readouterr()
    finalize.handler(event, lambda_context)
    record = store.get_impairment(model.impairment_id)
    assert "within_rto" not in record and event["plan"]["rto_seconds"] is None
    assert "RecoveryTimeObjectiveMissed" not in capsys.readouterr().out


def test_finalize_ends_a_recovery_in_one_transaction(store, plans, lambda_context, frozen_clock, dynamodb_calls):
    # Given an admitted recovery holding a concurrency slot and a share of its group's blast radius
    model = impairment(instances=[INSTANCE], detected_at=frozen_clock.now)
    admission = admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, lambda_context)[
        "admission"
    ]
    store.correlate(model.impairment_id, [f"ec2:instance/{INSTANCE}"], 300, frozen_clock.now)
    far = int(frozen_clock.now.timestamp()) + 3600
    taken = store.take_budgets(
        model.impairment_id,
        [
            Claim("concurrency", CONCURRENCY_BUDGET, 5, 1, far, slotted=True),
            Claim("blast_radius", blast_key("web-api-asg"), 2, 1, far),
        ],
    )
    dynamodb_calls.clear()

    # When it is finalized
    event = {
        "impairment": model.model_dump(mode="json"),
        "admission": admission,
        "guardrails": {
            "groups": ["web-api-asg"],
            "slots": taken.slots,
            "blast_items": taken.held[blast_key("web-api-asg")],
        },
    }
    finalize.handler(event, lambda_context)

    # Then one call recorded it and gave everything back
    assert dynamodb_calls == ["TransactWriteItems"]
    assert store.get_impairment(model.impairment_id)["status"] == "recovered"
    assert lock_owner(f"ec2:instance/{INSTANCE}") is None
    assert store.budget_holders(CONCURRENCY_BUDGET, slots=5) == {}
    assert store.budget_holders(blast_key("web-api-asg")) == {}
    assert store.table.get_item(Key={"pk": f"LOCK#ec2:instance/{INSTANCE}", "sk": "CORRELATION"}).get("Item") is None


def test_finalize_whose_window_was_taken_over_still_gives_back_its_own(store, plans, lambda_context, frozen_clock):
    # Given a recovery whose correlation window a broader impairment took over, holding a blast radius share
    model = impairment(instances=[INSTANCE], detected_at=frozen_clock.now)
    admission = admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, lambda_context)[
        "admission"
    ]
    key = f"ec2:instance/{INSTANCE}"
    store.correlate(model.impairment_id, [key], 300, frozen_clock.now)
    store.correlate("zone-1", [key], 300, frozen_clock.now, take_over={key: model.impairment_id})
    far = int(frozen_clock.now.timestamp()) + 3600
    taken = store.take_budgets(model.impairment_id, [Claim("blast_radius", blast_key("web-api-asg"), 2, 1, far)])

    # When it is finalized
    event = {
        "impairment": model.model_dump(mode="json"),
        "admission": admission,
        "guardrails": {"groups": ["web-api-asg"], "blast_items": taken.held[blast_key("web-api-asg")]},
    }
    finalize.handler(event, lambda_context)

    # Then the other's window stays, and everything of its own is given back all the same
    window = store.table.get_item(Key={"pk": f"LOCK#{key}", "sk": "CORRELATION"})["Item"]
    assert window["owner"] == "zone-1"
    assert lock_owner(key) is None
    assert store.budget_holders(blast_key("web-api-asg")) == {}
    assert store.get_impairment(model.impairment_id)["outcome"] == "recovered"


def test_finalize_leaves_a_lock_another_recovery_took_over(store, plans, lambda_context, frozen_clock, monkeypatch):
    # Given our lock expired and another impairment took the instance over
    monkeypatch.setenv("LOCK_TTL_SECONDS", "60")
    ours = impairment(instances=[INSTANCE], detected_at=frozen_clock.now)
    admission = admit.handler({"impairment": ours.model_dump(mode="json"), "execution": "x"}, lambda_context)[
        "admission"
    ]
    expires = int(get_item(f"LOCK#ec2:instance/{INSTANCE}", "LOCK")["expiration"])  # the plan's hold
    frozen_clock.advance(expires - int(frozen_clock.now.timestamp()) + 1)
    theirs = impairment(instances=[INSTANCE], signal_id="arn:aws:cloudwatch:us-east-1:123456789012:alarm:other")
    admit.handler({"impairment": theirs.model_dump(mode="json"), "execution": "y"}, lambda_context)

    # When our recovery finalizes
    finalize.handler({"impairment": ours.model_dump(mode="json"), "admission": admission}, lambda_context)

    # Then the other recovery keeps its lock
    assert lock_owner(f"ec2:instance/{INSTANCE}") == theirs.impairment_id


# --- escalate -------------------------------------------------------------------------------


@pytest.fixture
def topic(mocked_aws, monkeypatch) -> str:
    """The escalation topic with a queue subscribed; returns the queue URL."""
    topic_arn, queue_url = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    return queue_url


def lambda_error(error: str, message: str) -> dict[str, str]:
    """How a caught Lambda error appears in the state (Catch with a result path)."""
    return {"Error": error, "Cause": json.dumps({"errorMessage": message, "errorType": error, "stackTrace": []})}


def test_escalate_pages_with_the_reason_and_records_the_outcome(store, plans, topic, lambda_context):
    # Given a recovery whose action was refused, after the instance was locked
    model = impairment(instances=[INSTANCE])
    admission = admit.handler({"impairment": model.model_dump(mode="json"), "execution": "x"}, lambda_context)[
        "admission"
    ]
    refusal = "replacing ['i-0abc123def4567890'] would leave web-api-asg with 1 healthy in-service instances"
    event = {
        "impairment": model.model_dump(mode="json"),
        "execution": "arn:aws:states:us-east-1:123456789012:execution:recovery:" + model.impairment_id,
        "admission": admission,
        "plan": {"name": "replace-failed-instance", "steps": []},
        "error": lambda_error("ActionRefused", refusal),
        "rollbacks": [{"action": "scale_out", "result": "changed"}],
    }

    # When the recovery escalates
    result = escalate.handler(event, lambda_context)

    # Then the on-call gets one message saying which workload, why, and with the whole context
    (notification,) = received(topic)
    assert notification["Subject"].startswith("[recovery] web-api: ActionRefused: replacing")
    assert len(notification["Subject"]) <= 100
    message = paging.details(json.loads(notification["Message"]))
    assert message["reason"] == f"ActionRefused: {refusal}"
    assert message["impairment_id"] == model.impairment_id
    assert message["plan"] == "replace-failed-instance"
    assert message["impairment"]["affected_resources"] == [{"resource_type": "ec2:instance", "resource_id": INSTANCE}]
    assert message["rollbacks"] == event["rollbacks"]
    assert model.impairment_id in message["next_steps"]
    # and the record says escalated, with the reason, and the lock is released
    record = store.get_impairment(model.impairment_id)
    assert record["outcome"] == "escalated"
    assert record["reason"] == f"ActionRefused: {refusal}"
    assert record["rolled_back"] is True
    assert result["reason"] == record["reason"]
    assert lock_owner(f"ec2:instance/{INSTANCE}") is None


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"error": lambda_error("NoMatchingPlan", "no plan covers database_issue")}, "NoMatchingPlan: no plan covers"),
        ({"verification": {"healthy": False, "attempt": 6}}, "not healthy after 6 verification attempts"),
        (
            {
                "verification": {"healthy": False, "attempt": 6},
                "rollback_error": lambda_error("TransientError", "autoscaling:SetDesiredCapacity failed"),
            },
            "rollback failed: TransientError: autoscaling:SetDesiredCapacity failed",
        ),
        ({"error": {"Error": "States.Timeout", "Cause": "not json"}}, "States.Timeout: not json"),
    ],
    ids=["no-plan", "verification-failed", "rollback-failed-first", "non-lambda-error"],
)
def test_escalation_reason_says_what_went_wrong(store, topic, lambda_context, state, reason):
    model = impairment()

    result = escalate.handler({"impairment": model.model_dump(mode="json"), **state}, lambda_context)

    assert result["reason"].startswith(reason)
    (notification,) = received(topic)
    assert paging.details(json.loads(notification["Message"]))["reason"] == result["reason"]


def test_escalation_subject_is_printable_ascii_within_the_sns_limit(store, topic, lambda_context):
    # Given a reason with a newline, non-ASCII text and far more than 100 characters
    model = impairment(workload="paiements-ü")
    event = {"impairment": model.model_dump(mode="json"), "error": lambda_error("PermanentError", "é\n" + "x" * 300)}

    # When it escalates (SNS refuses subjects that are not printable ASCII of <= 100 characters)
    escalate.handler(event, lambda_context)

    # Then the page still goes out
    (notification,) = received(topic)
    assert len(notification["Subject"]) <= 100
    assert all(32 <= ord(ch) < 127 for ch in notification["Subject"])


def test_escalate_records_and_releases_before_a_page_that_cannot_be_sent(store, lambda_context, monkeypatch):
    from core.errors import TransientError

    # Given the escalation topic does not exist (deleted, or a wrong ARN), and a recovery holding
    # its resource's lock
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", f"arn:aws:sns:{REGION}:123456789012:gone")
    model = impairment()
    keys = [r.key for r in model.affected_resources]
    store.put_impairment(model.model_dump(mode="json"), status="recovering")
    store.acquire_locks(model.impairment_id, keys, 600)

    # When the recovery escalates: the failed page is raised as transient (the state machine
    # retries the task, which pages again) ...
    state = {"impairment": model.model_dump(mode="json"), "admission": {"lock_keys": keys}}
    with pytest.raises(TransientError, match="the page could not be sent"):
        escalate.handler(state, lambda_context)

    # ... but the outcome is recorded and the lock released first, and the record says the page
    # did not go out, and why
    record = store.get_impairment(model.impairment_id)
    assert record["status"] == "escalated" and record["outcome"] == "escalated"
    assert record["paged"] is False and record["page_status"] == "failed" and "NotFound" in record["page_error"]
    assert store._lock_holders(keys) == {}

    # And once the topic is back, the retried task pages and records it
    topic_arn, queue = capture_topic()
    monkeypatch.setenv("ESCALATION_TOPIC_ARN", topic_arn)
    escalate.handler(state, lambda_context)
    assert len(received(queue)) == 1
    assert store.get_impairment(model.impairment_id)["page_status"] == "sent"


def test_a_plan_disabled_at_run_time_gives_way_to_the_next_that_covers(store, lambda_context, monkeypatch, tmp_path):
    # Given two plans for service degradations, the first disabled at run time
    second = {**PLANS[1], "name": "add-more-capacity"}
    use_runtime_config(monkeypatch, tmp_path, plans=[*PLANS, second])
    model = impairment(impairment_type=ImpairmentType.SERVICE_DEGRADATION, severity=Severity.HIGH)
    store.put_impairment(model.model_dump(mode="json"), status="admitted")
    store.set_plan_enabled("add-capacity", False, actor="oncall")

    # When the plan is selected: the second, and the record names it (not the disabled one)
    assert plan_of(model, lambda_context)["name"] == ("add-more-capacity")
    record = store.get_impairment(model.impairment_id)
    assert record["plan"] == "add-more-capacity"
    assert record["plan_state"]["name"] == "add-more-capacity"


def test_a_disabled_plan_is_passed_over_until_it_is_enabled_again(store, plans, lambda_context):
    # Given a service degradation, covered only by add-capacity, and that plan disabled at run time
    model = impairment(impairment_type=ImpairmentType.SERVICE_DEGRADATION, severity=Severity.HIGH)
    store.put_impairment(model.model_dump(mode="json"), status="admitted")
    store.set_plan_enabled("add-capacity", False, actor="oncall")

    # Then no plan covers it: a human decides
    with pytest.raises(NoMatchingPlan):
        plan_of(model, lambda_context)

    # And once enabled again, it is selected
    store.set_plan_enabled("add-capacity", True, actor="oncall")
    assert plan_of(model, lambda_context)["name"] == "add-capacity"


def test_a_step_whose_retries_ran_out_ends_failed_with_its_last_error(store, lambda_context):
    # Given a step that recorded its state before, then kept failing transiently until the state
    # machine's retries ran out (it never recorded its end)
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="recovering")
    before = {"group": "web-api-asg", "desired_capacity": 3}
    store.put_action(model.impairment_id, 0, "apply", {"status": "started", "action": "scale_out", "before": before})
    error = {
        "Error": "TransientError",
        "Cause": json.dumps({"errorMessage": "autoscaling:SetDesiredCapacity failed: Throttling: Rate exceeded"}),
    }
    plan = {"name": "p", "steps": [{"index": 0, "action": "scale_out", "params": {}}]}

    # When the workflow prepares the rollback
    steps = prepare_rollback.handler(
        {"impairment": model.model_dump(mode="json"), "plan": plan, "error": error}, lambda_context, store=store
    )

    # Then the step's record ends "failed" with the last error, and is rolled back from its state before
    record = store.get_action(model.impairment_id, 0, "apply")
    assert record["status"] == "failed" and "Throttling: Rate exceeded" in record["error"]
    assert record["before"] == before and record["finished_at"]
    assert [s["applied"]["before"] for s in steps] == [before]
