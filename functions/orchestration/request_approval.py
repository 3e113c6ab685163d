"""RequestApproval: a plan marked requires_approval waits for a human before it acts.

The state machine invokes this with a task token (lambda:invoke.waitForTaskToken) and waits; the
token is recorded on the impairment and the escalation topic says how to answer:
`recoveryctl approve ID` sends SendTaskSuccess, `recoveryctl reject ID` SendTaskFailure with the
error ApprovalRejected. No answer within the plan's approval_timeout_seconds times the task out,
and the workflow escalates having changed nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core import clock, paging, state
from core import settings as settings_module
from core.entry import lambda_entry
from core.errors import InvalidInput
from core.observability import logger, metrics
from core.store import RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, store: Any = None, sns: Any = None) -> dict[str, Any]:
    impairment = state.parse(event, "RequestApproval", plan=True).impairment
    settings = settings_module.load("table_name", "escalation_topic_arn")
    plan = event["plan"]
    token = event.get("task_token")
    if not isinstance(token, str) or not token:
        raise InvalidInput("RequestApproval needs the task token of its state (waitForTaskToken)")
    store = store or RecoveryStore(settings.table_name)
    now = clock.utc_now()
    timeout = int(plan.get("approval_timeout_seconds") or 3600)
    expires = now + timedelta(seconds=timeout)
    store.update_impairment(
        impairment.impairment_id,
        status="awaiting_approval",
        approval={
            "status": "pending",
            "task_token": token,
            "requested_at": now.isoformat(),
            "expires_at": expires.isoformat(),
            "plan": plan.get("name"),
        },
    )
    _page(settings, impairment, plan, expires, sns)
    metrics.add_metric(name="ApprovalsRequested", unit="Count", value=1)
    logger.info("approval requested", plan=plan.get("name"), expires_at=expires.isoformat())
    return {"requested_at": now.isoformat(), "expires_at": expires.isoformat()}


def _page(settings: Any, impairment: Any, plan: dict[str, Any], expires: Any, sns: Any) -> None:
    """Ask a human on the escalation topic, with what to run to approve or reject."""
    steps = ", ".join(s["action"] for s in plan.get("steps", []))
    paging.page(
        settings.escalation_topic_arn,
        impairment.workload,
        f"approve plan {plan.get('name')}?",
        {
            "summary": (
                f"Plan {plan.get('name')} ({steps}) is ready to recover {impairment.workload} from "
                f"{impairment.impairment_type.value} ({impairment.severity.value}) and needs a human's approval "
                f"before {expires.isoformat()}; without an answer nothing is changed and this is escalated."
            ),
            "impairment_id": impairment.impairment_id,
            "plan": plan,
            "impairment": impairment.model_dump(mode="json"),
            "approve": f"recoveryctl approve {impairment.impairment_id}",
            "reject": f"recoveryctl reject {impairment.impairment_id} --reason TEXT",
            "expires_at": expires.isoformat(),
        },
        sns=sns,
    )
