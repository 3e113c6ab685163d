"""The recovery table: audit trail of impairments, recoveries and actions, and the locks.

In a multi-region deployment (config `regions`) it is a DynamoDB global table: the primary
region's stack creates it with a replica in each standby region, and each standby stack uses its
own region's replica, found by name (no reference to the primary region's stack at run time).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

INDEX_NAME = "gsi1"


def _pitr() -> dynamodb.PointInTimeRecoverySpecification:
    return dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)


class RecoveryTable(Construct):
    """The table this stack owns; with `replica_regions`, a global table replicated there.

    `table_name` is left to CloudFormation unless given: a table with replicas is given one, so
    that the standby stacks can find their replica by it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        table_name: str | None = None,
        replica_regions: Sequence[str] = (),
        key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.table: dynamodb.ITableV2 = dynamodb.TableV2(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            # The AWS managed KMS key (aws/dynamodb) in each region: the table-level SSESpecification of the
            # global table applies to every replica (a customer managed key would need one per region).
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=_pitr(),
            # Locks expire on their own: a crashed recovery never blocks a resource forever.
            time_to_live_attribute="expiration",
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=INDEX_NAME,
                    partition_key=dynamodb.Attribute(name="gsi1pk", type=dynamodb.AttributeType.STRING),
                    sort_key=dynamodb.Attribute(name="gsi1sk", type=dynamodb.AttributeType.STRING),
                )
            ],
            # Each replica restates point-in-time recovery and deletion protection, so that neither
            # depends on an inherited default.
            replicas=[
                dynamodb.ReplicaTableProps(
                    region=region, point_in_time_recovery_specification=_pitr(), deletion_protection=True
                )
                for region in replica_regions
            ],
        )

        if key is not None:
            self._encrypt_with(key)

    def _encrypt_with(self, key: kms.IKey) -> None:
        """The stack's customer managed key (encryption.customer_managed_key; a single-region table).
        Set on the template: CDK renders a replica's key only where the stack's region is decided.
        The key policy admits the table's users through DynamoDB (infra/encryption.py)."""
        table = self.table.node.default_child
        table.add_property_override("SSESpecification", {"SSEEnabled": True, "SSEType": "KMS"})  # type: ignore[union-attr]
        table.add_property_override("Replicas.0.SSESpecification", {"KMSMasterKeyId": key.key_arn})  # type: ignore[union-attr]

    @staticmethod
    def replica(scope: Construct, construct_id: str, *, table_name: str) -> dynamodb.ITableV2:
        """The replica of the global table in `scope`'s region, by name: its ARN is this region's,
        so grants name the local replica and nothing in the primary region (static stability)."""
        stack = Stack.of(scope)
        return dynamodb.TableV2.from_table_attributes(
            scope,
            construct_id,
            table_arn=stack.format_arn(service="dynamodb", resource="table", resource_name=table_name),
            global_indexes=[INDEX_NAME],
        )
