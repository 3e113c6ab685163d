"""The scheduled readiness check: can each enabled plan act now, on each workload it matches?
Every result is recorded (core/readiness.py) and PlanNotReady (dimension plan) emitted 1 or 0,
so a plan's alarm fires while it is not ready and clears once it is.

Design: docs/operations.md#readiness
"""

from __future__ import annotations

from typing import Any

from core import aws, clock, runtime_config
from core.observability import emit, logger
from core.store import RecoveryStore
from detectors.common import load_settings, parse_schedule
from readiness.checks import World
from readiness.evaluate import evaluate
from readiness.world import AwsWorld

METRIC = "PlanNotReady"


def _failing(result: dict[str, Any]) -> list[str]:
    return [f"{w['workload']}: {c['evidence']}" for w in result["workloads"] for c in w["checks"] if not c["ok"]]


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: Any, world: World | None = None, store: Any = None) -> dict[str, Any]:
    """Entry point of the schedule (or of `recoveryctl readiness`, with any event): judges every
    enabled plan, records and counts each result; returns them all. `world` and `store` are for
    tests."""
    aws.know_identity(getattr(context, "invoked_function_arn", None))
    if isinstance(event, dict) and event.get("source") == "aws.events":
        _, stop = parse_schedule(event)
        if stop is not None:
            return stop
    settings = load_settings("table_name")
    config = runtime_config.load()
    store = store or RecoveryStore(settings.table_name)
    disabled = set(store.get_switches().get("disabled_plans") or [])
    now = clock.utc_now()
    tag = (settings.managed_tag_key, settings.managed_tag_value)
    results = evaluate(world or AwsWorld(), config.plans, list(config.readiness), disabled, now, tag)
    for result in results:
        store.readiness.put(result, int(now.timestamp()))
        emit(METRIC, "Count", 0 if result["ready"] else 1, plan=result["plan"])
        if not result["ready"]:
            logger.warning("plan not ready", plan=result["plan"], failing=_failing(result))
    not_ready = [r["plan"] for r in results if not r["ready"]]
    logger.info("readiness", plans=len(results), not_ready=not_ready)
    return {"status": "not_ready" if not_ready else "ready", "not_ready": not_ready, "results": results}
