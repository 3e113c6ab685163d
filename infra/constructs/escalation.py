"""Escalations: an encrypted SNS topic that pages a human, and the dead-letter queue where
undeliverable events land (nothing is lost silently)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class Escalation(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, emails: list[str]) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Escalation topic encryption")
        self.topic = sns.Topic(
            self, "Topic", display_name="Impairment recovery escalations", master_key=self.key, enforce_ssl=True
        )
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
