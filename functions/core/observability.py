"""The single logger, tracer and metrics of every function (Powertools)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

METRICS_NAMESPACE = "ImpairmentRecovery"

logger = Logger(service="impairment-recovery")
tracer = Tracer(service="impairment-recovery")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="impairment-recovery")
