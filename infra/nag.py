"""cdk-nag AwsSolutions, with every suppression explained."""

from __future__ import annotations

from aws_cdk import Aspects, Stack
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions

SUPPRESSIONS = [
    NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason=(
            "Describe/List calls of Auto Scaling, ELB and EC2, and RDS DescribeEvents, support no "
            "resource-level permissions; mutating Auto Scaling calls are scoped by the managed-tag condition "
            "instead of ARNs because the protected groups are the user's, found at run time; "
            "ListTagsForResource is limited to this account's alarms, DB instances and clusters, and ECS "
            "services (the detectors read whether they opted in); X-Ray and log delivery need '*'; the notifier's "
            "OpsItems are created at run time (opsitem/*) and DescribeOpsItems has no resource-level permissions; a "
            "secret named rather than given by ARN ends with a suffix Secrets Manager chose (-??????)."
        ),
    ),
    NagPackSuppression(
        id="AwsSolutions-SQS3",
        reason="This queue is the dead-letter queue itself.",
    ),
    NagPackSuppression(
        id="AwsSolutions-L1",
        reason="The runtime is pinned to the one the dependency layer is built for (infra/layer.py).",
    ),
]


def apply_nag(stack: Stack) -> None:
    NagSuppressions.add_stack_suppressions(stack, SUPPRESSIONS, apply_to_nested_stacks=True)
    Aspects.of(stack).add(AwsSolutionsChecks(verbose=True))
