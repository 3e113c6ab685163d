"""Multi-account: the configuration, the member-account stack and the central account's side."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import ConfigError, validate
from tests.conftest import cdk_context
from tests.infra import cfn

ORG = "o-a1b2c3d4e5"
CENTRAL = "123456789012"
MEMBER = "111122223333"


def with_members(**changes: Any) -> dict[str, Any]:
    """cdk.json's configuration with one member account and the checkout workload in it."""
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["accounts"] = {
        "organization_id": ORG,
        "central_account_id": CENTRAL,
        "members": [{"account_id": MEMBER, "name": "shop"}],
    }
    next(w for w in raw["workloads"] if w["name"] == "checkout")["account_id"] = MEMBER
    raw["accounts"].update(changes)
    return raw


def test_members_validate_with_the_default_role_name():
    config = validate(with_members())
    assert config.accounts is not None
    assert config.accounts.role_name == "ImpairmentRecoveryMember"
    assert config.accounts.member_ids == [MEMBER]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"organization_id": "org-1"}, "accounts.organization_id"),
        ({"central_account_id": "12345"}, "accounts.central_account_id"),
        ({"members": [{"account_id": "11112222333x", "name": "shop"}]}, "accounts.members.0.account_id"),
        ({"members": []}, "accounts.members"),
        (
            {"members": [{"account_id": MEMBER, "name": "shop"}, {"account_id": MEMBER, "name": "shop2"}]},
            f"must be unique: {MEMBER}",
        ),
        ({"members": [{"account_id": CENTRAL, "name": "shop"}]}, "cannot also be a member"),
        ({"role_name": "no spaces allowed"}, "accounts.role_name"),
    ],
)
def test_bad_accounts_are_rejected_naming_the_field(changes, expected):
    with pytest.raises(ConfigError) as error:
        validate(with_members(**changes))
    assert expected in str(error.value)


def test_a_workload_in_an_account_that_is_not_a_member_is_rejected():
    raw = with_members()
    raw["workloads"][0]["account_id"] = "444455556666"
    with pytest.raises(ConfigError, match=r"account_id \(workload 'web-api'\): 444455556666 is not a member"):
        validate(raw)
    del raw["accounts"]
    with pytest.raises(ConfigError, match=r"not a member account \(accounts.members: none\)"):
        validate(raw)


def test_a_workload_account_is_twelve_digits():
    raw = with_members()
    raw["workloads"][0]["account_id"] = "1111"
    with pytest.raises(ConfigError, match=r"workloads\.0\.account_id"):
        validate(raw)


def test_the_central_account_may_be_named_on_a_workload():
    raw = with_members()
    raw["workloads"][0]["account_id"] = CENTRAL
    assert validate(raw).workloads[0].account_id == CENTRAL


# --- templates: synthesized once for this module, with one member account configured ---


@pytest.fixture(scope="module")
def member_config():
    return validate(with_members())


@pytest.fixture(scope="module")
def templates(member_config, tmp_path_factory) -> dict[str, dict[str, Any]]:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.member_stack import build_member_stacks
    from infra.stack import RecoveryStack

    context = cdk_context()
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")), context=context)
    central = RecoveryStack(app, member_config.stack_name, config=member_config)
    (member,) = build_member_stacks(app, member_config)
    assert (member.stack_name, member.account) == ("ImpairmentRecovery-Member-shop", MEMBER)
    app.synth()
    return {
        "central": Template.from_stack(central).to_json()["Resources"],
        "member": Template.from_stack(member).to_json()["Resources"],
    }


def _role(resources, name_fragment: str) -> tuple[str, dict[str, Any]]:
    roles = {k: r for k, r in cfn.of_type(resources, "AWS::IAM::Role").items() if name_fragment in k}
    assert len(roles) == 1, sorted(roles)
    return next(iter(roles.items()))


