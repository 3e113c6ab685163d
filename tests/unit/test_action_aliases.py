"""The names that were one action with a `kind` each (failover, redirect_traffic, provision_backup,
restart_service) are aliases: a plan naming one runs the kind's own action, its params judged by
a discriminated union of the kinds' parameters."""

from __future__ import annotations

import pytest

from actions.plans import PlanError, parse_plans
from actions.registry import ACTIONS, ALIASES

_CONTROLS = "arn:aws:route53-recovery-control::123456789012:controlpanel/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ROUTING = {
    "primary_routing_control_arn": f"{_CONTROLS}/routingcontrol/a1",
    "standby_routing_control_arn": f"{_CONTROLS}/routingcontrol/b2",
    "cluster_endpoints": [{"Endpoint": "https://host-a.example.com/v1", "Region": "us-east-1"}],
}
# What each kind needs besides its kind (most take everything from the impairment's scope).
REQUIRED = {"routing_control": ROUTING, "systemd": {"unit": "nginx.service"}}


MISSING_KIND = r"steps\.0\.params\.kind \(plan 'p', action failover\): missing: .*dns \(failover_dns\)"


def steps_of(*steps: dict) -> list[tuple[str, dict]]:
    plans = parse_plans([{"name": "p", "match": {"impairment_types": ["instance_failure"]}, "steps": list(steps)}])
    return [(step.action, step.params) for step in plans[0].steps]


@pytest.mark.parametrize(
    ("alias", "kind", "action"),
    [(alias.name, kind, action) for alias in ALIASES.values() for kind, action in alias.kinds.items()],
)
def test_the_alias_runs_each_kind_as_its_own_action(alias, kind, action):
    params = {"kind": kind, **REQUIRED.get(kind, {})}
    assert steps_of({"action": alias, "params": params}) == [(action, REQUIRED.get(kind, {}))]
    assert action in ACTIONS


def test_every_alias_kind_is_a_registered_action_and_no_alias_is_an_action():
    assert {a for alias in ALIASES.values() for a in alias.kinds.values()} <= set(ACTIONS)
    assert not set(ALIASES) & set(ACTIONS)


def test_an_alias_without_a_kind_runs_its_default_kind_or_is_refused():
    assert steps_of({"action": "redirect_traffic"}) == [("redirect_deregister_targets", {})]
    assert steps_of({"action": "provision_backup", "params": {"count": 2}}) == [("provision_warm_pool", {"count": 2})]
    with pytest.raises(PlanError, match=MISSING_KIND):
        steps_of({"action": "failover", "params": {"hosted_zone_id": "Z0EXAMPLE"}})


@pytest.mark.parametrize(
    ("step", "path"),
    [
        ({"action": "failover", "params": {"kind": "dns", "db_cluster_identifier": "ledger"}}, "db_cluster_identifier"),
        ({"action": "failover", "params": {"kind": "database", "record_name": "api.example.com"}}, "record_name"),
        ({"action": "redirect_traffic", "params": {"kind": "zonal_shift", "shift_percent": 50}}, "shift_percent"),
        ({"action": "provision_backup", "params": {"kind": "warm_pool", "desired_capacity": 3}}, "desired_capacity"),
        ({"action": "restart_service", "params": {"kind": "ecs", "unit": "nginx.service"}}, "unit"),
    ],
)
def test_a_field_of_another_kind_is_refused_by_its_path(step, path):
    kind = step["params"]["kind"]
    with pytest.raises(
        PlanError, match=rf"steps\.0\.params\.{path} \(plan 'p', action {step['action']}, kind {kind}\): is not a field"
    ):
        steps_of(step)


def test_a_nested_field_is_refused_by_its_whole_path():
    # Given a routing-control failover whose second endpoint has no Region
    params = {**ROUTING, "kind": "routing_control"}
    params["cluster_endpoints"] = [*ROUTING["cluster_endpoints"], {"Endpoint": "https://host-b.example.com/v1"}]
    with pytest.raises(PlanError, match=r"params\.cluster_endpoints\.1\.region \(.*\): is required"):
        steps_of({"action": "failover", "params": params})


def test_an_unknown_kind_is_refused_naming_the_kinds_there_are():
    kinds = "database, dns, global_database, routing_control"
    with pytest.raises(PlanError, match=rf"params\.kind \(.*\): must be one of {kinds}"):
        steps_of({"action": "failover", "params": {"kind": "cname"}})


def test_a_kinds_own_action_takes_its_kind_but_not_another():
    # The kind's action may be named with its kind (copied from an alias step) but not another's
    assert steps_of({"action": "failover_dns", "params": {"kind": "dns"}}) == [("failover_dns", {"kind": "dns"})]
    with pytest.raises(PlanError, match=r"params\.kind \(plan 'p', action failover_dns\): must be one of 'dns'"):
        steps_of({"action": "failover_dns", "params": {"kind": "database"}})


def test_the_kinds_of_one_plan_resolve_step_by_step():
    assert steps_of(
        {"action": "provision_backup", "params": {"kind": "standby_group"}},
        {"action": "failover", "params": {"kind": "dns"}},
        {"action": "scale_out"},
    ) == [("provision_standby_group", {}), ("failover_dns", {}), ("scale_out", {})]
