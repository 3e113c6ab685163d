"""failover_database: an RDS Multi-AZ DB instance fails over by RebootDBInstance(ForceFailover=
True); an Aurora or Multi-AZ DB cluster by FailoverDBCluster (to `target_db_instance_identifier`
if the plan names one). The DB instance or cluster must carry the managed tag. Rollback fails
back: a cluster to the writer recorded before, an instance by another forced failover if it is no
longer in the Availability Zone recorded before. The failover itself takes RDS 35-120 s; the
action returns once RDS has accepted it and the workflow's verification waits (the database's own
check, after any plan). (`failover` with kind "database" is this action: actions/registry.py,
ALIASES.) The DB instance or cluster comes from the step's params, else from the impairment's
scope (db_cluster, db_instance).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.errors import ActionRefused, PermanentError, TransientError
from core.reads import rds, tags
from core.reads.tags import require_managed

NAME = "failover_database"
_DB_ID = r"^[A-Za-z][A-Za-z0-9-]{0,62}$"

# RDS states that pass on their own: wait (TransientError) rather than give up.
_INSTANCE_BUSY = frozenset(
    {
        "backing-up",
        "configuring-enhanced-monitoring",
        "configuring-iam-database-auth",
        "configuring-log-exports",
        "maintenance",
        "modifying",
        "rebooting",
        "renaming",
        "resetting-master-credentials",
        "starting",
        "upgrading",
    }
)
_CLUSTER_BUSY = frozenset(
    {
        "backing-up",
        "backtracking",
        "failing-over",
        "maintenance",
        "modifying",
        "renaming",
        "resetting-master-credentials",
        "starting",
        "upgrading",
    }
)


class Params(ActionParams, kw_only=True):
    kind: Literal["database"] = "database"
    # each defaults to the impairment's scope
    db_instance_identifier: Annotated[str, Meta(pattern=_DB_ID)] | None = None
    db_cluster_identifier: Annotated[str, Meta(pattern=_DB_ID)] | None = None
    target_db_instance_identifier: (
        Annotated[str, Meta(pattern=_DB_ID, description="cluster only: the reader to promote (default: RDS chooses)")]
        | None
    ) = None

    def _check(self) -> None:
        if self.db_instance_identifier and (self.db_cluster_identifier or self.target_db_instance_identifier):
            raise ValueError("give db_instance_identifier, or db_cluster_identifier (with an optional target)")


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or {}
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    if before.get("db_cluster"):
        return _cluster_rollback(ctx, before)
    return _instance_rollback(ctx, before)


def apply(ctx: Context) -> ActionResult:
    params, scope = ctx.params, ctx.impairment.scope
    cluster = params.db_cluster_identifier or (None if params.db_instance_identifier else scope.get("db_cluster"))
    instance = params.db_instance_identifier or scope.get("db_instance")
    client = aws.client("rds", max_attempts=1, account=ctx.impairment.account_id)
    if cluster or (ctx.before or {}).get("db_cluster"):
        return _cluster_apply(ctx, client, cluster)
    if instance or (ctx.before or {}).get("db_instance"):
        return _instance_apply(ctx, client, instance)
    raise PermanentError(
        "failover_database needs a DB cluster or DB instance: give db_cluster_identifier or "
        "db_instance_identifier in the step's params, or db_cluster or db_instance in the impairment's scope"
    )


def _require_status(status: str, busy: frozenset[str], what: str) -> None:
    if status == "available":
        return
    if status in busy:
        raise TransientError(f"{what} is {status}; waiting for it to be available", status=status)
    raise ActionRefused(f"{what} is {status}: it cannot fail over", status=status)


def _instance_state(db: dict[str, Any]) -> dict[str, Any]:
    return {
        "availability_zone": db.get("AvailabilityZone"),
        "secondary_availability_zone": db.get("SecondaryAvailabilityZone"),
        "status": db.get("DBInstanceStatus"),
    }


def _instance_apply(ctx: Context, client: Any, identifier: str | None) -> ActionResult:
    before = ctx.before
    if before is None:
        db = rds.db_instance(client, identifier)
        what = f"DB instance {identifier}"
        require_managed(
            tags.of_rds(client, db["DBInstanceArn"]),
            ctx.managed_tag,
            "DB instance",
            str(identifier),
            resource=db["DBInstanceArn"],
        )
        if db.get("DBClusterIdentifier"):
            raise PermanentError(
                f"{what} belongs to DB cluster {db['DBClusterIdentifier']}: fail over the cluster (db_cluster)"
            )
        if not db.get("MultiAZ"):
            raise ActionRefused(f"{what} is not Multi-AZ: it has no standby to fail over to")
        _require_status(db["DBInstanceStatus"], _INSTANCE_BUSY, what)
        before = {"kind": "database", "db_instance": identifier, "arn": db["DBInstanceArn"], **_instance_state(db)}
        ctx.record_before(before)
    else:
        db = rds.db_instance(client, before["db_instance"])
    identifier = before["db_instance"]
    state = _instance_state(db)
    if state["availability_zone"] != before["availability_zone"] or (
        ctx.before is not None and state["status"] == "rebooting"
    ):
        # A retry: the failover this step asked for is done or under way.
        return ctx.result(
            "apply",
            "changed",
            [identifier],
            before=before,
            after=state,
            message=f"DB instance {identifier}: failover from {before['availability_zone']} already under way or done",
        )
    _require_status(state["status"], _INSTANCE_BUSY, f"DB instance {identifier}")
    if not ctx.dry_run:
        aws.call(client, "reboot_db_instance", DBInstanceIdentifier=identifier, ForceFailover=True)
        state = _instance_state(rds.db_instance(client, identifier))
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [identifier],
        before=before,
        after=state,
        message=f"DB instance {identifier}: rebooted with failover away from {before['availability_zone']} "
        "(RDS Multi-AZ failover typically takes 60-120 s)",
    )


def _instance_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    client = aws.client("rds", max_attempts=1, account=ctx.impairment.account_id)
    identifier = before["db_instance"]
    state = _instance_state(rds.db_instance(client, identifier))
    original = before["availability_zone"]
    if state["availability_zone"] == original:
        if state["status"] == "rebooting" and not ctx.before:
            raise TransientError(f"DB instance {identifier} is still failing over; failing back once it is done")
        return ctx.result(
            "rollback",
            "changed" if ctx.before else "unchanged",
            [identifier],
            before=ctx.before or state,
            after=state,
            message=f"DB instance {identifier} is in its original Availability Zone {original}",
        )
    if ctx.before is not None and state["status"] == "rebooting":
        return ctx.result(
            "rollback",
            "changed",
            [identifier],
            before=ctx.before,
            after=state,
            message=f"DB instance {identifier}: failing back to {original} under way",
        )
    _require_status(state["status"], _INSTANCE_BUSY, f"DB instance {identifier}")
    ctx.record_before(state)
    aws.call(client, "reboot_db_instance", DBInstanceIdentifier=identifier, ForceFailover=True)
    return ctx.result(
        "rollback",
        "changed",
        [identifier],
        before=state,
        after=_instance_state(rds.db_instance(client, identifier)),
        message=f"DB instance {identifier}: rebooted with failover back to {original}",
    )


def _writer(cluster: dict[str, Any]) -> str | None:
    return next((m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m["IsClusterWriter"]), None)


def _cluster_state(cluster: dict[str, Any]) -> dict[str, Any]:
    return {"writer": _writer(cluster), "status": cluster.get("Status")}


def _cluster_apply(ctx: Context, client: Any, identifier: str | None) -> ActionResult:
    before = ctx.before
    target = ctx.params.target_db_instance_identifier
    if before is None:
        cluster = rds.db_cluster(client, identifier)
        what = f"DB cluster {identifier}"
        require_managed(
            tags.of_rds(client, cluster["DBClusterArn"]),
            ctx.managed_tag,
            "DB cluster",
            str(identifier),
            resource=cluster["DBClusterArn"],
        )
        _require_status(cluster["Status"], _CLUSTER_BUSY, what)
        writer = _writer(cluster)
        members = sorted(m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []))
        if writer is None:
            raise PermanentError(f"{what} has no writer instance")
        if len(members) < 2:
            raise ActionRefused(f"{what} has no reader to fail over to")
        if target is not None and (target not in members or target == writer):
            raise PermanentError(f"{target} is not a reader of {what}; its members: {members}")
        before = {
            "kind": "database",
            "db_cluster": identifier,
            "arn": cluster["DBClusterArn"],
            "members": members,
            **_cluster_state(cluster),
        }
        ctx.record_before(before)
    else:
        cluster = rds.db_cluster(client, before["db_cluster"])
    identifier = before["db_cluster"]
    state = _cluster_state(cluster)
    if state["writer"] != before["writer"] or (ctx.before is not None and state["status"] == "failing-over"):
        return ctx.result(
            "apply",
            "changed",
            [identifier],
            before=before,
            after=state,
            message=f"DB cluster {identifier}: failover from writer {before['writer']} already under way or done",
        )
    _require_status(state["status"], _CLUSTER_BUSY, f"DB cluster {identifier}")
    if not ctx.dry_run:
        kwargs = {"TargetDBInstanceIdentifier": target} if target else {}
        aws.call(client, "failover_db_cluster", DBClusterIdentifier=identifier, **kwargs)
        state = _cluster_state(rds.db_cluster(client, identifier))
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [identifier],
        before=before,
        after=state,
        message=f"DB cluster {identifier}: failover from writer {before['writer']}"
        + (f" to {target}" if target else ""),
    )


def _cluster_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    client = aws.client("rds", max_attempts=1, account=ctx.impairment.account_id)
    identifier, original = before["db_cluster"], before["writer"]
    cluster = rds.db_cluster(client, identifier)
    state = _cluster_state(cluster)
    if state["writer"] == original:
        return ctx.result(
            "rollback",
            "changed" if ctx.before else "unchanged",
            [identifier],
            before=ctx.before or state,
            after=state,
            message=f"DB cluster {identifier}: {original} is the writer, as before the failover",
        )
    if state["status"] == "failing-over":
        if ctx.before is not None:
            return ctx.result(
                "rollback",
                "changed",
                [identifier],
                before=ctx.before,
                after=state,
                message=f"DB cluster {identifier}: failing back to {original} under way",
            )
        raise TransientError(f"DB cluster {identifier} is still failing over; failing back once it is done")
    _require_status(state["status"], _CLUSTER_BUSY, f"DB cluster {identifier}")
    if original not in {m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])}:
        raise PermanentError(f"DB cluster {identifier}: its previous writer {original} is no longer a member")
    _require_status(
        rds.db_instance(client, original).get("DBInstanceStatus", ""), _INSTANCE_BUSY, f"DB instance {original}"
    )
    ctx.record_before(state)
    aws.call(client, "failover_db_cluster", DBClusterIdentifier=identifier, TargetDBInstanceIdentifier=original)
    return ctx.result(
        "rollback",
        "changed",
        [identifier],
        before=state,
        after=_cluster_state(rds.db_cluster(client, identifier)),
        message=f"DB cluster {identifier}: failed back to writer {original}",
    )


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
