"""promote_read_replica: promote the standby region's cross-region read replica (a workload
without Aurora) to a standalone DB instance that takes writes, before traffic moves there, and
wait until it is available and no longer a replica. Its backup retention is kept.

Irreversible: a promoted replica cannot be demoted (its rollback says so and changes nothing),
so a plan using it needs a human's approval (requires_approval) unless the step opts out
(without_approval), checked when the plan is validated. Its own action rather than a kind of
`failover`: failover's kinds fail back on rollback, and a plan naming `failover` must not become
irreversible by a change of kind. The DB instance must carry the managed tag.

Design: docs/actions.md#promote_read_replica
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused, CapacityNotReady, PermanentError
from core.reads import rds, tags
from core.reads.tags import require_managed

NAME = "promote_read_replica"
# States a replica passes through (promoting reboots it): wait.
_BUSY = frozenset({"backing-up", "modifying", "rebooting", "renaming", "starting", "upgrading", "maintenance"})


class Params(ActionParams, kw_only=True):
    db_instance_identifier: (
        Annotated[
            str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$", description="default: the scope's standby_db_instance")
        ]
        | None
    ) = None
    without_approval: Annotated[
        bool,
        Meta(
            description="the promotion cannot be undone: a plan using it must require approval unless this says "
            "it may run without a human"
        ),
    ] = False


def apply(ctx: Context) -> ActionResult:
    client = aws.client("rds", max_attempts=1, account=ctx.impairment.account_id)
    before = ctx.before or _record_before(ctx, client)
    identifier = before["db_instance"]
    db = rds.db_instance(client, identifier)
    if before["source"] is None or not _is_replica(db):
        return _settled(ctx, before, db)
    status = db.get("DBInstanceStatus")
    if status in _BUSY:
        raise CapacityNotReady(f"DB instance {identifier} is {status}: promotion under way", status=status)
    if status != "available":
        raise ActionRefused(f"DB instance {identifier} is {status}: it cannot be promoted", status=status)
    if ctx.dry_run:
        message = f"DB instance {identifier}: would be promoted from a replica of {before['source']}"
        return ctx.result("apply", result_of(ctx, True), [identifier], before, _state(db), message)
    retention = {"BackupRetentionPeriod": before["backup_retention"]} if before["backup_retention"] else {}
    aws.call(client, "promote_read_replica", DBInstanceIdentifier=identifier, **retention)
    return _settled(ctx, before, rds.db_instance(client, identifier))


def _record_before(ctx: Context, client: Any) -> dict[str, Any]:
    identifier = ctx.params.db_instance_identifier or ctx.impairment.scope.get("standby_db_instance")
    if not identifier:
        raise PermanentError(
            "promote_read_replica needs a DB instance: db_instance_identifier in the step's params, or "
            "standby_db_instance in the impairment's scope (a workload's standby.read_replica)"
        )
    db = rds.db_instance(client, identifier)
    arn = db["DBInstanceArn"]
    require_managed(tags.of_rds(client, arn), ctx.managed_tag, "DB instance", identifier, resource=arn)
    before = {"db_instance": identifier, "arn": arn, **_state(db), "backup_retention": db.get("BackupRetentionPeriod")}
    ctx.record_before(before)
    return before


def _settled(ctx: Context, before: dict[str, Any], db: dict[str, Any]) -> ActionResult:
    """The result once the instance is available and no longer a replica; CapacityNotReady until then."""
    identifier, state = before["db_instance"], _state(db)
    if _is_replica(db) or state["status"] != "available":
        raise CapacityNotReady(f"DB instance {identifier} is {state['status']}, replica of {state['source']}", **state)
    if before["source"] is None:
        message = f"DB instance {identifier} is not a read replica: nothing to promote"
        return ctx.result("apply", "unchanged", [identifier], before, state, message)
    message = f"DB instance {identifier}: promoted from a replica of {before['source']}; it takes writes now"
    return ctx.result("apply", "changed", [identifier], before, state, message)


def rollback(ctx: Context) -> ActionResult:
    """A promoted replica cannot be demoted: say so, change nothing."""
    before = (ctx.applied or {}).get("before") or {}
    if not before.get("source"):
        return ctx.result("rollback", "unchanged", [], message="nothing was promoted")
    identifier = before["db_instance"]
    client = aws.client("rds", max_attempts=1, account=ctx.impairment.account_id)
    if _is_replica(rds.db_instance(client, identifier)):
        return ctx.result("rollback", "unchanged", [identifier], before, message=f"{identifier} was not promoted")
    return ctx.result(
        "rollback",
        "irreversible",
        [identifier],
        before=before,
        message=f"DB instance {identifier} was promoted and cannot be demoted: it stays a standalone instance; "
        f"a new replica of it (or of {before['source']}) is a human's decision",
    )


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after the step: the instance is available and no longer a replica."""
    before = (applied or {}).get("before") or {}
    if not before.get("db_instance"):
        return []
    db = rds.db_instance(aws.client("rds", max_attempts=1, account=impairment.account_id), before["db_instance"])
    state = _state(db)
    passed = state["status"] == "available" and not _is_replica(db)
    return [{"check": "read_replica_promoted", "db_instance": before["db_instance"], "passed": passed, **state}]


def _is_replica(db: dict[str, Any]) -> bool:
    return bool(db.get("ReadReplicaSourceDBInstanceIdentifier"))


def _state(db: dict[str, Any]) -> dict[str, Any]:
    return {"status": db.get("DBInstanceStatus"), "source": db.get("ReadReplicaSourceDBInstanceIdentifier")}


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
