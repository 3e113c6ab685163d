"""Recovery plans: validation messages a person can act on, and first-match selection."""

from __future__ import annotations

import json

import pytest

from actions.plans import PlanError, parse_plans
from core.contract import ImpairmentType, Severity
from core.plans import select_plan
from tests.builders import impairment


def plan(name: str, *types: str, steps: list[dict] | None = None, **match: object) -> dict:
    return {
        "name": name,
        "match": {"impairment_types": list(types) or ["instance_failure"], **match},
        "steps": steps if steps is not None else [{"action": "replace_instance"}],
    }


# --- validation -----------------------------------------------------------------------------


def test_valid_plans_parse_from_a_list_or_from_json():
    # Given two plans as a list or as JSON text (a plans file)
    raw = [
        plan("replace-failed-instance", "instance_failure"),
        plan("add-capacity", "resource_exhaustion", steps=[{"action": "scale_out", "params": {"increment": 2}}]),
    ]

    # When they are parsed from either form
    from_list = parse_plans(raw)
    from_json = parse_plans(json.dumps(raw))

    # Then both give the same plans, in declared order, with their parameters
    assert [p.name for p in from_list] == ["replace-failed-instance", "add-capacity"]
    assert from_json == from_list
    assert from_list[1].steps[0].params == {"increment": 2}


def test_an_unknown_action_names_the_plan_the_step_and_the_known_actions():
    # Given a plan whose second step names an action that does not exist
    raw = [plan("p1", steps=[{"action": "scale_out"}, {"action": "reboot_everything"}])]

    # When it is parsed
    with pytest.raises(PlanError) as caught:
        parse_plans(raw)

    # Then the message says which plan, which step, what is wrong and what would be right
    message = str(caught.value)
    assert message.startswith("plans.0.steps.1.action (plan 'p1'): no action is named 'reboot_everything'")
    assert "replace_instance" in message and "scale_out" in message


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"increment": 0}, "increment"),
        ({"increment": "lots"}, "increment"),
        ({"colour": "red"}, "colour"),
        ({"max_desired_capacity": 0}, "max_desired_capacity"),
    ],
)
def test_bad_action_params_name_the_plan_step_action_and_parameter(params, named):
    # Given a scale_out step with a parameter it does not accept
    raw = [plan("grow", steps=[{"action": "replace_instance"}, {"action": "scale_out", "params": params}])]

    # When it is parsed
    with pytest.raises(PlanError) as caught:
        parse_plans(raw)

    # Then the message points at the plan, step 1, the action and the parameter
    message = str(caught.value)
    assert message.startswith(f"plans.0.steps.1.params.{named} (plan 'grow', action scale_out): ")


def test_bad_params_of_replace_instance_are_caught_too():
    raw = [plan("swap", steps=[{"action": "replace_instance", "params": {"mode": "reboot"}}])]

    expected = r"plans.0.steps.0.params.mode \(plan 'swap', action replace_instance\): must be one of"
    with pytest.raises(PlanError, match=expected):
        parse_plans(raw)


def test_the_runtime_configuration_checks_the_shape_and_the_actions_check_the_steps():
    # Given a plan whose step no action takes
    raw = [plan("p1", steps=[{"action": "reboot_everything"}])]

    # Then the plans' shape is valid (what every function reading the configuration checks:
    # core/plans.py), and the actions refuse the step (synthesis, and Admit for its plan)
    from core import plans as core_plans

    assert [p.name for p in core_plans.parse_plans(raw)] == ["p1"]
    with pytest.raises(PlanError, match="no action is named 'reboot_everything'"):
        parse_plans(raw)


def test_duplicate_plan_names_are_refused_and_named():
    raw = [plan("same"), plan("other"), plan("same", "resource_exhaustion")]

    with pytest.raises(PlanError, match=r"^plans.2.name \(plan 'same'\): another plan is already named 'same'"):
        parse_plans(raw)


def test_a_plan_without_a_name_is_identified_by_its_position():
    raw = [plan("first"), {"match": {"impairment_types": ["instance_failure"]}, "steps": [{"action": "scale_out"}]}]

    with pytest.raises(PlanError, match=r"^plans.1.name: is required$"):
        parse_plans(raw)


