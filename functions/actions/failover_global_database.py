"""failover_global_database: make an Aurora global database's secondary cluster (the standby
region's) its writer, before traffic moves there. If the writer's region answers (the region
probe's notion of an answer, one short call): SwitchoverGlobalCluster, no data loss; else
FailoverGlobalCluster(AllowDataLoss) only when allow_data_loss is set (the step's, else the
workload's), otherwise refused: the recovery escalates, nothing moved. The step ends once the
target is the writer and available (CapacityNotReady meanwhile). Rollback switches back if the
old writer's region answers; a failover with data loss is irreversible. The target cluster must
carry the managed tag. (`failover` with kind "global_database" is this action: ALIASES.)

Design: docs/actions.md#failover_global_database
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.arns import DbClusterArn, region_of
from core.contract import ImpairmentDetected
from core.errors import ActionRefused, CapacityNotReady, PermanentError, TransientError
from core.reads import rds, tags
from core.reads.tags import require_managed

NAME = "failover_global_database"

# Global cluster states that pass on their own: wait rather than give up.
_BUSY = frozenset({"switching-over", "failing-over", "modifying", "upgrading"})
# RDS refuses a second switchover or failover while one is under way with this code.
_IN_PROGRESS = "InvalidGlobalClusterStateFault"
# The operation of a step that would lose data without leave to: nothing is called.
REFUSED = "refused"


class Params(ActionParams, kw_only=True):
    kind: Literal["global_database"] = "global_database"
    # each defaults to the impairment's scope (global_cluster_id, standby_db_cluster_arn)
    global_cluster_identifier: Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$")] | None = None
    target_db_cluster_arn: (
        Annotated[DbClusterArn, Meta(description="the secondary cluster to make the writer (the standby region's)")]
        | None
    ) = None
    allow_data_loss: (
        Annotated[
            bool,
            Meta(
                description="when the writer's region does not answer, fail over losing what it had not replicated; "
                "default: the workload's standby.global_database.allow_data_loss, else false"
            ),
        ]
        | None
    ) = None


def apply(ctx: Context) -> ActionResult:
    before = ctx.before or _record_before(ctx)
    if before["operation"] == REFUSED:
        raise ActionRefused(f"global database {before['global_cluster']}: {before['why']}", writer=before["writer"])
    target = before["target"]
    client = _client(ctx.impairment, target)
    found = rds.global_cluster(client, before["global_cluster"])
    if before["operation"] is None or _writer(found) == target:
        return _settled(ctx, client, before, found)
    if ctx.before is not None and _under_way(found):
        raise CapacityNotReady(f"global database {before['global_cluster']} is {found.get('Status')}: waiting")
    if ctx.dry_run:
        return ctx.result(
            "apply", result_of(ctx, True), [target], before=before, after=_state(found), message=_why(before)
        )
    _start(client, before["operation"], before["global_cluster"], target)
    return _settled(ctx, client, before, rds.global_cluster(client, before["global_cluster"]))


def _record_before(ctx: Context) -> dict[str, Any]:
    """Read the global database, decide switchover or failover (and why), record it."""
    identifier, target, allow_data_loss = _targets(ctx)
    client = _client(ctx.impairment, target)
    cluster = rds.db_cluster(client, target)
    require_managed(tags.of_rds(client, target), ctx.managed_tag, "DB cluster", target, resource=target)
    found = rds.global_cluster(client, identifier)
    members = sorted(m["DBClusterArn"] for m in found.get("GlobalClusterMembers", []))
    if target not in members:
        raise PermanentError(f"{target} is not a member of global database {identifier}; its members: {members}")
    writer = _writer(found)
    before = {"kind": "global_database", "global_cluster": identifier, "target": target, "writer": writer}
    before |= {"members": members, "status": found.get("Status"), "target_status": cluster.get("Status")}
    if writer == target:
        operation, why = None, "the target is already the writer"
    else:
        _require_available(found)
        operation, why = _operation(ctx.impairment, identifier, writer, allow_data_loss)
    before |= {"operation": operation, "why": why, "allow_data_loss": allow_data_loss}
    ctx.record_before(before)
    return before


def _targets(ctx: Context) -> tuple[str, str, bool]:
    params, scope = ctx.params, ctx.impairment.scope
    identifier = params.global_cluster_identifier or scope.get("global_cluster_id")
    target = params.target_db_cluster_arn or scope.get("standby_db_cluster_arn")
    if not identifier or not target:
        raise PermanentError(
            "failover_global_database needs a global database and its secondary cluster: give "
            "global_cluster_identifier and target_db_cluster_arn in the step's params, or global_cluster_id and "
            "standby_db_cluster_arn in the impairment's scope (a workload's standby.global_database)"
        )
    allow = params.allow_data_loss
    if allow is None:
        allow = scope.get("global_cluster_allow_data_loss") == "true"
    return identifier, target, allow


def _operation(impairment: ImpairmentDetected, identifier: str, writer: str | None, allow: bool) -> tuple[str, str]:
    """switchover (the writer's region answers), failover (it does not, and data loss is allowed),
    or refused (recorded as the step's state before, then refused: a human decides); and why."""
    if writer is None:
        answers, error = False, "the global database has no writer"
    else:
        answers, error = region_answers(impairment, writer)
    if answers:
        return "switchover", f"the writer's region {region_of(str(writer))} answers: a planned switchover, no data loss"
    where = f"the writer's region {region_of(writer)} does not answer ({error})" if writer else error
    if not allow:
        return REFUSED, (
            f"{where}; a failover would lose the writes not yet replicated and allow_data_loss is not set "
            "(the step's allow_data_loss, or the workload's standby.global_database.allow_data_loss): a human decides"
        )
    return "failover", f"{where}; allow_data_loss: failed over, losing what it had not replicated"


def region_answers(impairment: ImpairmentDetected, cluster_arn: str) -> tuple[bool, str]:
    """Whether the cluster's region answers a DescribeDBClusters of it, as the region probe judges
    an answer (detectors/region_probe.py: one attempt, short timeouts; a refusal is an answer), and
    the error if it does not. A failure on this side (neither) is a TransientError."""
    from detectors.region_probe import TIMEOUTS, Verdict, classify

    region = region_of(cluster_arn)
    client = aws.client("rds", max_attempts=1, account=impairment.account_id, region=region, timeouts=TIMEOUTS)
    try:
        client.describe_db_clusters(DBClusterIdentifier=cluster_arn)
        error = None
    except Exception as exc:  # noqa: BLE001 - classified as the region probe classifies it
        error = exc
    verdict = classify(error)
    if verdict.verdict is Verdict.INCONCLUSIVE:
        raise TransientError(f"could not tell whether {region} answers: {verdict.error}")
    return verdict.verdict is not Verdict.REGION_FAILURE, verdict.error


def _start(client: Any, operation: str, identifier: str, target: str) -> None:
    """SwitchoverGlobalCluster or FailoverGlobalCluster(AllowDataLoss); one already under way
    (a retry's, RDS answers InvalidGlobalClusterStateFault) is waited for."""
    kwargs: dict[str, Any] = {"GlobalClusterIdentifier": identifier, "TargetDbClusterIdentifier": target}
    if operation == "failover":
        kwargs["AllowDataLoss"] = True
    try:
        aws.call(client, f"{operation}_global_cluster", **kwargs)
    except PermanentError as exc:
        if exc.details.get("code") != _IN_PROGRESS:
            raise
        raise CapacityNotReady(f"global database {identifier}: a switchover or failover is under way") from exc


def _settled(ctx: Context, client: Any, before: dict[str, Any], found: dict[str, Any]) -> ActionResult:
    """The step's result once the target is the writer and available; CapacityNotReady until then."""
    target, identifier = before["target"], before["global_cluster"]
    status = rds.db_cluster(client, target).get("Status")
    state = _state(found) | {"target_status": status}
    if state["writer"] != target or status != "available" or _under_way(found):
        raise CapacityNotReady(
            f"global database {identifier}: writer {state['writer']}, {target} {status}, {found.get('Status')}",
            **state,
        )
    operation = before["operation"]
    message = f"global database {identifier}: {target} is the writer" + (
        f" after a {operation} from {before['writer']} ({before['why']})" if operation else f" ({before['why']})"
    )
    return ctx.result("apply", "changed" if operation else "unchanged", [target], before, state, message)


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or {}
    if before.get("operation") in (None, REFUSED):
        return ctx.result("rollback", "unchanged", [], message="nothing was applied: the writer was not moved")
    target, original, identifier = before["target"], before["writer"], before["global_cluster"]
    if before["operation"] == "failover":
        return ctx.result(
            "rollback",
            "irreversible",
            [target],
            before=before,
            message=f"global database {identifier}: failed over with data loss, which cannot be undone; "
            f"{target} stays the writer (switch back to {original} once its region is back: a human's decision)",
        )
    client = _client(ctx.impairment, target)
    found = rds.global_cluster(client, identifier)
    state = _state(found)
    if state["writer"] == original and not _under_way(found):
        message = f"global database {identifier}: {original} is the writer, as before"
        return ctx.result("rollback", "changed" if ctx.before else "unchanged", [target], before, state, message)
    if _under_way(found):
        if ctx.before is not None:
            message = f"global database {identifier}: switching back to {original} under way"
            return ctx.result("rollback", "changed", [target], ctx.before, state, message)
        raise TransientError(f"global database {identifier} is {found.get('Status')}: switching back once it is done")
    answers, error = region_answers(ctx.impairment, original)
    if not answers:
        raise ActionRefused(
            f"global database {identifier}: the previous writer's region {region_of(original)} does not answer "
            f"({error}); {state['writer']} stays the writer"
        )
    ctx.record_before(state)
    aws.call(
        client, "switchover_global_cluster", GlobalClusterIdentifier=identifier, TargetDbClusterIdentifier=original
    )
    after = _state(rds.global_cluster(client, identifier))
    return ctx.result(
        "rollback", "changed", [target], state, after, f"global database {identifier}: switched back to {original}"
    )


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after the step (its Verification in actions/registry.py): the global
    database's writer is the target, and the target is available."""
    before = (applied or {}).get("before") or {}
    if not before.get("target"):
        return []  # the step recorded no global database: nothing of its own to check
    client = _client(impairment, before["target"])
    found = rds.global_cluster(client, before["global_cluster"])
    status = rds.db_cluster(client, before["target"]).get("Status")
    writer = _writer(found)
    return [
        {
            "check": "global_database_writer",
            "global_cluster": before["global_cluster"],
            "passed": writer == before["target"] and status == "available" and not _under_way(found),
            "writer": writer,
            "target": before["target"],
            "target_status": status,
            "status": found.get("Status"),
        }
    ]


def _client(impairment: ImpairmentDetected, target: str) -> Any:
    """RDS in the target's region (the standby's): nothing is asked of the impaired region but
    whether it answers."""
    return aws.client("rds", max_attempts=1, account=impairment.account_id, region=region_of(target))


def _writer(found: dict[str, Any]) -> str | None:
    return next((m["DBClusterArn"] for m in found.get("GlobalClusterMembers", []) if m.get("IsWriter")), None)


def _under_way(found: dict[str, Any]) -> bool:
    failover = found.get("FailoverState") or {}
    return found.get("Status") in _BUSY or failover.get("Status") in ("pending", "failing-over", "switching-over")


def _require_available(found: dict[str, Any]) -> None:
    status, identifier = found.get("Status"), found.get("GlobalClusterIdentifier")
    if status == "available" and not _under_way(found):
        return
    if _under_way(found):
        raise TransientError(f"global database {identifier} is {status}; waiting for it to be available")
    raise ActionRefused(f"global database {identifier} is {status}: it cannot switch over or fail over")


def _state(found: dict[str, Any]) -> dict[str, Any]:
    return {"writer": _writer(found), "status": found.get("Status")}


def _why(before: dict[str, Any]) -> str:
    return f"global database {before['global_cluster']}: {before['operation']} to {before['target']} ({before['why']})"


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
