"""One decorator for every Lambda entry point: structured logs correlated by impairment id,
X-Ray tracing and EMF metrics flushed at the end of the invocation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from core.observability import logger, metrics, tracer


def lambda_entry(function: Callable[..., Any]) -> Callable[..., Any]:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    @functools.wraps(function)
    def handler(event: Any, context: Any, **kwargs: Any) -> Any:
        impairment = event.get("impairment") if isinstance(event, dict) else None
        if isinstance(impairment, dict) and isinstance(impairment.get("impairment_id"), str):
            logger.set_correlation_id(impairment["impairment_id"])
        return function(event, context, **kwargs)

    return handler
