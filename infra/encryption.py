"""One customer managed key for the stack's data at rest (config encryption.customer_managed_key,
issue 17): the recovery table, every queue, every log group and the escalation topic.

Queues and log groups take it from an aspect, so that none is missed whichever construct creates
them; the key policy lets only the services that write encrypted data as themselves use it, each
as narrowly as it allows.

Design: docs/safety.md#least-privilege-and-encryption
"""

from __future__ import annotations

import jsii
from aws_cdk import Aspects, IAspect, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

_USE = ["kms:Decrypt", "kms:GenerateDataKey*"]


class DataKey(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description="Impairment recovery: the table, queues, log groups and escalation topic",
        )
        own = {"aws:SourceAccount": stack.account}
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                        )
                    }
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeDeadLetters",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=_USE,
                resources=["*"],
                conditions={"StringEquals": own},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                # The topic delivering to an encrypted queue (paging's notifier queue): SNS
                # itself encrypts the message for the queue.
                sid="SnsToEncryptedQueues",
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=_USE,
                resources=["*"],
                conditions={"StringEquals": own},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ThroughSqsAndDynamoDbInThisAccount",
                principals=[iam.AnyPrincipal()],
                actions=_USE,
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "kms:CallerAccount": stack.account,
                        "kms:ViaService": [
                            f"{service}.{stack.region}.amazonaws.com" for service in ("sqs", "dynamodb")
                        ],
                    }
                },
            )
        )
        Aspects.of(stack).add(_EncryptWith(self.key))


@jsii.implements(IAspect)
class _EncryptWith:
    """Every log group and queue of the stack, encrypted with the key."""

    def __init__(self, key: kms.IKey) -> None:
        self.key = key

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, logs.CfnLogGroup):
            node.kms_key_id = self.key.key_arn
        elif isinstance(node, sqs.CfnQueue):
            node.sqs_managed_sse_enabled = None
            node.kms_master_key_id = self.key.key_arn