def _granted(statements: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """IAM action -> the statements that allow it."""
    granted: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        if statement["Effect"] == "Allow":
            for action in cfn.as_list(statement["Action"]):
                granted.setdefault(action, []).append(statement)
    return granted


def test_the_member_role_trusts_only_the_central_stacks_roles(templates, member_config):
    _, role = _role(templates["member"], "RecoveryRole")
    assert role["Properties"]["RoleName"] == "ImpairmentRecoveryMember"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    assert CENTRAL in cfn.resolve(trust["Principal"]["AWS"])
    principal_arn = cfn.resolve(trust["Condition"]["ArnLike"]["aws:PrincipalArn"])
    assert principal_arn == f"arn:${{AWS::Partition}}:iam::{CENTRAL}:role/ImpairmentRecovery-*"


def test_the_member_role_holds_what_the_actions_declare_scoped_by_the_managed_tag(templates, member_config):
    from actions.registry import ACTIONS

    role_id, _ = _role(templates["member"], "RecoveryRole")
    granted = _granted(cfn.role_statements(templates["member"], role_id))
    tag = {"StringEquals": {"aws:ResourceTag/recovery:managed": "true"}}
    for spec in ACTIONS.values():
        for action in spec.iam_actions:
            assert action in granted, (spec.name, action)
            mutating = not action.split(":", 1)[1].startswith(("Describe", "List", "Get"))
            if mutating and action not in spec.iam_actions_without_tag_condition:
                # or on the named resources of a declared grant (EKS's eks-* node group groups)
                named = {r for g in _declared_grants() if action in g.actions for r in g.resources}
                assert all(
                    s.get("Condition") == tag or (named and set(_resources(s)) <= named) for s in granted[action]
                ), action
        for grant in spec.iam_grants:
            for action in grant.actions:
                assert action in granted, (spec.name, action)
    # nothing with a wildcard in the action, nothing to do with IAM (but simulating itself, for
    # the readiness check) or the recovery's own data
    own = {"iam:SimulatePrincipalPolicy"}
    assert not [a for a in granted if "*" in a or (a.startswith(("iam:", "dynamodb:", "sts:")) and a not in own)]


def test_the_member_role_may_simulate_its_own_policies_and_no_other_principals(templates):
    role_id, _ = _role(templates["member"], "RecoveryRole")
    (statement,) = _granted(cfn.role_statements(templates["member"], role_id))["iam:SimulatePrincipalPolicy"]
    assert cfn.as_list(statement["Resource"]) == [{"Fn::GetAtt": [role_id, "Arn"]}]


def test_the_member_role_may_make_every_read_the_central_functions_make(templates, member_config):
    from actions.registry import ACTIONS
    from infra.member_stack import member_reads

    central = templates["central"]
    declared = {a for spec in ACTIONS.values() for a in spec.iam_actions} | set(member_reads())
    role_id, _ = _role(templates["member"], "RecoveryRole")
    member_granted = _granted(cfn.role_statements(templates["member"], role_id))
    reads = {
        action
        for _, resource_type, statement in cfn.policy_statements(central)
        if resource_type == "AWS::IAM::Policy"
        for action in cfn.as_list(statement.get("Action", []))
        if action.split(":", 1)[0] in {"autoscaling", "ec2", "elasticloadbalancing", "ecs", "rds", "cloudwatch"}
        and action.split(":", 1)[1].startswith(("Describe", "List", "Get"))
    }
    missing = sorted(a for a in reads if a not in member_granted)
    assert not missing, f"the central functions read these, the member role may not: {missing}"
    assert set(member_reads()) <= declared


def test_the_member_forwards_exactly_the_signals_the_central_detectors_consume(templates):
    def patterns(resources, default_bus_only: bool) -> set[tuple[str, tuple[str, ...]]]:
        found = set()
        for rule in cfn.of_type(resources, "AWS::Events::Rule").values():
            props = rule["Properties"]
            pattern = props.get("EventPattern")
            if not pattern or (default_bus_only and "EventBusName" in props):
                continue
            if pattern["source"] == ["aws.states"]:
                continue  # the stack's own executions ending, not a workload's signal
            if pattern["source"][0].startswith("aws."):
                found.add((pattern["source"][0], tuple(sorted(pattern["detail-type"]))))
        return found

    central = patterns(templates["central"], default_bus_only=True)
    member = patterns(templates["member"], default_bus_only=False)
    assert central, "the central detectors' rules"
    assert member == central
    forward_role_id, _ = _role(templates["member"], "ForwardRole")
    for rule in cfn.of_type(templates["member"], "AWS::Events::Rule").values():
        (target,) = rule["Properties"]["Targets"]
        assert cfn.resolve(target["Arn"]).endswith(f":events:${{AWS::Region}}:{CENTRAL}:event-bus/default")
        assert cfn.get_att(target["RoleArn"]) == forward_role_id
    (put,) = cfn.role_statements(templates["member"], forward_role_id)
    assert put["Action"] == "events:PutEvents"
    assert cfn.resolve(put["Resource"]).endswith(f":{CENTRAL}:event-bus/default")


def test_the_members_workload_alarms_are_in_the_member_stack(templates):
    member_alarms = cfn.of_type(templates["member"], "AWS::CloudWatch::Alarm").values()
    alarms = [r["Properties"].get("AlarmName", "") for r in member_alarms]
    assert alarms, "the checkout workload's alarms"
    assert all("checkout" in cfn.resolve(name) for name in alarms)


def test_a_members_workload_has_no_alarms_in_the_central_stack(templates):
    names = [
        cfn.resolve(r["Properties"].get("AlarmName", ""))
        for r in cfn.of_type(templates["central"], "AWS::CloudWatch::Alarm").values()
    ]
    assert names, "the central workloads' alarms"
    assert not [n for n in names if "checkout" in n]


def test_one_member_stack_per_member_and_region(member_config):
    import aws_cdk as cdk

    from infra.config import validate
    from infra.member_stack import build_member_stacks

    raw = with_members(members=[{"account_id": MEMBER, "name": "shop"}, {"account_id": "444455556666", "name": "data"}])
    raw["regions"] = {"primary": "us-east-1", "standby": ["us-west-2"]}
    stacks = build_member_stacks(cdk.App(), validate(raw))
    assert sorted((s.stack_name, s.account, s.region) for s in stacks) == [
        ("ImpairmentRecovery-Member-data", "444455556666", "us-east-1"),
        ("ImpairmentRecovery-Member-data-us-west-2", "444455556666", "us-west-2"),
        ("ImpairmentRecovery-Member-shop", MEMBER, "us-east-1"),
        ("ImpairmentRecovery-Member-shop-us-west-2", MEMBER, "us-west-2"),
    ]
    assert build_member_stacks(cdk.App(), validate(cdk_context()["recovery"])) == []


def test_the_central_default_bus_accepts_events_from_the_organisation_only(templates):
    _, policy = cfn.only(templates["central"], "AWS::Events::EventBusPolicy")
    props = policy["Properties"]
    assert props["EventBusName"] == "default"
    statement = props["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORG}}
    assert cfn.resolve(statement["Resource"]).endswith(":event-bus/default")
    # while the recovery bus still admits the central detectors only: no member principal
    from tests.infra.test_bus_policy import DETECTOR_HANDLERS, assert_only_detectors_put_events

    assert_only_detectors_put_events(templates["central"], DETECTOR_HANDLERS)


def test_central_functions_that_act_in_members_may_assume_the_member_role_and_know_it(templates):
    central = templates["central"]
    functions = cfn.functions_by_handler(central)
    member_role = f"arn:${{AWS::Partition}}:iam::{MEMBER}:role/ImpairmentRecoveryMember"
    for handler in (
        "actions.replace_instance.apply_handler",
        "actions.failover_dns.rollback_handler",
        "orchestration.verify.handler",
        "orchestration.check_guardrails.handler",
        "detectors.alarm.handler",
        "detectors.sweeps.handler",
    ):
        function = central[functions[handler]]
        env = function["Properties"]["Environment"]["Variables"]
        assert env["MEMBER_ROLE_NAME"] == "ImpairmentRecoveryMember"
        assert env["MEMBER_ACCOUNTS"] == f'["{MEMBER}"]'
        granted = _granted(cfn.role_statements(central, cfn.get_att(function["Properties"]["Role"])))
        assert [cfn.resolve(s["Resource"]) for s in granted["sts:AssumeRole"]] == [member_role], handler
    for handler in ("orchestration.admit.handler", "orchestration.finalize.handler"):
        function = central[functions[handler]]
        granted = _granted(cfn.role_statements(central, cfn.get_att(function["Properties"]["Role"])))
        assert "sts:AssumeRole" not in granted, handler


def test_the_member_role_may_make_every_call_the_sweep_makes_in_a_member(templates):
    # Given the calls the sweep function's role holds for its look-ups (detectors/sweeps.py and
    # the AwsResolver it uses: DescribeAutoScalingGroups, DescribeTargetHealth)
    central = templates["central"]
    sweep = central[cfn.functions_by_handler(central)["detectors.sweeps.handler"]]
    held = _granted(cfn.role_statements(central, cfn.get_att(sweep["Properties"]["Role"])))
    looks = sorted(a for a in held if a.split(":", 1)[0] in {"autoscaling", "ec2", "elasticloadbalancing"})
    assert looks == ["autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth"]

    # Then the member role allows each of them on any resource (they support no resource-level permissions)
    role_id, _ = _role(templates["member"], "RecoveryRole")
    member_granted = _granted(cfn.role_statements(templates["member"], role_id))
    for action in looks:
        assert any(s["Resource"] == "*" and "Condition" not in s for s in member_granted.get(action, [])), action


def test_without_members_nothing_of_this_is_in_the_template(synthesized):
    resources = synthesized.resources
    assert not cfn.of_type(resources, "AWS::Events::EventBusPolicy")
    for function in cfn.of_type(resources, "AWS::Lambda::Function").values():
        assert "MEMBER_ROLE_NAME" not in function["Properties"]["Environment"]["Variables"]
    assert not [
        s
        for _, kind, s in cfn.policy_statements(resources)
        if kind == "AWS::IAM::Policy" and "sts:AssumeRole" in cfn.as_list(s["Action"])
    ]


def _declared_grants():
    from actions.registry import ACTIONS

    return [g for spec in ACTIONS.values() for g in spec.iam_grants if g.tag_condition_key is None]


def _resources(statement):
    found = statement.get("Resource")
    resources = found if isinstance(found, list) else [found]
    return [r["Fn::Sub"] if isinstance(r, dict) and "Fn::Sub" in r else cfn.resolve(r) for r in resources]
