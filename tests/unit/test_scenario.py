"""recoveryctl/scenario.py: what a scenario file may say about the workload's groups and which of
their instances a fault hits (a mistake is refused with the field named, before anything runs)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from recoveryctl import scenario
from recoveryctl.scenario import GroupShape, InstanceFault, Scenario, ScenarioError

SIGNALS = [{"alarm": "{workload}-unhealthy-hosts"}]


def spec(**fields: Any) -> dict[str, Any]:
    return {"name": "two-groups", "signals": SIGNALS, **fields}


def problems(tmp_path, **fields: Any) -> str:
    """The message a user sees for a scenario file with these fields."""
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(spec(**fields)))
    with pytest.raises(ScenarioError) as raised:
        scenario.load(str(path))
    return str(raised.value)


def test_a_second_group_sharing_the_target_group_is_optional_and_shaped_like_the_group():
    assert Scenario.model_validate(spec()).second_group is None

    loaded = Scenario.model_validate(spec(second_group={"min_size": 1, "max_size": 4, "desired": 3}))

    assert loaded.second_group == GroupShape(min_size=1, max_size=4, desired=3)


def test_instance_faults_hit_the_workloads_group_unless_they_say_second():
    loaded = Scenario.model_validate(
        spec(
            second_group={"min_size": 1, "max_size": 4, "desired": 2},
            instance_faults=[
                {"kind": "fail_health_check", "count": 2},
                {"kind": "stop", "index": 1, "group": "second"},
            ],
        )
    )

    assert [f.group for f in loaded.instance_faults] == ["main", "second"]


@pytest.mark.parametrize("group", ["green", "Second", "", 2])
def test_an_unknown_group_of_a_fault_is_refused_naming_the_field(tmp_path, group):
    message = problems(
        tmp_path,
        second_group={"min_size": 1, "max_size": 4, "desired": 2},
        instance_faults=[{"kind": "stop", "group": group}],
    )

    assert "instance_faults.0.group" in message
    assert "'main' or 'second'" in message


def test_a_fault_on_the_second_group_needs_a_second_group(tmp_path):
    message = problems(tmp_path, instance_faults=[{"kind": "stop"}, {"kind": "stop", "group": "second"}])

    assert "instance_faults[1] hits the second group: declare second_group" in message


def test_a_crashed_task_has_no_group_to_choose():
    with pytest.raises(ValueError, match=r"task_crash .* has no group"):
        InstanceFault.model_validate({"kind": "task_crash", "group": "second"})


def test_a_disruption_budget_is_only_for_a_not_ready_eks_node():
    assert InstanceFault.model_validate({"kind": "node_not_ready", "pdb_refusals": -1}).pdb_refusals == -1
    with pytest.raises(ValueError, match="only with kind node_not_ready"):
        InstanceFault.model_validate({"kind": "stop", "pdb_refusals": 1})
    with pytest.raises(ValueError, match="greater than or equal to -1"):
        InstanceFault.model_validate({"kind": "node_not_ready", "pdb_refusals": -2})


@pytest.mark.parametrize(
    ("shape", "wrong"),
    [
        ({"min_size": 3, "max_size": 6, "desired": 2}, "desired (2) must be between min_size (3) and max_size (6)"),
        ({"min_size": 1, "max_size": 2, "desired": 3}, "desired (3) must be between min_size (1) and max_size (2)"),
        ({"min_size": 1, "max_size": 4, "desired": 2, "size": 2}, "second_group.size: Extra inputs are not permitted"),
        ({"min_size": -1, "max_size": 4, "desired": 2}, "second_group.min_size: Input should be greater than or equal"),
        ({"min_size": 1, "max_size": 0, "desired": 0}, "second_group.max_size: Input should be greater than or equal"),
    ],
)
def test_a_second_group_auto_scaling_would_refuse_is_refused_by_the_scenario(tmp_path, shape, wrong):
    message = problems(tmp_path, second_group=shape)

    assert "second_group" in message
    assert wrong in message


def test_the_workloads_group_is_checked_the_same_way(tmp_path):
    message = problems(tmp_path, group={"min_size": 2, "max_size": 6, "desired": 8})

    assert "group: Value error, desired (8) must be between min_size (2) and max_size (6)" in message


def test_the_documented_blue_green_example_validates():
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", docs, flags=re.DOTALL) if '"second_group"' in b]
    example = Scenario.model_validate(json.loads(block))

    assert example.second_group is not None
    assert [f.group for f in example.instance_faults] == ["main", "second"]
    assert example.expect.final_state is not None and example.expect.final_state.second_in_service == 3
