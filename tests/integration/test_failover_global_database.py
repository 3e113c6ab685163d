"""failover_global_database under moto: an Aurora global database (its primary cluster in
us-east-1, its secondary in us-west-2) switched over when the primary's region answers, failed
over with data loss only when allowed, refused otherwise, waited for, verified, switched back.

What moto lacks is stood in for by the emulator's own behaviour (recoveryctl/emulator/
behaviour.py GlobalDatabases: SwitchoverGlobalCluster and FailoverGlobalCluster on moto's global
clusters, done after a while of the clock), and the primary region's outage by a hook failing
its calls as an unreachable endpoint does; the exact call shapes are checked with botocore's Stubber.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from core import aws
from core.contract import ImpairmentType, Severity
from core.errors import ActionRefused, CapacityNotReady, PermanentError
from recoveryctl.emulator.behaviour import GlobalDatabases
from tests.builders import ACCOUNT, MANAGED_TAG, action_event, impairment, run_step

PRIMARY, STANDBY = "us-east-1", "us-west-2"
GLOBAL = "ledger-global"
WRITER = f"arn:aws:rds:{PRIMARY}:{ACCOUNT}:cluster:ledger"
TARGET = f"arn:aws:rds:{STANDBY}:{ACCOUNT}:cluster:ledger-standby"


@pytest.fixture
def rds_world(store: Any, frozen_clock: Any) -> Iterator[dict[str, Any]]:
    """The global database in moto, RDS's switchover and failover as the emulator answers them,
    and `down`: the regions whose RDS endpoint does not answer."""
    east, west = boto3.client("rds", region_name=PRIMARY), boto3.client("rds", region_name=STANDBY)
    east.create_global_cluster(GlobalClusterIdentifier=GLOBAL, Engine="aurora-postgresql")
    login = {"Engine": "aurora-postgresql", "MasterUsername": "admin", "MasterUserPassword": "password123"}
    east.create_db_cluster(DBClusterIdentifier="ledger", GlobalClusterIdentifier=GLOBAL, **login)
    west.create_db_cluster(
        DBClusterIdentifier="ledger-standby",
        GlobalClusterIdentifier=GLOBAL,
        Tags=[{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}],
        **login,
    )
    world: dict[str, Any] = {"down": set(), "pending": {}, "calls": []}

    def before_call(model: Any, params: dict[str, Any], request_signer: Any = None, **kwargs: Any) -> Any:
        region = getattr(request_signer, "region_name", None)
        if region in world["down"]:
            raise EndpointConnectionError(endpoint_url=f"https://rds.{region}.amazonaws.com")
        if model.name in GlobalDatabases.OPERATIONS:
            if model.name != "DescribeGlobalClusters":
                world["calls"].append((model.name, region))
            return GlobalDatabases(ACCOUNT, world["pending"]).handle(model.name, _api_params(params))
        return None

    session = boto3._get_default_session()
    session.events.register("before-call.rds.*", before_call, unique_id="tests-global-databases")
    aws.reset()
    yield world
    session.events.unregister("before-call.rds.*", unique_id="tests-global-databases")
    aws.reset()


def _api_params(serialized: dict[str, Any]) -> dict[str, Any]:
    """The query-protocol body's parameters (before-call sees the serialized request)."""
    body = serialized.get("body") or {}
    return {k: (v == "true" if v in ("true", "false") else v) for k, v in body.items()}


def _region_impairment(**scope: str):
    return impairment(
        impairment_type=ImpairmentType.REGION_IMPAIRMENT,
        severity=Severity.CRITICAL,
        resources=[("region:workload", f"{PRIMARY}/web-api")],
        scope={
            "impaired_region": PRIMARY,
            "standby_region": STANDBY,
            "global_cluster_id": GLOBAL,
            "standby_db_cluster_arn": TARGET,
            **scope,
        },
    )


def _writer() -> str:
    found = boto3.client("rds", region_name=STANDBY).describe_global_clusters(GlobalClusterIdentifier=GLOBAL)
    return next(m["DBClusterArn"] for m in found["GlobalClusters"][0]["GlobalClusterMembers"] if m["IsWriter"])


