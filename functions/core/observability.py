"""The single logger and metrics of every function (Powertools), and the one way to emit a metric
that has dimensions of its own.

No X-Ray SDK: Lambda's Active tracing records every invocation without it, and its import was
most of a handler's cold start; each log line carries `xray_trace_id` to join the two. A metric
with dimensions of its own goes out in an EMF document of its own, since Powertools shares one
set of dimensions across a flush. Dimensions are few, fixed values, never an id.

Design: docs/operations.md#dashboard
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "impairment-recovery"
METRICS_NAMESPACE = "ImpairmentRecovery"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)


def emit(name: str, unit: str, value: float, **dimensions: str) -> None:
    """One metric with its own dimensions (and the service's), written now as an EMF document."""
    from aws_lambda_powertools.metrics import single_metric

    with single_metric(
        name=name,
        unit=unit,  # type: ignore[arg-type]
        value=value,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": SERVICE, **dimensions},
    ):
        pass


def drill_label(drill: bool) -> str:
    """The value of the `drill` dimension: practice drills are counted apart from real impairments."""
    return "true" if drill else "false"
