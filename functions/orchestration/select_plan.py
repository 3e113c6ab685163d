"""Select the plan for the impairment's type and severity: the first enabled plan, in declared
order, that covers it (plans are disabled one by one at run time, see RecoveryStore)."""

from __future__ import annotations

from typing import Any

from core import settings as settings_module
from core.contract import ImpairmentDetected
from core.entry import lambda_entry
from core.errors import NoMatchingPlan
from core.observability import logger
from core.plans import parse_plans, select_plan
from core.store import RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, store: Any = None) -> dict[str, Any]:
    settings = settings_module.load("table_name")
    impairment = ImpairmentDetected.model_validate(event["impairment"])
    store = store or RecoveryStore(settings.table_name)
    disabled = set(store.get_switches().get("disabled_plans", []))
    plan = select_plan([p for p in parse_plans(settings.plans) if p.name not in disabled], impairment)
    if plan is None:
        raise NoMatchingPlan(
            f"no plan covers {impairment.impairment_type.value} at severity {impairment.severity.value}"
            f" for workload {impairment.workload}"
        )
    dry_run = plan.dry_run or settings.dry_run
    store.update_impairment(impairment.impairment_id, status="recovering", plan=plan.name, dry_run=dry_run)
    logger.info("plan selected", plan=plan.name, steps=[s.action for s in plan.steps], dry_run=dry_run)
    verify = plan.verify.model_dump()
    if dry_run:
        verify = {"wait_seconds": 0, "max_attempts": 1}  # nothing changed: nothing to wait for
    return {
        "name": plan.name,
        "steps": [{"index": i, "action": s.action, "params": s.params} for i, s in enumerate(plan.steps)],
        "verify": verify,
        "timeout_seconds": plan.timeout_seconds,
        "dry_run": dry_run,
    }