def _apply(event: dict[str, Any], context: Any, clock: Any) -> dict[str, Any]:
    """The step as the state machine runs it: CapacityNotReady is asked again 30 s later."""
    for _ in range(10):
        try:
            return run_step("apply", event, context)
        except CapacityNotReady:
            clock.advance(30)
    raise AssertionError("the step never ended")


def test_while_the_primary_region_answers_it_switches_over_and_waits_for_the_new_writer(
    rds_world, store, lambda_context, frozen_clock
):
    # Given the primary region answers
    event = action_event(_region_impairment(), "failover", params={"kind": "global_database"})

    # When the step runs: the first attempt starts the switchover and waits for it
    with pytest.raises(CapacityNotReady):
        run_step("apply", event, lambda_context)
    assert _writer() == WRITER
    result = _apply(event, lambda_context, frozen_clock)

    # Then a planned switchover (no data loss), called in the standby region, made the standby the writer
    assert rds_world["calls"] == [("SwitchoverGlobalCluster", STANDBY)]
    assert _writer() == TARGET
    assert result["result"] == "changed"
    assert result["before"]["operation"] == "switchover"
    assert result["before"]["writer"] == WRITER and "answers" in result["before"]["why"]
    assert result["after"] == {"writer": TARGET, "status": "available", "target_status": "available"}

    # And Verify's check of the step passes
    from actions.failover_global_database import verify_step

    [check] = verify_step(_region_impairment(), {}, result)
    assert check["check"] == "global_database_writer" and check["passed"]

    # And the rollback switches back to the writer recorded before
    rolled = run_step("rollback", {**event, "applied": result}, lambda_context)
    assert rolled["result"] == "changed"
    frozen_clock.advance(GlobalDatabases.SWITCH_SECONDS)
    assert _writer() == WRITER


def test_with_the_primary_region_down_and_data_loss_allowed_it_fails_over_irreversibly(
    rds_world, store, lambda_context, frozen_clock
):
    # Given the primary region's RDS does not answer, and the workload allows data loss
    rds_world["down"].add(PRIMARY)
    event = action_event(
        _region_impairment(global_cluster_allow_data_loss="true"), "failover", params={"kind": "global_database"}
    )

    # When the step runs
    result = _apply(event, lambda_context, frozen_clock)

    # Then it failed over, saying why, and the standby is the writer
    assert rds_world["calls"] == [("FailoverGlobalCluster", STANDBY)]
    assert _writer() == TARGET
    assert result["before"]["operation"] == "failover"
    assert "does not answer" in result["before"]["why"] and result["before"]["allow_data_loss"] is True

    # And its rollback is honest: a failover with data loss cannot be undone, and nothing is called
    rolled = run_step("rollback", {**event, "applied": result}, lambda_context)
    assert rolled["result"] == "irreversible"
    assert rds_world["calls"] == [("FailoverGlobalCluster", STANDBY)]
    assert _writer() == TARGET


def test_with_the_primary_region_down_and_no_data_loss_allowed_it_refuses_and_moves_nothing(
    rds_world, store, lambda_context
):
    # Given the primary region does not answer and nothing allows data loss
    rds_world["down"].add(PRIMARY)
    event = action_event(_region_impairment(), "failover", params={"kind": "global_database"})

    # When the step runs, then it is refused, naming the setting, and nothing moved
    with pytest.raises(ActionRefused, match="allow_data_loss"):
        run_step("apply", event, lambda_context)
    assert rds_world["calls"] == []
    assert _writer() == WRITER

    # And the step's record says what it found and why it refused (the audit trail's state before)
    record = store.get_action(event["impairment"]["impairment_id"], 0, "apply")
    assert record["status"] == "failed"
    assert record["before"]["operation"] == "refused" and record["before"]["writer"] == WRITER

    # And a rollback has nothing to undo
    rolled = run_step("rollback", {**event, "applied": {"before": record["before"]}}, lambda_context)
    assert rolled["result"] == "unchanged"


