"""The recovery workflow's building blocks that are not the workflow's shape: the state machine
itself, a task's retries, and the grant to page (infra/constructs/workflow.py uses them)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from core.errors import CAPACITY_WAIT_ATTEMPTS, CAPACITY_WAIT_INTERVAL_SECONDS, CapacityNotReady
from infra.constants import RETRYABLE_ERRORS


def state_machine(
    scope: Construct, first: sfn.IChainable, timeout_seconds: int, log_group: logs.ILogGroup, comment: str
) -> sfn.StateMachine:
    """A Standard state machine, traced, logging every execution's events and data."""
    return sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_type=sfn.StateMachineType.STANDARD,
        definition_body=sfn.DefinitionBody.from_chainable(first),
        timeout=Duration.seconds(timeout_seconds),
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        comment=comment,
    )


def grant_page(function: lambda_.Function, topic: sns.ITopic) -> None:
    """Publish to the escalation topic: sns:Publish on it and, as its messages are encrypted with
    its key, the two KMS actions that needs, named (CDK's grant_publish adds kms:GenerateDataKey*)."""
    function.add_to_role_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn]))
    if topic.master_key is not None:
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[topic.master_key.key_arn])
        )


def retry_transient(task: tasks.LambdaInvoke) -> tasks.LambdaInvoke:
    """Transient errors retry in one layer, here: capped exponential backoff with full jitter. An
    action waiting for capacity to come into service (CapacityNotReady, a TransientError too) is
    asked again at a slow, steady pace first: booting instances take minutes, not seconds."""
    task.add_retry(
        errors=[CapacityNotReady.__name__],
        interval=Duration.seconds(CAPACITY_WAIT_INTERVAL_SECONDS),
        max_attempts=CAPACITY_WAIT_ATTEMPTS,
        backoff_rate=1,
    )
    task.add_retry(
        errors=RETRYABLE_ERRORS,
        interval=Duration.seconds(2),
        max_attempts=4,
        backoff_rate=2,
        max_delay=Duration.seconds(30),
        jitter_strategy=sfn.JitterType.FULL,
    )
    return task
