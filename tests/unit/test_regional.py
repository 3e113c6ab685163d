"""recoveryctl/regional.py: the deployment a scenario drills (cdk.json with its changes), and the
stacks of a synthesized cloud assembly."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from recoveryctl import regional
from tests.conftest import CDK_JSON

STANDBY = {"region": "us-west-2", "auto_scaling_group": "web-api-standby-asg", "desired_capacity": 2}


def test_the_changes_replace_regions_and_accounts_and_update_workloads_by_name():
    changes = {
        "regions": {"primary": "us-east-1", "standby": ["us-west-2"]},
        "accounts": {"organization_id": "o-a1b2c3d4e5", "central_account_id": "123456789012", "members": []},
        "workloads": {"web-api": {"standby": STANDBY}},
    }

    config = regional.configuration(changes, CDK_JSON)

    shipped = json.loads(CDK_JSON.read_text())["context"]["recovery"]
    assert config["regions"] == changes["regions"]
    assert config["accounts"] == changes["accounts"]
    web_api = next(w for w in config["workloads"] if w["name"] == "web-api")
    assert web_api["standby"] == STANDBY
    # everything else as cdk.json has it, and cdk.json's own copy untouched
    assert web_api["auto_scaling_group"] == "web-api-asg"
    assert [p["name"] for p in config["plans"]] == [p["name"] for p in shipped["plans"]]
    assert "standby" not in next(w for w in shipped["workloads"] if w["name"] == "web-api")


def test_a_change_to_a_workload_cdk_json_does_not_protect_is_refused():
    with pytest.raises(regional.DeploymentError, match="'nope'"):
        regional.configuration({"workloads": {"nope": {"region": "us-west-2"}}}, CDK_JSON)


def test_a_deployment_that_does_not_validate_fails_before_anything_is_synthesized(tmp_path):
    # A standby in a region that is not configured
    changes = {"workloads": {"web-api": {"standby": STANDBY}}}

    with pytest.raises(regional.DeploymentError, match="standby"):
        regional.synthesize(changes, tmp_path, CDK_JSON)
    assert list(tmp_path.iterdir()) == []


def _assembly(folder: Path, stacks: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    artifacts = {
        name: {"type": "aws:cloudformation:stack", "environment": env, "properties": {"templateFile": f"{name}.json"}}
        for name, env in stacks.items()
    }
    artifacts["Tree"] = {"type": "cdk:tree"}
    (folder / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    return folder


def test_the_stacks_of_an_assembly_by_region_and_the_members_by_account(tmp_path):
    out = _assembly(
        tmp_path / "out",
        {
            "ImpairmentRecovery": "aws://unknown-account/us-east-1",
            "ImpairmentRecovery-us-west-2": "aws://unknown-account/us-west-2",
            "ImpairmentRecovery-Member-shop": "aws://111122223333/us-east-1",
            "ImpairmentRecovery-Member-shop-us-west-2": "aws://111122223333/us-west-2",
        },
    )

    stacks = regional.templates(out)

    assert list(stacks.regions) == ["us-east-1", "us-west-2"]  # the primary first
    assert stacks.regions["us-west-2"] == out / "ImpairmentRecovery-us-west-2.json"
    assert stacks.members == [
        ("111122223333", "us-east-1", out / "ImpairmentRecovery-Member-shop.json"),
        ("111122223333", "us-west-2", out / "ImpairmentRecovery-Member-shop-us-west-2.json"),
    ]


def test_a_region_agnostic_stack_runs_in_the_emulators_default_region(tmp_path):
    out = _assembly(tmp_path / "out", {"ImpairmentRecovery": "aws://unknown-account/unknown-region"})

    assert list(regional.templates(out).regions) == [regional.DEFAULT_REGION]


def test_only_the_newest_syntheses_are_kept(tmp_path):
    folders = []
    for index in range(6):
        folder = tmp_path / f"synth-{index}"
        folder.mkdir()
        os.utime(folder, (time.time() + index, time.time() + index))
        folders.append(folder)

    regional._prune(tmp_path, keep=folders[-1])

    assert sorted(p.name for p in tmp_path.iterdir()) == [f"synth-{i}" for i in range(2, 6)]
