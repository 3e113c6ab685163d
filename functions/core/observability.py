"""The single logger and metrics of every function (Powertools), and the one way to emit a metric
that has dimensions of its own.

No X-Ray SDK: Lambda's Active tracing records every invocation without it, and its import (a
recorder, a sampler, botocore patches) was most of a handler's cold start. Each log line carries
the invocation's `xray_trace_id` and the impairment's `correlation_id`, which join the two.

Powertools' `metrics` object shares one set of dimensions across everything it flushes at the
end of an invocation, so a metric broken down by impairment type or action goes out on its own
(an EMF document of its own, written at once) with exactly its dimensions. Dimensions are few,
fixed values (impairment type, severity, action, phase, drill): never an id, whose every value
would be a new metric to pay for.
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
