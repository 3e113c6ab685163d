"""The recovery system's CloudWatch dashboard, and the metrics the functions emit."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constants import METRICS_NAMESPACE

SERVICE = "impairment-recovery"  # the Powertools service dimension of every custom metric
FIVE_MINUTES = Duration.minutes(5)


def recovery_dashboard(
    scope: Construct,
    state_machine: sfn.StateMachine,
    dead_letters: sqs.IQueue,
    functions: dict[str, lambda_.IFunction],
    alarms: list[cloudwatch.Alarm],
) -> cloudwatch.Dashboard:
    """The dashboard (construct id "Dashboard" in `scope`): MTTD and MTTR, outcomes, detections,
    actions, the workflow's executions, the functions' errors and throttles, the dead letters and
    the alarms on the system."""
    stack = Stack.of(scope)
    names = sorted(functions)
    dashboard = cloudwatch.Dashboard(
        scope,
        "Dashboard",
        dashboard_name=f"{stack.stack_name}-recovery",
        default_interval=Duration.days(7),
    )
    dashboard.add_widgets(
        cloudwatch.TextWidget(
            markdown=(
                "# Impairment recovery\n"
                "MTTD = detected - signal; MTTR = resolved - detected. Practice drills are counted apart "
                "(Drill*). What each alarm means and what to do: docs/operations.md."
            ),
            width=24,
            height=2,
        )
    )
    dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="MTTD (seconds)",
            left=[custom_metric("MTTD", stat, f"MTTD {stat}") for stat in ("p50", "p90", "p99")]
            + [custom_metric("DrillMTTD", "p50", "drills p50")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="MTTR (seconds)",
            left=[custom_metric("MTTR", stat, f"MTTR {stat}") for stat in ("p50", "p90", "p99")]
            + [custom_metric("DrillMTTR", "p50", "drills p50")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Recovery outcomes",
            left=[
                custom_metric(name)
                for name in (
                    "RecoveriesStarted",
                    "RecoveriesSucceeded",
                    "RecoveriesFailed",
                    "RecoveriesRolledBack",
                    "RecoveriesEscalated",
                    "RecoveriesSkipped",
                    "DrillsDetected",
                )
            ],
            width=8,
        ),
    )
    dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Detections by type and severity",
            left=[_search("ImpairmentsDetected", ("impairment_type", "severity"), "Sum")],
            stacked=True,
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Actions: succeeded and failed, by action and phase",
            left=[_search("ActionSucceeded", ("action", "phase"), "Sum")],
            right=[_search("ActionFailed", ("action", "phase"), "Sum")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Action duration p90 (ms), by action and phase",
            left=[_search("ActionDuration", ("action", "phase"), "p90")],
            width=8,
        ),
    )
    dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Workflow executions",
            left=[
                state_machine.metric_started(period=FIVE_MINUTES, statistic="Sum", label="started"),
                state_machine.metric_succeeded(period=FIVE_MINUTES, statistic="Sum", label="succeeded"),
                state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum", label="failed"),
                state_machine.metric_timed_out(period=FIVE_MINUTES, statistic="Sum", label="timed out"),
                state_machine.metric_throttled(period=FIVE_MINUTES, statistic="Sum", label="throttled"),
            ],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Function errors",
            left=[functions[n].metric_errors(period=FIVE_MINUTES, statistic="Sum", label=n) for n in names],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Function throttles",
            left=[functions[n].metric_throttles(period=FIVE_MINUTES, statistic="Sum", label=n) for n in names],
            width=8,
        ),
    )
    dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Dead-letter queue depth",
            left=[
                dead_letters.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum", label="messages"
                )
            ],
            width=8,
        ),
        cloudwatch.AlarmStatusWidget(title="Alarms on the recovery system", alarms=alarms, width=16),
    )
    return dashboard


def custom_metric(name: str, statistic: str = "Sum", label: str | None = None, **dimensions: str) -> cloudwatch.Metric:
    """A metric the functions emit (EMF, ImpairmentRecovery namespace, the service dimension and
    `dimensions`, as core/observability.py emit writes them)."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE, **dimensions},
        statistic=statistic,
        period=FIVE_MINUTES,
        label=label or name,
    )


def _search(name: str, dimensions: tuple[str, ...], statistic: str) -> cloudwatch.MathExpression:
    """Every breakdown of a metric by its dimensions (one line per impairment type and severity,
    or per action and phase), whatever values have been emitted."""
    schema = ",".join((METRICS_NAMESPACE, "service", *dimensions))
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{{schema}}} MetricName=\"{name}\"', '{statistic}', 300)",
        using_metrics={},
        label="",
        period=FIVE_MINUTES,
    )
