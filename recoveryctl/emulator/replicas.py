"""RDS PromoteReadReplica as RDS does it, on moto's DB instances (behaviour.py calls it before
moto answers). moto's promotion only flips the instance's `is_replica`: DescribeDBInstances still
shows its ReadReplicaSourceDBInstanceIdentifier and the source still lists it, so an action that
waits for the promotion to end would wait forever. RDS instead reboots the replica: it is
`modifying`, then `rebooting`, and only then `available` and standalone (no source), the source
no longer listing it (a cross-region source, by its ARN, in its own region's backend). Here that
takes MODIFYING_SECONDS then REBOOTING_SECONDS of the emulator's virtual clock, settled whenever
RDS is called, so a DescribeDBInstances after that time sees it done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.awsrequest import AWSResponse

# (account, region, DB instance identifier) -> when its promotion started
Pending = dict[tuple[str, str, str], datetime]


@dataclass
class ReadReplicaPromotions:
    """The promotions under way (across calls and regions) and the clock they settle on."""

    pending: Pending
    MODIFYING_SECONDS = 30
    REBOOTING_SECONDS = 30

    def promote(self, account: str, region: str, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]] | None:
        """Start a promotion (moto then answers, with the instance `modifying`), or refuse it as
        RDS does: not a replica, not available (a promotion already under way included), a
        backup retention outside 0-35 days, an unknown instance (DBInstanceNotFound: moto's own
        promotion fails on one with a KeyError)."""
        from moto.rds.models import rds_backends

        from core import clock
        from recoveryctl.emulator.behaviour import _error

        self.settle()
        identifier = params["DBInstanceIdentifier"]
        database = rds_backends[account][region].databases.get(identifier)
        if database is None:
            return _error("DBInstanceNotFound", f"DBInstance {identifier} not found.", 404)
        if not database.source_db_instance_identifier:
            return _error("InvalidDBInstanceState", "DB Instance is not a read replica.")
        if database.status != "available":
            return _error("InvalidDBInstanceState", f"DB instance {identifier} is not available: {database.status}")
        retention = params.get("BackupRetentionPeriod")
        if retention is not None and not 0 <= int(retention) <= 35:
            return _error("InvalidParameterValue", "BackupRetentionPeriod must be between 0 and 35 days")
        if retention is not None:
            database.backup_retention_period = int(retention)
        database.status = "modifying"
        self.pending[(account, region, identifier)] = clock.utc_now()
        return None

    def settle(self) -> None:
        """Move each promotion along the clock: `rebooting` once MODIFYING_SECONDS have passed,
        standalone and `available` after REBOOTING_SECONDS more."""
        if not self.pending:  # every RDS call of every drill comes here: most have nothing under way
            return
        from moto.rds.models import rds_backends

        from core import clock

        now = clock.utc_now()
        for (account, region, identifier), started in list(self.pending.items()):
            database = rds_backends[account][region].databases.get(identifier)
            elapsed = (now - started).total_seconds()
            if database is None:
                del self.pending[(account, region, identifier)]
            elif elapsed < self.MODIFYING_SECONDS:
                database.status = "modifying"
            elif elapsed < self.MODIFYING_SECONDS + self.REBOOTING_SECONDS:
                database.status = "rebooting"
            else:
                del self.pending[(account, region, identifier)]
                _detach(account, database)
                database.status = "available"


def _detach(account: str, database: Any) -> None:
    """The promoted instance stands alone: no source, and the source (by ARN for a cross-region
    replica, by name in its own region) no longer lists it."""
    from moto.rds.models import rds_backends

    source = database.source_db_instance_identifier
    database.source_db_instance_identifier = None
    database.is_replica = False
    if source.startswith("arn:"):
        parts = source.split(":")
        found = rds_backends[parts[4]][parts[3]].databases.get(parts[-1])
    else:
        found = rds_backends[account][database.region].databases.get(source)
    if found is not None:
        names = {database.db_instance_identifier, database.db_instance_arn}
        found.replicas = [r for r in found.replicas if r not in names]
