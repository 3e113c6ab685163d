"""Escalations: an encrypted SNS topic that pages a human, and the dead-letter queue where
undeliverable events land (nothing is lost silently).

A topic without a subscriber drops every message published to it, so a stack whose configuration
subscribes no one says so loudly at every synth (a warning on this construct, in `cdk synth`'s
output; `require_escalation_subscriber` makes it an error). Subscriptions made outside the stack
(the console, a PagerDuty HTTPS endpoint) are invisible here: `recoveryctl status --deployed`
counts the topic's confirmed subscriptions."""

from __future__ import annotations

from aws_cdk import Annotations, Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import NO_SUBSCRIBER

NO_SUBSCRIBER_WARNING = "impairment-recovery:no-escalation-subscriber"


class Escalation(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        emails: list[str],
        key: kms.IKey | None = None,
        subscribed: bool = False,
    ) -> None:
        """`key`: the stack's customer managed key (encryption.customer_managed_key); else the topic has its own.
        `subscribed`: PagerDuty or a chat channel receives the pages (infra/constructs/paging.py)."""
        super().__init__(scope, construct_id)
        self.key = key or kms.Key(self, "Key", enable_key_rotation=True, description="Escalation topic encryption")
        self.topic = sns.Topic(
            self, "Topic", display_name="Impairment recovery escalations", master_key=self.key, enforce_ssl=True
        )
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        if not emails and not subscribed:
            Annotations.of(self).add_warning_v2(
                NO_SUBSCRIBER_WARNING,
                f"PAGES GO NOWHERE: {NO_SUBSCRIBER}. Set escalation_emails (and confirm each subscription), or "
                "subscribe the topic yourself and check with `recoveryctl status --deployed`; "
                "require_escalation_subscriber: true turns this warning into an error.",
            )
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
