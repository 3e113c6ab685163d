"""Least privilege from declarations: the one place that turns what an action declares into IAM
statements, used for the central stack's functions (constructs/workflow.py) and for the role the
central account assumes in each member account (member_stack.py)."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Fn
from aws_cdk import aws_iam as iam

from actions.base import IamGrant

_READ_PREFIXES = ("Describe", "List", "Get")


def _add(grantee: iam.IGrantable, statement: iam.PolicyStatement) -> None:
    grantee.grant_principal.add_to_principal_policy(statement)


def allow(
    grantee: iam.IGrantable, actions: list[str], managed_tag: tuple[str, str], untagged: list[str] | None = None
) -> None:
    """Grant what an action declares: read calls on any resource (they support no resource-level
    permissions); mutating calls only on resources carrying the managed tag, but for those whose
    service has no tag condition (the action checks the tag itself)."""
    untagged = sorted(set(untagged or []))
    if untagged:
        _add(grantee, iam.PolicyStatement(actions=untagged, resources=["*"]))
    read = sorted(a for a in actions if a.split(":", 1)[1].startswith(_READ_PREFIXES) and a not in untagged)
    write = sorted(a for a in actions if a not in read and a not in untagged)
    if read:
        _add(grantee, iam.PolicyStatement(actions=read, resources=["*"]))
    if write:
        _add(
            grantee,
            iam.PolicyStatement(
                actions=write,
                resources=["*"],
                conditions={"StringEquals": {f"aws:ResourceTag/{managed_tag[0]}": managed_tag[1]}},
            ),
        )


def allow_grants(grantee: iam.IGrantable, grants: Iterable[IamGrant], managed_tag: tuple[str, str]) -> None:
    """Grant an action's IamGrants exactly as declared: their ARNs resolved in the grantee's stack
    (${AWS::AccountId} is that stack's account), tag-conditioned under the service's own key."""
    key, value = managed_tag
    for grant in grants:
        _add(
            grantee,
            iam.PolicyStatement(
                actions=list(grant.actions),
                resources=[Fn.sub(arn) if "${" in arn else arn for arn in grant.resources],
                conditions=(
                    {"StringEquals": {f"{grant.tag_condition_key}/{key}": value}} if grant.tag_condition_key else None
                ),
            ),
        )
