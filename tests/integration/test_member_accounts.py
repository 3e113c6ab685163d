"""Multi-account under moto: the central account's functions act in a member account through the
member role (moto's sts.assume_role gives credentials of the role's account), and a signal from an
account outside the configuration is refused."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from actions import scale_out
from core import aws
from core.contract import ImpairmentDetected
from core.errors import PermanentError
from detectors import ec2_state
from orchestration import verify
from tests.builders import BUS_NAME, REGION, action_event, build_workload, capture_bus, in_account, received
from tests.conftest import load_event

CENTRAL = "123456789012"  # moto's default account: the functions' own
MEMBER = "111122223333"
STRANGER = "999988887777"
ROLE = "ImpairmentRecoveryMember"


@pytest.fixture
def members(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the stack gives every function when member accounts are configured."""
    monkeypatch.setenv("MEMBER_ROLE_NAME", ROLE)
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{MEMBER}"]')


def in_member_account(monkeypatch: pytest.MonkeyPatch):
    """Run the set-up as the member account (the workload is built there, not in the central one)."""
    return in_account(MEMBER, monkeypatch)


def groups(client) -> list[str]:
    return [g["AutoScalingGroupName"] for g in client.describe_auto_scaling_groups()["AutoScalingGroups"]]


def test_a_member_accounts_client_sees_that_account_and_the_own_client_does_not(members, monkeypatch):
    # Given a group in the member account
    with in_member_account(monkeypatch):
        workload = build_workload()

    # Then the member client finds it through the assumed role, and the central one does not
    assert groups(aws.client("autoscaling", account=MEMBER)) == [workload.group_name]
    assert groups(aws.client("autoscaling")) == []
    # the central account's own id is no member: its own credentials
    assert aws.client("autoscaling", account=CENTRAL) is aws.client("autoscaling")


def test_the_assumed_credentials_are_kept_until_shortly_before_they_expire(members):
    # Given a member client
    aws.client("ec2", account=MEMBER)
    first = aws._credentials[MEMBER]

    # When another service's client is made: the same credentials (no second AssumeRole)
    aws.client("autoscaling", account=MEMBER)
    assert aws._credentials[MEMBER] is first

    # When they are within the refresh margin of their expiry: assumed again, and clients remade
    aws._credentials[MEMBER] = {**first, "Expiration": datetime.now(UTC) + timedelta(minutes=4)}
    before = aws.client("ec2", account=MEMBER)
    renewed = aws._credentials[MEMBER]
    assert renewed["Expiration"] > datetime.now(UTC) + timedelta(minutes=10)
    assert aws.client("ec2", account=MEMBER) is before  # reused while they are fresh


