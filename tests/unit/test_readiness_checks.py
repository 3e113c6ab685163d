"""The readiness decisions, each a pure function of what AWS answered and the step's params."""

from __future__ import annotations

from typing import Any

from core.errors import PermanentError
from core.plans import Plan
from core.runtime_config import ReadinessDns, ReadinessTarget
from readiness import checks
from readiness.evaluate import evaluate


def group(minimum: int, desired: int, maximum: int) -> dict[str, Any]:
    return {"MinSize": minimum, "DesiredCapacity": desired, "MaxSize": maximum}


def test_scale_out_without_headroom_says_max_equals_desired():
    check = checks.headroom(group(1, 3, 3), "web-asg", 1)
    assert not check.ok
    assert check.evidence == "web-asg: no headroom: MaxSize 3 = desired 3"


def test_scale_out_with_less_room_than_its_increment_is_not_ready():
    check = checks.headroom(group(1, 3, 4), "web-asg", 2)
    assert not check.ok
    assert "room for 1 < increment 2" in check.evidence


def test_scale_out_with_room_is_ready_and_its_own_ceiling_counts():
    assert checks.headroom(group(1, 3, 6), "web-asg", 2).ok
    limited = checks.headroom(group(1, 3, 6), "web-asg", 1, ceiling=3)
    assert not limited.ok
    assert "max_desired_capacity 3" in limited.evidence


def test_replace_instance_needs_room_to_surge_only_at_its_minimum():
    assert not checks.surge_room(group(2, 2, 2), "g").ok
    assert checks.surge_room(group(2, 3, 3), "g").ok  # above its minimum: in place keeps the minimum
    assert checks.surge_room(group(2, 2, 3), "g").ok
    assert not checks.surge_room(None, "g").ok


def test_warm_pool_depth():
    assert not checks.warm_pool_depth(False, [], "g", 1).ok
    assert not checks.warm_pool_depth(True, ["i-1"], "g", 2).ok
    assert checks.warm_pool_depth(True, ["i-1", "i-2"], "g", 2).ok


def test_standby_group_must_exist_and_reach_its_desired_capacity():
    assert not checks.standby_capacity(None, "s", 2).ok
    assert not checks.standby_capacity(group(0, 0, 1), "s", 2).ok
    assert checks.standby_capacity(group(0, 0, 4), "s", 2).ok


def test_dns_records_match_names_case_and_trailing_dot_insensitively():
    records = [
        {"Name": "App.Example.com.", "Type": "A", "SetIdentifier": "primary"},
        {"Name": "app.example.com.", "Type": "AAAA", "SetIdentifier": "secondary"},
    ]
    check = checks.dns_records(records, "app.example.com", "A", ("primary", "secondary"))
    assert not check.ok
    assert "no record secondary" in check.evidence


class FakeWorld:
    """Groups as given; no IAM simulation (the permissions checks are not checked) unless
    `decisions` ({(IAM action, resource): decision}, anything else allowed) says what IAM answers."""

    def __init__(
        self,
        groups: dict[str, dict[str, Any]],
        denied: set[str] = frozenset(),
        decisions: dict[tuple[str, str], str] | None = None,
    ) -> None:
        self.groups, self.denied, self.reads = groups, denied, []
        self.decisions, self.simulations = decisions, []
        self.endpoints: dict[str, Any] = {}  # endpoint URL -> a state, or the exception it raises

    def assume(self, account: str) -> None:
        if account in self.denied:
            raise PermanentError("AccessDenied on sts:AssumeRole", code="AccessDenied")

    def group(self, account: str | None, name: str) -> dict[str, Any] | None:
        self.reads.append(name)
        return self.groups.get(name)

    def warm_pool(self, account, name):
        raise PermanentError("throttled out", code="Throttling")

    def record_sets(self, account, zone, name, record_type):
        return []

    def health_check_exists(self, account, health_check_id):
        return False

    def region(self) -> str:
        return "us-east-1"

    def simulation_role(self, account, action):
        if self.decisions is None:
            raise checks.NotChecked("not simulated in this test")
        return f"arn:aws:iam::{account or '123456789012'}:role/{action}-role"

    def simulate(self, account, role, actions, resources, context):
        self.simulations.append((role, actions, resources, context))
        if isinstance(self.decisions, Exception):
            raise self.decisions
        return [
            {
                "EvalActionName": action,
                "EvalResourceName": "*",
                "EvalDecision": "allowed",
                "ResourceSpecificResults": [
                    {"EvalResourceName": r, "EvalResourceDecision": self.decisions.get((action, r), "allowed")}
                    for r in resources
                ],
            }
            for action in actions
        ]

    def routing_control_state(self, account, endpoint, arn):
        found = self.endpoints[endpoint.endpoint]
        if isinstance(found, Exception):
            raise found
        return found


def plan(name: str, steps: list[dict[str, Any]], workloads: list[str] | None = None) -> Plan:
    return Plan.model_validate(
        {"name": name, "match": {"impairment_types": ["instance_failure"], "workloads": workloads}, "steps": steps}
    )


def test_a_read_that_fails_fails_its_check_with_the_error_and_aliases_resolve():
    # Given a plan whose step is the alias provision_backup (kind warm_pool) and a warm pool that cannot be read
    world = FakeWorld({"web-asg": group(1, 1, 3)})
    target = ReadinessTarget(workload="web", auto_scaling_group="web-asg")
    (result,) = evaluate(world, [plan("p", [{"action": "provision_backup"}])], [target], set(), _now())
    (checked,) = result["workloads"]
    assert not result["ready"]
    assert checked["checks"] == [{"name": "warm pool depth", "ok": False, "evidence": "could not read: throttled out"}]


