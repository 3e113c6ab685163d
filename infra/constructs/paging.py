"""Paging beyond email: the notifier (PagerDuty, OpsItems) and chat channels, all fed by the one
escalation topic.

The notifier reads a queue subscribed to the topic with raw message delivery (each message is the
page as published), reports each message's failure on its own (a batch of pages is never retried
whole), and a message that keeps failing goes to its own dead-letter queue after MAX_RECEIVES
receives (an hour at the queue's visibility timeout), which Operations alarms. Chat channels are
AWS Chatbot configurations subscribed to the topic, whose role holds nothing and whose guardrail
allows only reading the recovery's executions and alarms.

Design: docs/operations.md#paging
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import Paging as PagingConfig
from infra.constructs.functions import FunctionFactory

NOTIFIER_TIMEOUT_SECONDS = 30
# Lambda's advice for a queue it reads: a visibility timeout of six times the function's timeout.
VISIBILITY_SECONDS = 6 * NOTIFIER_TIMEOUT_SECONDS
MAX_RECEIVES = 20  # 20 receives, 3 minutes apart: an hour of PagerDuty being down before a dead letter


class Paging(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PagingConfig,
        topic: sns.ITopic,
        functions: FunctionFactory,
        name: str,
    ) -> None:
        """`name`: this stack's prefix for the chat configurations' names (unique in the account)."""
        super().__init__(scope, construct_id)
        self.notifier: lambda_.Function | None = None
        self.dead_letters: sqs.Queue | None = None
        self.channels: list[Construct] = []
        if config.notifier:
            self._notifier(config, topic, functions)
        if config.chatbot is not None:
            self._chat(config, topic, name)

    def _notifier(self, config: PagingConfig, topic: sns.ITopic, functions: FunctionFactory) -> None:
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(VISIBILITY_SECONDS),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dead_letters),
        )
        topic.add_subscription(subscriptions.SqsSubscription(self.queue, raw_message_delivery=True))
        environment = {"NOTIFY_QUEUE_URL": self.queue.queue_url, "OPS_ITEMS": "true" if config.ops_items else "false"}
        if config.pagerduty is not None:
            environment["PAGERDUTY_ROUTING_KEY_SECRET"] = config.pagerduty.routing_key_secret
        notifier = functions.create(
            "Notifier",
            handler="notify.notifier.handler",
            description="Send pages and resolves on to PagerDuty and OpsCenter",
            timeout_seconds=NOTIFIER_TIMEOUT_SECONDS,
            environment=environment,
        )
        notifier.add_event_source(
            event_sources.SqsEventSource(self.queue, batch_size=10, report_batch_item_failures=True)
        )
        # Retry-After: the notifier holds a message back as long as PagerDuty asked.
        notifier.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:ChangeMessageVisibility"], resources=[self.queue.queue_arn])
        )
        if config.pagerduty is not None:
            notifier.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[secret_arn(Stack.of(self), config.pagerduty.routing_key_secret)],
                )
            )
        if config.ops_items:
            stack = Stack.of(self)
            ops_items = f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:opsitem/*"
            notifier.add_to_role_policy(
                iam.PolicyStatement(actions=["ssm:CreateOpsItem", "ssm:UpdateOpsItem"], resources=[ops_items])
            )
            # DescribeOpsItems supports no resource-level permissions.
            notifier.add_to_role_policy(iam.PolicyStatement(actions=["ssm:DescribeOpsItems"], resources=["*"]))
        self.notifier = notifier

    def _chat(self, config: PagingConfig, topic: sns.ITopic, name: str) -> None:
        assert config.chatbot is not None
        stack = Stack.of(self)
        # What anyone in the channel may do through Chatbot, at most: read this deployment's executions and alarms.
        guardrail = iam.ManagedPolicy(
            self,
            "ChatGuardrail",
            description="Chatbot channels of the recovery escalations: read executions and alarms, nothing else",
            statements=[
                iam.PolicyStatement(
                    actions=["states:DescribeExecution", "states:GetExecutionHistory", "cloudwatch:DescribeAlarms"],
                    resources=[
                        f"arn:{stack.partition}:states:{stack.region}:{stack.account}:execution:*",
                        f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*",
                    ],
                )
            ],
        )
        # The channel's role: Chatbot assumes it for what users run in the channel; it holds nothing.
        role = iam.Role(
            self,
            "ChatRole",
            assumed_by=iam.ServicePrincipal("chatbot.amazonaws.com"),
            description="Chatbot channels of the recovery escalations: notifications only",
        )
        slack, teams = config.chatbot.slack, config.chatbot.teams
        if slack is not None:
            self.channels.append(
                chatbot.SlackChannelConfiguration(
                    self,
                    "Slack",
                    slack_channel_configuration_name=f"{name}-escalations"[:128],
                    slack_workspace_id=slack.workspace_id,
                    slack_channel_id=slack.channel_id,
                    notification_topics=[topic],
                    guardrail_policies=[guardrail],
                    role=role,
                    logging_level=chatbot.LoggingLevel.ERROR,
                )
            )
        if teams is not None:
            self.channels.append(
                chatbot.CfnMicrosoftTeamsChannelConfiguration(
                    self,
                    "Teams",
                    configuration_name=f"{name}-escalations-teams"[:128],
                    team_id=teams.team_id,
                    teams_tenant_id=teams.tenant_id,
                    teams_channel_id=teams.channel_id,
                    iam_role_arn=role.role_arn,
                    sns_topic_arns=[topic.topic_arn],
                    guardrail_policies=[guardrail.managed_policy_arn],
                    logging_level="ERROR",
                )
            )


def secret_arn(stack: Stack, secret: str) -> str:
    """The ARN to grant on: as given, or a name's in this region and account, whose six-character
    suffix Secrets Manager adds ("-??????")."""
    if secret.startswith("arn:"):
        return secret if _complete(secret) else f"{secret}-??????"
    return f"arn:{stack.partition}:secretsmanager:{stack.region}:{stack.account}:secret:{secret}-??????"


def _complete(arn: str) -> bool:
    """A complete secret ARN ends with a hyphen and six characters Secrets Manager chose."""
    name = arn.split(":secret:", 1)[1]
    return len(name) > 7 and name[-7] == "-" and name[-6:].isalnum()
