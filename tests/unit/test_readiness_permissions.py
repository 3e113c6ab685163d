"""The readiness check's two AWS-judged checks, as pure decisions and through a fake world: what
a step's role must be allowed (IAM's simulation judged), and whether its ARC cluster answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actions.failover_routing_control import NoAnswer
from actions.registry import ACTIONS
from core.errors import PermanentError, TransientError
from core.plans import Plan
from core.runtime_config import ReadinessTarget
from readiness import checks, permissions
from readiness.evaluate import evaluate
from tests.unit.test_readiness_checks import FakeWorld, group

MEMBER = "444455556666"
PANEL = "arn:aws:route53-recovery-control::123456789012:controlpanel/abd5fbfc052d4844a082dbf400f61da8"
PRIMARY, STANDBY = f"{PANEL}/routingcontrol/d5d90e587870494b", f"{PANEL}/routingcontrol/8a1c3e5b7d9f0a2c"
ENDPOINTS = [
    {"Endpoint": "https://c1.route53-recovery-cluster.us-east-1.amazonaws.com/v1", "Region": "us-east-1"},
    {"Endpoint": "https://c2.route53-recovery-cluster.us-west-2.amazonaws.com/v1", "Region": "us-west-2"},
]
ROUTING = {
    "kind": "routing_control",
    "primary_routing_control_arn": PRIMARY,
    "standby_routing_control_arn": STANDBY,
    "cluster_endpoints": ENDPOINTS,
}
GROUP_ARN = "arn:aws:autoscaling:us-east-1:444455556666:autoScalingGroup:0b1c:autoScalingGroupName/web-asg"


def plan(name: str, steps: list[dict[str, Any]], workloads: list[str] | None = None) -> Plan:
    return Plan.model_validate(
        {"name": name, "match": {"impairment_types": ["instance_failure"], "workloads": workloads}, "steps": steps}
    )


def run(world: FakeWorld, plans: list[Plan], targets: list[ReadinessTarget]) -> dict[str, dict[str, Any]]:
    results = evaluate(world, plans, targets, set(), datetime(2026, 1, 1, tzinfo=UTC), ("team:recover", "yes"))
    return {r["plan"]: r for r in results}


def failing(result: dict[str, Any]) -> list[str]:
    return [f"{c['name']}: {c['evidence']}" for w in result["workloads"] for c in w["checks"] if not c["ok"]]


# --- what is simulated ---------------------------------------------------------------------------


def test_each_action_is_judged_on_the_steps_resources_of_its_service_else_star():
    wanted = permissions.required(
        ACTIONS["scale_out"], {}, {"autoscaling": [GROUP_ARN]}, ("aws", "us-east-1", "123456789012")
    )
    assert wanted == {
        "autoscaling:DescribeAutoScalingGroups": [GROUP_ARN],
        "autoscaling:DescribeAutoScalingInstances": [GROUP_ARN],
        "autoscaling:SetDesiredCapacity": [GROUP_ARN],
    }
    # route53-recovery-cluster is authorized on route53-recovery-control's ARNs: the step's controls
    routing = permissions.required(
        ACTIONS["failover_routing_control"],
        ROUTING,
        {"route53-recovery-control": [PRIMARY, STANDBY]},
        ("aws", "us-east-1", "123456789012"),
    )
    assert routing["route53-recovery-cluster:UpdateRoutingControlStates"] == [PRIMARY, STANDBY]


def test_declared_grant_arns_are_placed_in_the_roles_partition_region_and_account():
    wanted = permissions.required(ACTIONS["restart_systemd_unit"], {}, {}, ("aws-us-gov", "us-gov-west-1", MEMBER))
    assert wanted["ssm:SendCommand"] == [
        "arn:aws-us-gov:ssm:us-gov-west-1::document/AWS-RunShellScript",
        f"arn:aws-us-gov:ec2:us-gov-west-1:{MEMBER}:instance/*",
    ]
    assert wanted["ec2:DescribeInstances"] == ["*"]


def test_the_context_carries_the_managed_tag_under_every_tag_condition_key_the_action_uses():
    entries = permissions.context(ACTIONS["restart_systemd_unit"], {}, ("team:recover", "yes"))
    assert entries == [
        {"ContextKeyName": "aws:ResourceTag/team:recover", "ContextKeyValues": ["yes"], "ContextKeyType": "string"},
        {"ContextKeyName": "ssm:resourceTag/team:recover", "ContextKeyValues": ["yes"], "ContextKeyType": "string"},
    ]


def test_a_decision_other_than_allowed_names_the_action_resource_and_decision():
    wanted = {"autoscaling:SetDesiredCapacity": [GROUP_ARN], "autoscaling:DescribeAutoScalingGroups": ["*"]}
    results = [
        {
            "EvalActionName": "autoscaling:SetDesiredCapacity",
            "EvalResourceName": "arn:${Partition}:autoscaling:${Region}:${Account}:autoScalingGroup:*",
            "EvalDecision": "implicitDeny",
            "ResourceSpecificResults": [{"EvalResourceName": GROUP_ARN, "EvalResourceDecision": "implicitDeny"}],
        },
        {"EvalActionName": "autoscaling:DescribeAutoScalingGroups", "EvalResourceName": "*", "EvalDecision": "allowed"},
    ]
    ok, evidence = permissions.judged("arn:aws:iam::1:role/Stack-ScaleOutApplyRole", wanted, results)
    assert not ok
    assert evidence == f"role Stack-ScaleOutApplyRole: autoscaling:SetDesiredCapacity on {GROUP_ARN}: implicitDeny"


def test_results_of_one_evaluation_per_resource_are_judged_too_and_a_missing_action_is_not_allowed():
    # IAM used to answer one EvaluationResult per (action, resource), with the resource's ARN
    wanted = {"ec2:StopInstances": ["*", "arn:aws:ec2:us-east-1:1:instance/i-1"], "ec2:StartInstances": ["*"]}
    results = [
        {"EvalActionName": "ec2:StopInstances", "EvalResourceName": "*", "EvalDecision": "allowed"},
        {
            "EvalActionName": "ec2:StopInstances",
            "EvalResourceName": "arn:aws:ec2:us-east-1:1:instance/i-1",
            "EvalDecision": "explicitDeny",
        },
    ]
    ok, evidence = permissions.judged("arn:aws:iam::1:role/r", wanted, results)
    assert not ok
    assert "ec2:StopInstances on arn:aws:ec2:us-east-1:1:instance/i-1: explicitDeny" in evidence
    assert "ec2:StartInstances on *: not simulated" in evidence


# --- through evaluate ----------------------------------------------------------------------------


def test_a_member_role_lacking_one_action_makes_only_its_plan_not_ready_naming_the_action():
    # Given a member workload whose role may not SetDesiredCapacity on its group, and one here
    world = FakeWorld(
        {"web-asg": {**group(1, 2, 6), "AutoScalingGroupARN": GROUP_ARN}, "here-asg": group(1, 2, 6)},
        decisions={("autoscaling:SetDesiredCapacity", GROUP_ARN): "implicitDeny"},
    )
    targets = [
        ReadinessTarget(workload="member", account_id=MEMBER, auto_scaling_group="web-asg"),
        ReadinessTarget(workload="here", auto_scaling_group="here-asg"),
    ]
    results = run(
        world,
        [plan("member", [{"action": "scale_out"}], ["member"]), plan("here", [{"action": "scale_out"}], ["here"])],
        targets,
    )
    # Then only the member's plan is not ready, and it names the action, resource and decision
    assert not results["member"]["ready"] and results["here"]["ready"]
    assert failing(results["member"]) == [
        f"permissions: scale_out: role scale_out-role: autoscaling:SetDesiredCapacity on {GROUP_ARN}: implicitDeny"
    ]
    # the member's role was simulated with the managed tag in the context
    role, actions, resources, context = world.simulations[0]
    assert "autoscaling:SetDesiredCapacity" in actions
    assert role == f"arn:aws:iam::{MEMBER}:role/scale_out-role" and resources == [GROUP_ARN]
    assert context[0]["ContextKeyName"] == "aws:ResourceTag/team:recover"


def test_a_throttled_simulation_is_unknown_and_the_plan_not_ready():
    world = FakeWorld(
        {"web-asg": group(1, 2, 6)},
        decisions=TransientError("iam:SimulatePrincipalPolicy failed: Throttling: Rate exceeded", code="Throttling"),
    )
    results = run(
        world, [plan("p", [{"action": "scale_out"}])], [ReadinessTarget(workload="w", auto_scaling_group="web-asg")]
    )
    (check,) = [c for c in results["p"]["workloads"][0]["checks"] if c["name"] == "permissions"]
    assert check["unknown"] is True and not check["ok"]
    assert check["evidence"].startswith("unknown: could not read: iam:SimulatePrincipalPolicy failed: Throttling")
    assert not results["p"]["ready"]


def test_a_check_that_cannot_run_here_is_said_not_checked_and_is_no_check_at_all():
    # Given no simulation available (as in the local emulator)
    results = run(
        FakeWorld({"web-asg": group(1, 2, 6)}),
        [plan("p", [{"action": "scale_out"}])],
        [ReadinessTarget(workload="w", auto_scaling_group="web-asg")],
    )
    (workload,) = results["p"]["workloads"]
    assert workload["not_checked"] == ["permissions: not simulated in this test"]
    assert [c["name"] for c in workload["checks"]] == ["scale_out headroom"]


# --- cluster endpoints ---------------------------------------------------------------------------


def routing_plan() -> list[Plan]:
    return [plan("arc", [{"action": "failover", "params": ROUTING}])]


def test_one_endpoint_answering_is_enough_and_each_endpoints_result_is_listed():
    world = FakeWorld({})
    cause = TransientError("route53-recovery-cluster:GetRoutingControlState failed: Could not connect")
    unreachable = NoAnswer("us-east-1 (https://c1...): unreachable")
    unreachable.__cause__ = cause
    world.endpoints = {ENDPOINTS[0]["Endpoint"]: unreachable, ENDPOINTS[1]["Endpoint"]: "On"}
    results = run(world, routing_plan(), [ReadinessTarget(workload="w")])
    (endpoints,) = [c for c in results["arc"]["workloads"][0]["checks"] if c["name"] == "cluster endpoints"]
    assert endpoints["ok"]
    assert endpoints["evidence"] == (
        f"1 of 2 answered: us-east-1 {ENDPOINTS[0]['Endpoint']}: no answer ({cause}); "
        f"us-west-2 {ENDPOINTS[1]['Endpoint']}: answered (primary On, standby On)"
    )
    assert results["arc"]["ready"]


def test_no_endpoint_answering_is_not_ready():
    world = FakeWorld({})
    world.endpoints = {e["Endpoint"]: NoAnswer("refused") for e in ENDPOINTS}
    results = run(world, routing_plan(), [ReadinessTarget(workload="w")])
    assert failing(results["arc"])[0].startswith("cluster endpoints: 0 of 2 answered")


def test_a_refusal_proves_the_endpoint_reachable_but_fails_the_access_check():
    world = FakeWorld({})
    denied = PermanentError("route53-recovery-cluster:GetRoutingControlState failed: AccessDeniedException: no")
    world.endpoints = {ENDPOINTS[0]["Endpoint"]: denied, ENDPOINTS[1]["Endpoint"]: NoAnswer("refused")}
    results = run(world, routing_plan(), [ReadinessTarget(workload="w")])
    by_name = {c["name"]: c for c in results["arc"]["workloads"][0]["checks"]}
    assert by_name["cluster endpoints"]["ok"]
    assert not by_name["routing control access"]["ok"]
    assert "AccessDeniedException" in by_name["routing control access"]["evidence"]
    assert not results["arc"]["ready"]


def test_the_endpoint_checks_alone_decide():
    assert checks.endpoint_checks([("a", "answered", "")])[0].ok
    assert not checks.endpoint_checks([("a", "no answer", "x"), ("b", "no answer", "y")])[0].ok


def test_the_routing_controls_a_step_names_are_judged_and_the_safety_rules_it_overrides_are_not():
    rule = f"{PANEL}/safetyrule/3f9c2b7e1a4d6e8f"
    world = FakeWorld({}, decisions={})
    world.endpoints = {e["Endpoint"]: "On" for e in ENDPOINTS}
    step = {"action": "failover", "params": {**ROUTING, "safety_rules_to_override": [rule]}}
    results = run(world, [plan("arc", [step])], [ReadinessTarget(workload="w")])
    assert results["arc"]["ready"]
    (_, actions, resources, _) = world.simulations[0]
    assert actions == [
        "route53-recovery-cluster:GetRoutingControlState",
        "route53-recovery-cluster:UpdateRoutingControlStates",
    ]
    assert resources == sorted([PRIMARY, STANDBY])