def test_disabled_plans_are_not_checked_and_unchecked_steps_are_said():
    world = FakeWorld({"web-asg": group(1, 1, 3)})
    target = ReadinessTarget(workload="web", auto_scaling_group="web-asg")
    plans = [
        plan("off", [{"action": "scale_out"}]),
        plan("on", [{"action": "restart_service", "params": {"kind": "ecs"}}]),
    ]
    (result,) = evaluate(world, plans, [target], {"off"}, _now())
    assert result["plan"] == "on"
    assert result["ready"]
    assert result["workloads"][0]["unchecked_steps"] == ["restart_ecs_service"]


def test_a_member_whose_role_is_refused_makes_its_plan_not_ready_and_others_are_still_checked():
    world = FakeWorld({"web-asg": group(1, 1, 3)}, denied={"444455556666"})
    targets = [
        ReadinessTarget(workload="denied", account_id="444455556666", auto_scaling_group="web-asg"),
        ReadinessTarget(workload="web", auto_scaling_group="web-asg"),
    ]
    results = evaluate(
        world,
        [plan("a", [{"action": "scale_out"}], ["denied"]), plan("b", [{"action": "scale_out"}], ["web"])],
        targets,
        set(),
        _now(),
    )
    by_plan = {r["plan"]: r for r in results}
    assert not by_plan["a"]["ready"]
    (role,) = by_plan["a"]["workloads"][0]["checks"]
    assert role["name"] == "member role" and "AccessDenied" in role["evidence"]
    assert by_plan["b"]["ready"]


def test_failover_dns_without_records_is_not_ready():
    target = ReadinessTarget(
        workload="web",
        dns=ReadinessDns(
            hosted_zone_id="Z1",
            record_name="app.example.com",
            record_type="A",
            primary_set_identifier="primary",
            secondary_set_identifier="secondary",
            health_check_ids=("hc-1",),
        ),
    )
    (result,) = evaluate(
        FakeWorld({}), [plan("dns", [{"action": "failover", "params": {"kind": "dns"}}])], [target], set(), _now()
    )
    names = {c["name"]: c["ok"] for c in result["workloads"][0]["checks"]}
    assert names == {"dns records": False, "health checks": False}


def _now():
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)


def test_a_plan_for_every_workload_skips_those_without_what_its_step_acts_on_but_a_named_one_fails():
    # Given an ECS-only workload (no group): a plan matching every workload cannot scale it out
    # (never its plan for that), while a plan naming it would fail to
    target = ReadinessTarget(workload="svc")
    (everyone,) = evaluate(FakeWorld({}), [plan("all", [{"action": "scale_out"}])], [target], set(), _now())
    (named,) = evaluate(FakeWorld({}), [plan("svc", [{"action": "scale_out"}], ["svc"])], [target], set(), _now())
    assert everyone["ready"] and everyone["workloads"][0]["unchecked_steps"] == ["scale_out"]
    assert not named["ready"]


def test_a_step_that_does_not_run_for_a_standby_is_not_judged_for_it():
    # Given the regional failover's standby group step (it runs only when the region impairment's
    # scope names a standby group) and two standbys: one with only an ECS service, one with a
    # group whose MaxSize leaves no room for its desired capacity
    step = {
        "action": "provision_backup",
        "params": {"kind": "standby_group"},
        "when_scope_has": "standby_auto_scaling_group",
    }
    world = FakeWorld({"web-standby": group(0, 0, 1)})
    ecs_only = ReadinessTarget(workload="shop", scope_keys=("standby_ecs_service", "standby_region"))
    with_group = ReadinessTarget(
        workload="web",
        standby_group="web-standby",
        standby_desired_capacity=2,
        scope_keys=("standby_auto_scaling_group", "standby_region"),
    )

    (result,) = evaluate(world, [plan("regional", [step])], [ecs_only, with_group], set(), _now())

    # Then the ECS-only standby is not judged by the group's step (ready, nothing read for it), and
    # the group's standby is, and fails
    by_workload = {w["workload"]: w for w in result["workloads"]}
    assert by_workload["shop"]["ready"] and by_workload["shop"]["checks"] == []
    assert not by_workload["web"]["ready"]
    assert world.reads == ["web-standby"]


def test_a_plan_for_impairments_with_a_scope_key_is_judged_only_for_workloads_that_may_have_it():
    # Given the EKS node plan (it matches only impairments naming a node group) and two workloads,
    # one declaring a node group
    eks_plan = Plan.model_validate(
        {
            "name": "eks",
            "match": {"impairment_types": ["instance_failure"], "scope_has": "eks_nodegroup"},
            "steps": [{"action": "scale_out"}],
        }
    )
    world = FakeWorld({"web-asg": group(1, 1, 3), "k8s-asg": group(1, 1, 3)})
    plain = ReadinessTarget(workload="web", auto_scaling_group="web-asg", scope_keys=("auto_scaling_group",))
    eks = ReadinessTarget(
        workload="k8s", auto_scaling_group="k8s-asg", scope_keys=("auto_scaling_group", "eks_nodegroup")
    )

    (result,) = evaluate(world, [eks_plan], [plain, eks], set(), _now())

    # Then only the EKS workload is judged (the plan never acts on the other)
    assert [w["workload"] for w in result["workloads"]] == ["k8s"]
