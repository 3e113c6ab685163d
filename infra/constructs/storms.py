"""The states after Escalate that make a storm one page and one summary (orchestration/storm.py)."""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

# SummarizeStorm's input: the storm Escalate returned (and the impairment, for the logs).
SUMMARY_INPUT = sfn.TaskInput.from_object({"impairment.$": "$.impairment", "storm.$": "$.escalation.storm"})


def storm_leader_waits(scope: Construct, prefix: str, summarize: tasks.LambdaInvoke, escalated: sfn.Fail) -> sfn.Choice:
    """Escalate -> a storm's leader waits for the window's end (holding nothing: its record and
    locks are done) and pages the summary -> Escalated; any other escalation ends at once. Should
    the summary's retries run out, ExecutionEnded sends it (the storm says it is unsent)."""
    summarize.add_catch(escalated, errors=["States.ALL"], result_path="$.storm_summary_error").next(escalated)
    until = sfn.WaitTime.timestamp_path("$.escalation.storm.summary_at")
    wait = sfn.Wait(scope, f"{prefix}WaitForStorm", time=until).next(summarize)
    leader = sfn.Condition.and_(
        sfn.Condition.is_present("$.escalation.storm.leader"),
        sfn.Condition.boolean_equals("$.escalation.storm.leader", True),
    )
    return sfn.Choice(scope, f"{prefix}StormLeader?").when(leader, wait).otherwise(escalated)
