"""The emulator's RDS PromoteReadReplica (recoveryctl/emulator/replicas.py) on moto's DB
instances: it answers as RDS documents it (the replica `modifying`, then `rebooting`, then
`available` and standalone: no ReadReplicaSourceDBInstanceIdentifier, the cross-region source no
longer listing it, the backup retention as passed; RDS's refusals), and promote_read_replica,
run against it, waits for the promotion to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from core import aws
from core.errors import CapacityNotReady
from recoveryctl.emulator.replicas import ReadReplicaPromotions
from tests.builders import ACCOUNT, MANAGED_TAG, action_event, impairment, run_step

STANDBY, PRIMARY = "us-east-1", "us-west-2"  # the function's own region is the standby's
REPLICA, SOURCE = "ledger-replica", "ledger"
SOURCE_ARN = f"arn:aws:rds:{PRIMARY}:{ACCOUNT}:db:{SOURCE}"
REPLICA_ARN = f"arn:aws:rds:{STANDBY}:{ACCOUNT}:db:{REPLICA}"
MODIFYING, REBOOTING = ReadReplicaPromotions.MODIFYING_SECONDS, ReadReplicaPromotions.REBOOTING_SECONDS


@pytest.fixture
def rds_world(store: Any, frozen_clock: Any) -> Iterator[ReadReplicaPromotions]:
    """A DB instance in the primary region and its cross-region read replica in the standby
    region (opted in), RDS's promotion as the emulator answers it (behaviour.py's hook, here
    on RDS alone)."""
    login = {"MasterUsername": "admin", "MasterUserPassword": "password123", "AllocatedStorage": 20}
    boto3.client("rds", region_name=PRIMARY).create_db_instance(
        DBInstanceIdentifier=SOURCE, Engine="postgres", DBInstanceClass="db.t3.micro", BackupRetentionPeriod=7, **login
    )
    boto3.client("rds", region_name=STANDBY).create_db_instance_read_replica(
        DBInstanceIdentifier=REPLICA,
        SourceDBInstanceIdentifier=SOURCE_ARN,
        Tags=[{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}],
    )
    promotions = ReadReplicaPromotions({})

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["api_params"] = dict(params)

    def before_call(model: Any, context: dict[str, Any], request_signer: Any = None, **kwargs: Any) -> Any:
        if model.name == "PromoteReadReplica":
            return promotions.promote(ACCOUNT, request_signer.region_name, context["api_params"])
        promotions.settle()
        return None

    session = boto3._get_default_session()
    session.events.register("before-parameter-build.rds.*", remember, unique_id="tests-replicas-params")
    session.events.register("before-call.rds.*", before_call, unique_id="tests-replicas")
    aws.reset()
    yield promotions
    session.events.unregister("before-call.rds.*", unique_id="tests-replicas")
    session.events.unregister("before-parameter-build.rds.*", unique_id="tests-replicas-params")
    aws.reset()


def _describe(region: str, identifier: str) -> dict[str, Any]:
    return boto3.client("rds", region_name=region).describe_db_instances(DBInstanceIdentifier=identifier)[
        "DBInstances"
    ][0]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_a_promotion_reboots_the_replica_then_it_stands_alone_as_rds_describes_it(rds_world, frozen_clock):
    # Given a cross-region replica that its source lists by ARN
    assert _describe(STANDBY, REPLICA)["ReadReplicaSourceDBInstanceIdentifier"] == SOURCE_ARN
    assert _describe(PRIMARY, SOURCE)["ReadReplicaDBInstanceIdentifiers"] == [REPLICA_ARN]
    rds = boto3.client("rds", region_name=STANDBY)

    # When it is promoted with a backup retention of 3 days
    answer = rds.promote_read_replica(DBInstanceIdentifier=REPLICA, BackupRetentionPeriod=3)["DBInstance"]

    # Then RDS answers with the instance modifying, still a replica until it has rebooted
    assert answer["DBInstanceStatus"] == "modifying"
    assert _describe(STANDBY, REPLICA)["ReadReplicaSourceDBInstanceIdentifier"] == SOURCE_ARN
    frozen_clock.advance(MODIFYING)
    rebooting = _describe(STANDBY, REPLICA)
    assert rebooting["DBInstanceStatus"] == "rebooting"
    assert rebooting["ReadReplicaSourceDBInstanceIdentifier"] == SOURCE_ARN

    # And once rebooted it is available and standalone, with the backup retention passed, and
    # its source in the other region no longer lists it
    frozen_clock.advance(REBOOTING)
    promoted = _describe(STANDBY, REPLICA)
    assert promoted["DBInstanceStatus"] == "available"
    assert "ReadReplicaSourceDBInstanceIdentifier" not in promoted
    assert promoted["BackupRetentionPeriod"] == 3
    source = _describe(PRIMARY, SOURCE)
    assert source["ReadReplicaDBInstanceIdentifiers"] == [] and source["DBInstanceStatus"] == "available"
    assert rds_world.pending == {}


def test_rds_refuses_what_it_cannot_promote_and_a_second_promotion_under_way(rds_world, frozen_clock):
    rds = boto3.client("rds", region_name=STANDBY)
    # a DB instance that is no replica (the source itself, in its region)
    with pytest.raises(ClientError) as refused:
        boto3.client("rds", region_name=PRIMARY).promote_read_replica(DBInstanceIdentifier=SOURCE)
    assert _code(refused) == "InvalidDBInstanceState"
    # a backup retention RDS does not allow: nothing starts
    with pytest.raises(ClientError) as refused:
        rds.promote_read_replica(DBInstanceIdentifier=REPLICA, BackupRetentionPeriod=36)
    assert _code(refused) == "InvalidParameterValue"
    assert _describe(STANDBY, REPLICA)["DBInstanceStatus"] == "available"
    # an instance that does not exist
    with pytest.raises(ClientError) as refused:
        rds.promote_read_replica(DBInstanceIdentifier="nowhere")
    assert _code(refused) == "DBInstanceNotFound"
    # a second promotion while the first is under way (rebooting): the first goes on
    rds.promote_read_replica(DBInstanceIdentifier=REPLICA)
    frozen_clock.advance(MODIFYING)
    with pytest.raises(ClientError) as refused:
        rds.promote_read_replica(DBInstanceIdentifier=REPLICA)
    assert _code(refused) == "InvalidDBInstanceState"
    frozen_clock.advance(REBOOTING)
    assert "ReadReplicaSourceDBInstanceIdentifier" not in _describe(STANDBY, REPLICA)
    # and once promoted, it is no replica to promote again
    with pytest.raises(ClientError) as refused:
        rds.promote_read_replica(DBInstanceIdentifier=REPLICA)
    assert _code(refused) == "InvalidDBInstanceState"


def test_the_action_waits_for_the_emulators_promotion_and_keeps_the_backup_retention(
    rds_world, store, lambda_context, frozen_clock
):
    # Given the region_impairment's scope names the standby's replica
    event = action_event(impairment(scope={"standby_db_instance": REPLICA}), "promote_read_replica")

    # When the step runs as the state machine runs it (CapacityNotReady asked again 30 s later)
    waits = []
    for _ in range(5):
        try:
            result = run_step("apply", event, lambda_context)
            break
        except CapacityNotReady as exc:
            waits.append(exc.details.get("status"))
            frozen_clock.advance(30)

    # Then it waited through the reboot, and the replica is standalone with the source's 7 days kept
    assert waits == ["modifying", "rebooting"]
    assert result["result"] == "changed"
    assert result["before"]["source"] == SOURCE_ARN
    assert result["after"] == {"status": "available", "source": None}
    assert _describe(STANDBY, REPLICA)["BackupRetentionPeriod"] == 7

    # And Verify's check passes, and the rollback says it cannot be undone
    from actions.promote_read_replica import verify_step

    [check] = verify_step(impairment(scope={"standby_db_instance": REPLICA}), {}, result)
    assert check["check"] == "read_replica_promoted" and check["passed"]
    rolled = run_step("rollback", {**event, "applied": result}, lambda_context)
    assert rolled["result"] == "irreversible"
