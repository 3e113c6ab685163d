"""The scheduled sweep in member accounts under moto: it sweeps this account and every member
through the member role (moto's sts.assume_role gives credentials in the role's account), a member
whose role cannot be assumed is skipped, and without members it sweeps this account only."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from core import aws
from core.contract import ImpairmentDetected, ImpairmentType
from detectors import sweeps
from tests.builders import BUS_NAME, REGION, build_workload, capture_bus, in_account, received, scheduled_event

CENTRAL = "123456789012"  # moto's default account: the function's own
MEMBER = "111122223333"
DENIED = "444455556666"  # a member whose role cannot be assumed
ROLE = "ImpairmentRecoveryMember"


@pytest.fixture
def bus(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return capture_bus(BUS_NAME)


@pytest.fixture
def members(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the stack gives the sweep when member accounts are configured."""
    monkeypatch.setenv("MEMBER_ROLE_NAME", ROLE)
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{MEMBER}", "{DENIED}"]')


def mark_unhealthy(instance_id: str) -> None:
    boto3.client("autoscaling", region_name=REGION).set_instance_health(
        InstanceId=instance_id, HealthStatus="Unhealthy"
    )


def assumed_roles() -> list[str]:
    """Records the roles the function asks STS for, and refuses DENIED's role with AccessDenied as
    STS does when the role's trust policy does not allow the caller."""
    asked: list[str] = []

    def before_assume_role(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        role_arn = params["body"]["RoleArn"]
        asked.append(role_arn)
        if f":{DENIED}:" not in role_arn:
            return None  # on to moto
        from botocore.awsrequest import AWSResponse

        error = {
            "Code": "AccessDenied",
            "Message": f"User: arn:aws:sts::{CENTRAL}:assumed-role/sweep is not authorized to perform: "
            f"sts:AssumeRole on resource: {role_arn}",
        }
        response = AWSResponse(url="https://sts.amazonaws.com/", status_code=403, headers={}, raw=None)
        return response, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}

    aws.client("sts").meta.events.register("before-call.sts.AssumeRole", before_assume_role)
    return asked


def impairments(queue_url: str) -> list[ImpairmentDetected]:
    return [ImpairmentDetected.model_validate(e["detail"]) for e in received(queue_url)]


def test_an_unhealthy_instance_in_a_members_group_is_an_instance_failure_of_that_account(
    bus, members, lambda_context, monkeypatch
):
    # Given a protected group in the member account with one Unhealthy instance
    with in_account(MEMBER, monkeypatch):
        workload = build_workload()
        sick = workload.instance_ids()[1]
        mark_unhealthy(sick)
    asked = assumed_roles()

    # When the sweep runs in the central account
    response = sweeps.handler(scheduled_event(), lambda_context)

    # Then one instance failure names the member account, found through its role
    (impairment,) = impairments(bus)
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.account_id == MEMBER
    assert [r.resource_id for r in impairment.affected_resources] == [sick]
    assert impairment.scope["auto_scaling_group"] == workload.group_name
    assert f":{MEMBER}:" in impairment.signal.id  # the group's ARN in the member account
    assert f"arn:aws:iam::{MEMBER}:role/{ROLE}" in asked
    assert response["status"] == "published"
    assert response["detected"] == [impairment.impairment_id]


def test_same_named_groups_in_the_central_account_and_a_member_are_two_impairments(
    bus, members, lambda_context, monkeypatch
):
    # Given the same workload (same group name) in the central account and in the member, each
    # with its first instance Unhealthy
    central = build_workload()
    central_sick = central.instance_ids()[0]
    mark_unhealthy(central_sick)
    with in_account(MEMBER, monkeypatch):
        member = build_workload()
        member_sick = member.instance_ids()[0]
        mark_unhealthy(member_sick)
    assert central.group_name == member.group_name
    assumed_roles()

    sweeps.handler(scheduled_event(), lambda_context)

    # Then each account's group is an impairment of its own, under ids that differ
    found = {i.account_id: i for i in impairments(bus)}
    assert sorted(found, key=str) == sorted([None, MEMBER], key=str)
    assert found[None].impairment_id != found[MEMBER].impairment_id
    assert [r.resource_id for r in found[None].affected_resources] == [central_sick]
    assert [r.resource_id for r in found[MEMBER].affected_resources] == [member_sick]


def test_a_member_whose_role_cannot_be_assumed_is_skipped_and_the_others_are_swept(
    bus, members, lambda_context, monkeypatch
):
    # Given unhealthy groups in the central account, in the member and in the member whose role is denied
    central = build_workload()
    mark_unhealthy(central.instance_ids()[0])
    for account in (MEMBER, DENIED):
        with in_account(account, monkeypatch):
            workload = build_workload(f"shop-{account}")
            mark_unhealthy(workload.instance_ids()[0])
    asked = assumed_roles()

    response = sweeps.handler(scheduled_event(), lambda_context)

    # Then the denied member was asked for, said and skipped; the central account and the other member were swept
    assert f"arn:aws:iam::{DENIED}:role/{ROLE}" in asked
    (failure,) = response["accounts_failed"]
    assert failure["account"] == DENIED
    assert "sts:AssumeRole failed: AccessDenied" in failure["error"]
    assert response["accounts"] == 2
    assert sorted((i.account_id or "") for i in impairments(bus)) == ["", MEMBER]


def test_when_no_account_can_be_swept_the_invocation_fails_loudly(bus, lambda_context, monkeypatch):
    # Given the only member is the one whose role is denied, and the central account's own
    # look-up is refused too
    monkeypatch.setenv("MEMBER_ROLE_NAME", ROLE)
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{DENIED}"]')
    assumed_roles()

    def deny(**_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        response = AWSResponse(url="https://autoscaling.amazonaws.com/", status_code=403, headers={}, raw=None)
        return response, {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {}}

    aws.client("autoscaling").meta.events.register("before-call.auto-scaling.DescribeAutoScalingGroups", deny)

    with pytest.raises(sweeps.SweepFailed, match=f"central: .*AccessDenied.*; {DENIED}: sts:AssumeRole failed"):
        sweeps.handler(scheduled_event(), lambda_context)
    assert received(bus) == []


def test_without_members_only_the_own_account_is_swept(bus, lambda_context, monkeypatch):
    # Given unhealthy groups in the central account and in another account, and no member configured
    central = build_workload()
    mark_unhealthy(central.instance_ids()[0])
    with in_account(MEMBER, monkeypatch):
        elsewhere = build_workload("elsewhere")
        mark_unhealthy(elsewhere.instance_ids()[0])
    asked = assumed_roles()

    response = sweeps.handler(scheduled_event(), lambda_context)

    # Then only the central account's group is an impairment, and no role was assumed
    (impairment,) = impairments(bus)
    assert impairment.account_id is None
    assert impairment.scope["auto_scaling_group"] == central.group_name
    assert (response["accounts"], response["accounts_failed"]) == (1, [])
    assert asked == []
    assert aws._credentials == {}
