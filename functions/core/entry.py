"""One decorator for every Lambda entry point: structured logs correlated by impairment id (and by
the X-Ray trace id of Lambda's Active tracing) and EMF metrics flushed at the end of the invocation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from core import aws
from core.observability import logger, metrics


def correlation_id_of(event: Any) -> str | None:
    """The id that ties this invocation's log lines to others about the same impairment.

    - a state machine task (orchestration, action, rollback): event["impairment"]["impairment_id"];
    - an impairment event on the bus (the start function): its detail's impairment_id;
    - an AWS event at a detector: its EventBridge event id, until the detector has classified
      it; the detector then sets the impairment id it found (detectors.common.publish).
    """
    if not isinstance(event, dict):
        return None
    for holder in (event.get("impairment"), event.get("detail")):
        if isinstance(holder, dict) and isinstance(holder.get("impairment_id"), str) and holder["impairment_id"]:
            return holder["impairment_id"]
    event_id = event.get("id")
    return event_id if isinstance(event_id, str) and event_id and "detail-type" in event else None


def lambda_entry(function: Callable[..., Any]) -> Callable[..., Any]:
    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    @functools.wraps(function)
    def handler(event: Any, context: Any, **kwargs: Any) -> Any:
        aws.know_identity(getattr(context, "invoked_function_arn", None))
        correlation_id = correlation_id_of(event)
        if correlation_id:
            logger.set_correlation_id(correlation_id)
        return function(event, context, **kwargs)

    return handler