def test_the_plans_explicit_setting_wins_over_the_workloads(rds_world, store, lambda_context):
    # Given the workload allows data loss but the plan's step says no
    rds_world["down"].add(PRIMARY)
    event = action_event(
        _region_impairment(global_cluster_allow_data_loss="true"),
        "failover",
        params={"kind": "global_database", "allow_data_loss": False},
    )

    # Then the step is refused
    with pytest.raises(ActionRefused, match="allow_data_loss"):
        run_step("apply", event, lambda_context)
    assert rds_world["calls"] == []


def test_a_retry_after_the_writer_moved_makes_no_second_operation(rds_world, store, lambda_context, frozen_clock):
    # Given a first attempt started the switchover and died; by the retry the writer has moved
    event = action_event(_region_impairment(), "failover", params={"kind": "global_database"})
    with pytest.raises(CapacityNotReady):
        run_step("apply", event, lambda_context)
    frozen_clock.advance(GlobalDatabases.SWITCH_SECONDS)
    rds_world["down"].add(PRIMARY)  # and the primary region is down by now

    # When the step is retried
    result = run_step("apply", event, lambda_context)

    # Then it is done, from the state it recorded first, with one switchover only
    assert result["result"] == "changed" and result["before"]["operation"] == "switchover"
    assert rds_world["calls"] == [("SwitchoverGlobalCluster", STANDBY)]


def test_a_target_that_is_already_the_writer_is_left_as_it_is(rds_world, store, lambda_context, frozen_clock):
    # Given the standby is already the writer (switched over by someone before)
    boto3.client("rds", region_name=STANDBY).switchover_global_cluster(
        GlobalClusterIdentifier=GLOBAL, TargetDbClusterIdentifier=TARGET
    )
    frozen_clock.advance(GlobalDatabases.SWITCH_SECONDS)
    rds_world["calls"].clear()
    event = action_event(_region_impairment(), "failover", params={"kind": "global_database"})

    # When the step runs, then nothing is called and nothing is left to roll back
    result = run_step("apply", event, lambda_context)
    assert result["result"] == "unchanged" and result["before"]["operation"] is None
    rolled = run_step("rollback", {**event, "applied": result}, lambda_context)
    assert rolled["result"] == "unchanged"
    assert rds_world["calls"] == []
    assert _writer() == TARGET


def test_an_unmanaged_target_cluster_is_refused(rds_world, store, lambda_context):
    boto3.client("rds", region_name=STANDBY).remove_tags_from_resource(ResourceName=TARGET, TagKeys=[MANAGED_TAG[0]])
    event = action_event(_region_impairment(), "failover", params={"kind": "global_database"})
    with pytest.raises(ActionRefused):
        run_step("apply", event, lambda_context)
    assert rds_world["calls"] == []


def test_without_a_global_database_in_params_or_scope_the_step_fails_saying_what_it_needs(store, lambda_context):
    event = action_event(impairment(), "failover", params={"kind": "global_database"})
    with pytest.raises(PermanentError, match="global_cluster_id"):
        run_step("apply", event, lambda_context)


def test_the_calls_have_rds_real_shapes(store, lambda_context):
    # Given RDS answers as its API does (Stubber: the parameters are validated against the model)
    from actions import failover_global_database as action

    client = aws.client("rds", max_attempts=1, region=STANDBY)
    shape = {"GlobalClusterIdentifier": GLOBAL, "Status": "switching-over"}
    with Stubber(client) as stubber:
        stubber.add_response(
            "failover_global_cluster",
            {"GlobalCluster": shape},
            {"GlobalClusterIdentifier": GLOBAL, "TargetDbClusterIdentifier": TARGET, "AllowDataLoss": True},
        )
        stubber.add_response(
            "switchover_global_cluster",
            {"GlobalCluster": shape},
            {"GlobalClusterIdentifier": GLOBAL, "TargetDbClusterIdentifier": TARGET},
        )
        stubber.add_client_error("switchover_global_cluster", "InvalidGlobalClusterStateFault", http_status_code=400)
        action._start(client, "failover", GLOBAL, TARGET)
        action._start(client, "switchover", GLOBAL, TARGET)
        # one already under way (a retry's) is waited for, not a failure
        with pytest.raises(CapacityNotReady):
            action._start(client, "switchover", GLOBAL, TARGET)
        stubber.assert_no_pending_responses()