@pytest.mark.parametrize(
    "broken",
    [
        plan("no-steps", steps=[]),
        plan("bad-type", "meteor_strike"),
        plan("bad-severity", min_severity="catastrophic"),
        {**plan("extra"), "retries": 3},
    ],
    ids=["no-steps", "unknown-impairment-type", "unknown-severity", "unknown-field"],
)
def test_structurally_invalid_plans_are_refused_with_the_plan_name(broken):
    with pytest.raises(PlanError, match=f"^plans.0.[a-z_.0-9]+ \\(plan '{broken['name']}'\\): "):
        parse_plans([broken])


def test_plans_must_be_a_list():
    with pytest.raises(PlanError, match="must be a list"):
        parse_plans(json.dumps({"name": "p"}))


# --- selection ------------------------------------------------------------------------------


def test_the_first_matching_plan_in_declared_order_wins():
    # Given two plans that both cover instance failures
    plans = parse_plans([plan("first", "instance_failure"), plan("second", "instance_failure", "network_issue")])

    # When an instance failure is matched
    chosen = select_plan(plans, impairment(impairment_type=ImpairmentType.INSTANCE_FAILURE))

    # Then the one declared first is used; the other still covers what only it names
    assert chosen is not None and chosen.name == "first"
    reordered = select_plan(list(reversed(plans)), impairment(impairment_type=ImpairmentType.INSTANCE_FAILURE))
    assert reordered is not None and reordered.name == "second"
    network = select_plan(plans, impairment(impairment_type=ImpairmentType.NETWORK_ISSUE))
    assert network is not None and network.name == "second"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.LOW, None),
        (Severity.MEDIUM, "bounded"),
        (Severity.HIGH, "bounded"),
        (Severity.CRITICAL, None),
    ],
)
def test_min_and_max_severity_bound_the_plan_by_rank(severity, expected):
    # Given a plan for medium..high only: critical (most of a fleet impaired) goes to a human.
    # Compared as strings, "critical" < "high" would wrongly fall inside the bounds.
    plans = parse_plans([plan("bounded", min_severity="medium", max_severity="high")])

    # When an impairment of each severity is matched
    chosen = select_plan(plans, impairment(severity=severity))

    # Then only severities inside the bounds are covered
    assert (chosen.name if chosen else None) == expected


def test_a_plan_for_named_workloads_skips_the_others():
    # Given a plan for "orders" only, followed by a catch-all
    plans = parse_plans([plan("orders-only", workloads=["orders"]), plan("everyone")])

    # Then "orders" gets its own plan and "web-api" falls through to the catch-all
    assert select_plan(plans, impairment(workload="orders")).name == "orders-only"  # type: ignore[union-attr]
    assert select_plan(plans, impairment(workload="web-api")).name == "everyone"  # type: ignore[union-attr]


def test_nothing_matches_an_uncovered_impairment_type():
    plans = parse_plans([plan("instances", "instance_failure")])

    assert select_plan(plans, impairment(impairment_type=ImpairmentType.DATABASE_ISSUE)) is None


def test_a_plan_for_a_scope_key_takes_only_impairments_that_carry_it():
    # Given a plan for EKS nodes (scope eks_nodegroup) before the plain instance plan
    plans = parse_plans([plan("nodes", "instance_failure", scope_has="eks_nodegroup"), plan("instances")])

    node = impairment(impairment_type=ImpairmentType.INSTANCE_FAILURE, scope={"eks_nodegroup": "workers"})
    plain = impairment(impairment_type=ImpairmentType.INSTANCE_FAILURE)
    empty = impairment(impairment_type=ImpairmentType.INSTANCE_FAILURE, scope={"eks_nodegroup": ""})

    assert select_plan(plans, node).name == "nodes"  # type: ignore[union-attr]
    assert select_plan(plans, plain).name == "instances"  # type: ignore[union-attr]
    assert select_plan(plans, empty).name == "instances"  # type: ignore[union-attr]


def test_the_shipped_zonal_plan_shifts_an_eks_cluster_only_when_the_impairment_names_one():
    from tests.conftest import cdk_context

    (zonal,) = [p for p in parse_plans(cdk_context()["recovery"]["plans"]) if p.name == "shift-away-from-impaired-zone"]
    eks_steps = [s for s in zonal.steps if s.params.get("resource") == "eks_cluster"]

    assert [s.when_scope_has for s in eks_steps] == ["eks_cluster_arn"]
    assert not eks_steps[0].applies_to({"availability_zone": "us-east-1b"})
    assert eks_steps[0].applies_to({"eks_cluster_arn": "arn:aws:eks:us-east-1:123456789012:cluster/prod"})
