"""The central account's side of multi-account recovery (built only when accounts.members is
configured): its default event bus accepts events from the organisation's accounts only, and the
functions that read or act in a member account may assume the member role there."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import Accounts, Workload
from infra.constructs.detection import Detection
from infra.constructs.workflow import RecoveryWorkflow

MEMBER_ROLE_NAME_ENV = "MEMBER_ROLE_NAME"
MEMBER_ACCOUNTS_ENV = "MEMBER_ACCOUNTS"


def in_central_account(workload: Workload, accounts: Accounts | None) -> bool:
    """Whether a workload runs in the central account (its alarms are then in the central stack)."""
    return workload.account_id is None or accounts is None or workload.account_id == accounts.central_account_id


def member_environment(accounts: Accounts | None) -> dict[str, str]:
    """What every function reads to act in member accounts (core/aws.py, detectors/common.py)."""
    import json

    if accounts is None:
        return {}
    return {MEMBER_ROLE_NAME_ENV: accounts.role_name, MEMBER_ACCOUNTS_ENV: json.dumps(accounts.member_ids)}


class CentralAccounts(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        accounts: Accounts,
        detection: Detection,
        workflow: RecoveryWorkflow,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # Member accounts forward their signals to this account's default bus: only accounts of the
        # organisation may put events there. (The recovery bus admits the detectors' roles only:
        # infra/constructs/bus.py.)
        self.bus_policy = events.CfnEventBusPolicy(
            self,
            "OrganizationMayPutEvents",
            event_bus_name="default",
            statement_id="ImpairmentRecoveryOrganizationMembers",
            statement={
                "Sid": "ImpairmentRecoveryOrganizationMembers",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "events:PutEvents",
                "Resource": f"arn:{stack.partition}:events:{stack.region}:{stack.account}:event-bus/default",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": accounts.organization_id}},
            },
        )
        member_roles = [
            f"arn:{stack.partition}:iam::{member.account_id}:role/{accounts.role_name}" for member in accounts.members
        ]
        # Who reads or acts in a member account: every detector (tags, groups, services; the region
        # probe describes a member workload's group in its region), the actions, and the tasks that
        # look at the workload (guardrails, verification, capacity return).
        readers = [
            function
            for name, function in sorted(workflow.functions.items())
            if name in {"Verify", "CheckGuardrails", "ReturnCapacity"} or name.endswith(("Apply", "Rollback"))
        ]
        self.assumers = [*(d.function for d in detection.built), *readers]
        for function in self.assumers:
            function.add_to_role_policy(iam.PolicyStatement(actions=["sts:AssumeRole"], resources=member_roles))
