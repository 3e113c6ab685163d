"""`recoveryctl approve|reject ID`: answer a recovery that waits for a human's approval.

When a plan needs approval, the state machine waits on a task token and records on the
impairment record: approval = {"status": "pending", "task_token", "requested_at", "expires_at",
"plan"}. Approving sends SendTaskSuccess with {"approved": true, "by", "reason"}; rejecting sends
SendTaskFailure with error "ApprovalRejected"; then the record says who decided, when and why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from recoveryctl.backends import BackendError, DeployedBackend, explain

# Step Functions' answers for a token whose task is over (timed out, already answered, aborted).
EXPIRED_ERRORS = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


class ApprovalError(RuntimeError):
    """The approval cannot be given; `exit_code` 2 for a wrong request, 1 for one that came too late."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def decide(backend: DeployedBackend, impairment_id: str, approve: bool, reason: str, actor: str) -> dict[str, Any]:
    """Approve or reject the pending approval of an impairment; returns the updated approval."""
    record = backend.impairment(impairment_id)
    if record is None:
        raise ApprovalError(
            f"no impairment {impairment_id} in {backend.describe()}: list them with `recoveryctl status --deployed`"
        )
    approval = record.get("approval") or {}
    if not approval:
        raise ApprovalError(
            f"impairment {impairment_id} has no approval request (status {record.get('status')}): "
            "its plan needs no approval, or the recovery has not reached the approval step yet"
        )
    if approval.get("status") != "pending":
        by = f" by {approval['by']}" if approval.get("by") else ""
        at = f" at {approval['at']}" if approval.get("at") else ""
        raise ApprovalError(f"impairment {impairment_id}: the approval is already {approval.get('status')}{by}{at}")
    token = approval.get("task_token")
    if not token:
        raise ApprovalError(
            f"impairment {impairment_id}: the pending approval carries no task token; see its execution"
        )
    sfn = backend.client("stepfunctions")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if approve:
            sfn.send_task_success(taskToken=token, output=json.dumps({"approved": True, "by": actor, "reason": reason}))
        else:
            sfn.send_task_failure(
                taskToken=token, error="ApprovalRejected", cause=(reason or f"rejected by {actor}")[:32768]
            )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in EXPIRED_ERRORS:
            expires = approval.get("expires_at") or "its deadline"
            raise ApprovalError(
                f"the approval of {impairment_id} timed out ({expires}; Step Functions: {code}): the recovery "
                f"was escalated to a human instead. See `recoveryctl show {impairment_id} --deployed`",
                exit_code=1,
            ) from exc
        raise explain("states:SendTask" + ("Success" if approve else "Failure"), exc) from exc
    except BotoCoreError as exc:
        raise explain("states:SendTask" + ("Success" if approve else "Failure"), exc) from exc
    decided = {
        **approval,
        "status": "approved" if approve else "rejected",
        "by": actor,
        "at": datetime.now(UTC).isoformat(),
        "reason": reason,
    }
    try:
        backend.store.update_impairment(impairment_id, approval=decided)
    except Exception as exc:  # the decision is made; only the audit note failed
        raise BackendError(
            f"the recovery of {impairment_id} was {decided['status']}, but recording it on the impairment failed "
            f"({exc}); the execution's history shows the decision"
        ) from exc
    return decided
