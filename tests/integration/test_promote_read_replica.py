"""promote_read_replica: the standby region's cross-region read replica promoted and waited for,
its rollback honest (irreversible), and a plan using it refused unless a human approves.

Here botocore's Stubber answers with RDS's real shapes, call by call; the same action against the
emulator's promotion on moto (moto's own leaves ReadReplicaSourceDBInstanceIdentifier set) is in
test_read_replica_promotion.py."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from core import aws
from core.errors import ActionRefused, CapacityNotReady
from core.plans import PlanError
from tests.builders import ACCOUNT, MANAGED_TAG, action_event, impairment, run_step

STANDBY = "us-east-1"  # the function's own region: the replica is the standby region's
REPLICA = "ledger-replica"
ARN = f"arn:aws:rds:{STANDBY}:{ACCOUNT}:db:{REPLICA}"
SOURCE = f"arn:aws:rds:us-west-2:{ACCOUNT}:db:ledger"


def _instance(status: str = "available", source: str | None = SOURCE) -> dict[str, Any]:
    db = {"DBInstanceIdentifier": REPLICA, "DBInstanceArn": ARN, "DBInstanceStatus": status, "BackupRetentionPeriod": 7}
    return {"DBInstances": [db | ({"ReadReplicaSourceDBInstanceIdentifier": source} if source else {})]}


def _event() -> dict[str, Any]:
    return action_event(impairment(scope={"standby_db_instance": REPLICA}), "promote_read_replica")


def _tags(managed: bool = True) -> dict[str, Any]:
    return {"TagList": [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}] if managed else []}


def test_the_replica_is_promoted_keeping_its_backups_and_waited_for_then_rollback_is_irreversible(
    store, lambda_context
):
    client = aws.client("rds", max_attempts=1)
    with Stubber(client) as stubber:
        stubber.add_response("describe_db_instances", _instance(), {"DBInstanceIdentifier": REPLICA})
        stubber.add_response("list_tags_for_resource", _tags(), {"ResourceName": ARN})
        stubber.add_response("describe_db_instances", _instance(), {"DBInstanceIdentifier": REPLICA})
        stubber.add_response(
            "promote_read_replica",
            {"DBInstance": {"DBInstanceIdentifier": REPLICA, "DBInstanceStatus": "modifying"}},
            {"DBInstanceIdentifier": REPLICA, "BackupRetentionPeriod": 7},
        )
        stubber.add_response("describe_db_instances", _instance("modifying"), {"DBInstanceIdentifier": REPLICA})
        # each retry, in the same warm environment, goes on from the record of the first attempt
        # it remembers (actions/base.py run) and reads the instance once: still rebooting, then a
        # standalone instance
        for status in ("rebooting", "available"):
            stubber.add_response("describe_db_instances", _instance(status, None), {"DBInstanceIdentifier": REPLICA})
        stubber.add_response("describe_db_instances", _instance("available", None), {"DBInstanceIdentifier": REPLICA})

        with pytest.raises(CapacityNotReady):
            run_step("apply", _event(), lambda_context)
        with pytest.raises(CapacityNotReady):
            run_step("apply", _event(), lambda_context)
        result = run_step("apply", _event(), lambda_context)
        assert result["result"] == "changed"
        assert result["before"]["source"] == SOURCE and result["after"] == {"status": "available", "source": None}

        rolled = run_step("rollback", {**_event(), "applied": result}, lambda_context)
        assert rolled["result"] == "irreversible" and "cannot be demoted" in rolled["message"]
        stubber.assert_no_pending_responses()


def test_an_unmanaged_replica_is_refused_and_nothing_is_promoted(store, lambda_context):
    client = aws.client("rds", max_attempts=1)
    with Stubber(client) as stubber:
        stubber.add_response("describe_db_instances", _instance(), {"DBInstanceIdentifier": REPLICA})
        stubber.add_response("list_tags_for_resource", _tags(managed=False), {"ResourceName": ARN})
        with pytest.raises(ActionRefused):
            run_step("apply", _event(), lambda_context)
        stubber.assert_no_pending_responses()


def test_an_instance_already_promoted_is_left_as_it_is(store, lambda_context):
    client = aws.client("rds", max_attempts=1)
    with Stubber(client) as stubber:
        stubber.add_response("describe_db_instances", _instance(source=None), {"DBInstanceIdentifier": REPLICA})
        stubber.add_response("list_tags_for_resource", _tags(), {"ResourceName": ARN})
        stubber.add_response("describe_db_instances", _instance(source=None), {"DBInstanceIdentifier": REPLICA})
        result = run_step("apply", _event(), lambda_context)
        assert result["result"] == "unchanged"
        rolled = run_step("rollback", {**_event(), "applied": result}, lambda_context)
        assert rolled["result"] == "unchanged"


def _plan(requires_approval: bool, **params: Any) -> list[dict[str, Any]]:
    step = {"action": "promote_read_replica", **({"params": params} if params else {})}
    return [
        {
            "name": "promote",
            "match": {"impairment_types": ["region_impairment"]},
            "requires_approval": requires_approval,
            "steps": [step],
        }
    ]


def test_a_plan_that_promotes_without_approval_is_refused_unless_the_step_opts_out():
    from actions.plans import parse_plans

    with pytest.raises(PlanError, match=r"plans\.0\.steps\.0\.action.*requires_approval"):
        parse_plans(_plan(False))
    assert parse_plans(_plan(True))
    assert parse_plans(_plan(False, without_approval=True))
