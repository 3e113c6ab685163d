"""The recovery bus: where detection and recovery meet, with an archive to replay from and the
impairment contract registered in a schema registry.

"Impairment Detected" starts a recovery, so only the detectors' roles may put events on it: the
bus's policy is one explicit Deny of events:PutEvents to every other principal (within one
account an Allow would not stop an identity policy's own Allow). Archive replays, member
accounts' forwarded signals and deployed drills do not use PutEvents on this bus, so it leaves
them alone.

Design: docs/safety.md#least-privilege-and-encryption
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_eventschemas as schemas
from aws_cdk import aws_iam as iam
from constructs import Construct

from core.contract import json_schema
from infra.constants import EVENT_SOURCE, SCHEMA_NAME, SCHEMA_REGISTRY

ONLY_DETECTORS_SID = "OnlyDetectorsPutEvents"


def grant_put_detections(bus: events.IEventBus, grantee: iam.IGrantable) -> None:
    """events:PutEvents on the recovery bus, for events of the detection source only (IAM's
    events:source condition): a detector cannot put anything else on it. The bus's policy
    (RecoveryBus.admit_only) must name the grantee's role too, or it is denied."""
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

    def admit_only(self, roles: Sequence[iam.IRole]) -> None:
        """The bus's resource policy: events:PutEvents denied to every principal but `roles`.

        Set as the bus's own Policy (AWS::Events::EventBus), the whole policy in one place: the
        separate AWS::Events::EventBusPolicy resource (what EventBus.add_to_resource_policy makes)
        passes through a deprecated CDK property, with a warning at every synth."""
        if not roles:
            raise ValueError("the recovery bus must admit at least one detector role")
        bus = self.bus.node.default_child
        assert isinstance(bus, events.CfnEventBus)
        # The bus's ARN from its name (decided at synthesis), not its Fn::GetAtt: the bus cannot
        # refer to its own attribute.
        arn = Stack.of(self).format_arn(service="events", resource="event-bus", resource_name=bus.name)
        statement = iam.PolicyStatement(
            sid=ONLY_DETECTORS_SID,
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["events:PutEvents"],
            resources=[arn],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [role.role_arn for role in roles]}},
        )
        bus.policy = iam.PolicyDocument(statements=[statement]).to_json()
