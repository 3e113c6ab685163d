"""The recovery bus: where detection and recovery meet, with an archive to replay from and the
impairment contract registered in a schema registry."""

from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_eventschemas as schemas
from aws_cdk import aws_iam as iam
from constructs import Construct

from core.contract import json_schema
from infra.constants import EVENT_SOURCE, SCHEMA_NAME, SCHEMA_REGISTRY


def grant_put_detections(bus: events.IEventBus, grantee: iam.IGrantable) -> None:
    """events:PutEvents on the recovery bus, for events of the detection source only (IAM's
    events:source condition): a detector cannot put anything else on it. With no resource policy
    on the bus, only principals of this account that hold this grant can put events there."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["events:PutEvents"],
            resources=[bus.event_bus_arn],
            conditions={"StringEquals": {"events:source": EVENT_SOURCE}},
        )
    )


class RecoveryBus(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, archive_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus", description="Impairment events between detection and recovery")
        self.bus.archive(
            "Archive",
            description="Every impairment event, for replay and audit",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE]),
            retention=Duration.days(archive_retention_days),
        )
        registry = schemas.CfnRegistry(
            self, "Registry", registry_name=SCHEMA_REGISTRY, description="Impairment recovery event contracts"
        )
        schema = schemas.CfnSchema(
            self,
            "ImpairmentSchema",
            registry_name=SCHEMA_REGISTRY,
            schema_name=SCHEMA_NAME,
            type="JSONSchemaDraft4",
            content=json.dumps(json_schema()),
            description="Impairment Detected / Impairment Cleared",
        )
        schema.node.add_dependency(registry)