def _sts_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The STS operations called from now on (a hook on every client made after)."""
    called: list[str] = []
    session = boto3._get_default_session()
    session.events.register("before-call.sts.*", lambda model, **_: called.append(model.name), unique_id="sts-count")
    aws.reset()  # clients made before lack the hook, and nothing is known yet
    return called


def test_an_entry_point_learns_its_account_from_its_arn_and_only_assumes_the_member_role(
    members, lambda_context, monkeypatch
):
    # Given a cold environment whose invocation context names the function's ARN
    called = _sts_calls(monkeypatch)
    try:
        aws.know_identity(lambda_context.invoked_function_arn)

        # When a member client is made, and again: one AssumeRole, and no GetCallerIdentity
        aws.client("autoscaling", account=MEMBER)
        aws.client("ec2", account=MEMBER)
        assert called == ["AssumeRole"]
        assert aws.own_account() == CENTRAL
        assert aws.member_role_arn(MEMBER) == f"arn:aws:iam::{MEMBER}:role/{ROLE}"
    finally:
        boto3._get_default_session().events.unregister("before-call.sts.*", unique_id="sts-count")


def test_a_context_without_a_lambda_arn_falls_back_to_get_caller_identity(members, monkeypatch):
    # Given a stand-in context whose ARN is not a Lambda function's
    called = _sts_calls(monkeypatch)
    try:
        for odd in (None, "not-an-arn", "arn:aws:lambda:us-east-1:notanaccount:function:f"):
            aws.know_identity(odd)
        # Then the account is asked of STS, once
        assert aws.own_account() == CENTRAL
        assert aws.own_account() == CENTRAL
        assert called == ["GetCallerIdentity"]
    finally:
        boto3._get_default_session().events.unregister("before-call.sts.*", unique_id="sts-count")


def test_an_account_that_is_not_a_member_is_refused(members, monkeypatch):
    with pytest.raises(PermanentError, match=f"account {STRANGER} is not a member account"):
        aws.client("autoscaling", account=STRANGER)
    monkeypatch.delenv("MEMBER_ROLE_NAME")
    with pytest.raises(PermanentError, match="no member accounts are configured"):
        aws.client("autoscaling", account=MEMBER)


def test_an_action_on_a_member_workload_changes_the_member_account_only(members, store, lambda_context, monkeypatch):
    # Given a managed group of 3 in the member account, and a same-named one in the central account
    with in_member_account(monkeypatch):
        workload = build_workload(desired=3, max_size=6)
    impairment = workload.impairment_of().model_copy(update={"account_id": MEMBER})

    # When scale_out is applied for the member's impairment
    result = scale_out.apply_handler(action_event(impairment, "scale_out", params={"increment": 2}), lambda_context)

    # Then the member's group grew, through the assumed role; nothing was made in the central account
    assert result["result"] == "changed"
    member_group = aws.client("autoscaling", account=MEMBER).describe_auto_scaling_groups(
        AutoScalingGroupNames=[workload.group_name]
    )["AutoScalingGroups"][0]
    assert member_group["DesiredCapacity"] == 5
    assert groups(aws.client("autoscaling")) == []
    # and verification looks there too
    checks = verify.check(impairment, [{"index": 0, "action": "scale_out"}])
    assert checks, "verification checked the member's group"


def _state_change(instance_id: str, account: str) -> dict:
    event = copy.deepcopy(load_event("ec2-instance-state-change-stopped.json"))
    event["account"] = account
    event["detail"]["instance-id"] = instance_id
    event["resources"] = [f"arn:aws:ec2:{REGION}:{account}:instance/{instance_id}"]
    return event


def test_a_member_accounts_signal_becomes_an_impairment_in_that_account(members, lambda_context, monkeypatch):
    # Given a protected group in the member account, one of whose instances stopped
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    bus = capture_bus(BUS_NAME)
    with in_member_account(monkeypatch):
        workload = build_workload()
        stopped = workload.instance_ids()[0]
        boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[stopped])

    # When the member's event reaches the central detector
    response = ec2_state.handler(_state_change(stopped, MEMBER), lambda_context)

    # Then the impairment names the member account (resolved there, through the role)
    assert response["status"] == "published"
    (event,) = received(bus)
    impairment = ImpairmentDetected.model_validate(event["detail"])
    assert impairment.account_id == MEMBER
    assert impairment.scope["auto_scaling_group"] == workload.group_name


def test_a_signal_from_an_unknown_account_is_refused_and_changes_nothing(members, lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    bus = capture_bus(BUS_NAME)
    workload = build_workload()  # a protected group in the central account, with the same instance ids
    stopped = workload.instance_ids()[0]

    response = ec2_state.handler(_state_change(stopped, STRANGER), lambda_context)

    assert response == {"status": "refused", "reason": f"account {STRANGER} is not a member account"}
    assert received(bus) == []
    assert aws._credentials == {}  # no role was even assumed


def test_the_central_accounts_own_signal_stays_unmarked(members, lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    bus = capture_bus(BUS_NAME)
    workload = build_workload()
    stopped = workload.instance_ids()[0]
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[stopped])

    assert ec2_state.handler(_state_change(stopped, CENTRAL), lambda_context)["status"] == "published"

    (event,) = received(bus)
    assert ImpairmentDetected.model_validate(event["detail"]).account_id is None
