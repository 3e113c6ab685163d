"""Multi-region deployment (config `regions`): one stack per region from one configuration, the
recovery table a global table owned by the primary, each standby region self-sufficient."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, validate
from tests.conftest import cdk_context
from tests.infra.cfn import (
    as_list,
    cfn_lint_errors,
    functions_by_handler,
    of_type,
    only,
    policy_statements,
    state_machine,
)

PRIMARY, STANDBY = "us-east-1", "us-west-2"
Raw = dict[str, Any]


def regional_config() -> Raw:
    """cdk.json's configuration, deployed to two regions, with the checkout workload in the standby one."""
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["regions"] = {"primary": PRIMARY, "standby": [STANDBY]}
    next(w for w in raw["workloads"] if w["name"] == "checkout")["region"] = STANDBY
    return raw


@dataclass(frozen=True)
class Regional:
    stack: Any
    path: Path
    template: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both regions' stacks, synthesized once by app.py's own builder."""
    import aws_cdk as cdk

    import app as cdk_app

    config = validate(regional_config())
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.regions")), context=cdk_context())
    stacks = cdk_app.build(app, config)
    assembly = app.synth()
    regional = {}
    for stack in stacks:
        path = Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path)
        regional[stack.region] = Regional(stack=stack, path=path, template=json.loads(path.read_text()))
    return {"config": config, "assembly": assembly, "stacks": stacks, **regional}


@pytest.fixture(scope="module")
def primary(deployment: dict[str, Any]) -> Regional:
    return deployment[PRIMARY]


@pytest.fixture(scope="module")
def standby(deployment: dict[str, Any]) -> Regional:
    return deployment[STANDBY]


# --- one stack per region ---


def test_one_stack_per_region_named_after_it_and_deployed_after_the_primary(deployment):
    # Given two regions configured, When the app is built
    stacks = deployment["stacks"]
    # Then the primary keeps stack_name, the standby is suffixed with its region
    assert [(s.stack_name, s.region) for s in stacks] == [
        ("ImpairmentRecovery", PRIMARY),
        (f"ImpairmentRecovery-{STANDBY}", STANDBY),
    ]
    # And the standby is deployed once the primary (which creates the global table) is
    assembly = deployment["assembly"]
    standby_needs = {a.id for a in assembly.get_stack_by_name(f"ImpairmentRecovery-{STANDBY}").dependencies}
    primary_needs = {a.id for a in assembly.get_stack_by_name("ImpairmentRecovery").dependencies}
    assert "ImpairmentRecovery" in standby_needs
    assert not any(d.startswith("ImpairmentRecovery-us") for d in primary_needs), primary_needs


def test_without_regions_there_is_one_region_agnostic_stack(tmp_path):
    import aws_cdk as cdk

    import app as cdk_app

    config = validate(copy.deepcopy(cdk_context()["recovery"]))
    stacks = cdk_app.build(cdk.App(outdir=str(tmp_path), context=cdk_context()), config)
    assert [s.stack_name for s in stacks] == ["ImpairmentRecovery"]
    assert cdk.Token.is_unresolved(stacks[0].region)


def test_a_stack_outside_the_configured_regions_is_refused(tmp_path):
    import aws_cdk as cdk

    from infra.stack import RecoveryStack

    config = validate(regional_config())
    app = cdk.App(outdir=str(tmp_path), context=cdk_context())
    with pytest.raises(ConfigError, match=r"one of them \(us-east-1, us-west-2\).*eu-west-1"):
        RecoveryStack(app, "Elsewhere", config=config, env=cdk.Environment(region="eu-west-1"))
    with pytest.raises(ConfigError, match="each stack is deployed to one of them"):
        RecoveryStack(app, "Anywhere", config=config)  # region-agnostic


# --- the replicated state ---


def test_primary_owns_a_global_table_replicated_to_the_standby_region(primary):
    _, table = only(primary.resources, "AWS::DynamoDB::GlobalTable")
    props = table["Properties"]
    # A fixed name, so that the standby stack finds its replica by it
    assert props["TableName"] == "ImpairmentRecovery-recovery"
    replicas = {r["Region"]: r for r in props["Replicas"]}
    assert set(replicas) == {PRIMARY, STANDBY}
    for region, replica in replicas.items():
        assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, region
        assert replica["DeletionProtectionEnabled"] is True, region
        assert [i["IndexName"] for i in replica["GlobalSecondaryIndexes"]] == ["gsi1"], region
    # Encryption at rest with the AWS managed key: the global table's SSESpecification covers every replica
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert table["DeletionPolicy"] == "Retain"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_standby_has_no_table_of_its_own_and_grants_name_its_local_replica(standby):
    assert not [k for k, r in standby.resources.items() if r["Type"].startswith("AWS::DynamoDB::")]
    table_arns: set[str] = set()
    for _, _, statement in policy_statements(standby.resources):
        if any(str(a).startswith("dynamodb:") for a in as_list(statement["Action"])):
            for resource in as_list(statement["Resource"]):
                table_arns.add(json.dumps(resource, sort_keys=True))
    local = "arn:aws:dynamodb:us-west-2:"
    expected = {
        json.dumps({"Fn::Join": ["", [local, {"Ref": "AWS::AccountId"}, suffix]]}, sort_keys=True)
        for suffix in (":table/ImpairmentRecovery-recovery", ":table/ImpairmentRecovery-recovery/index/*")
    }
    assert table_arns == expected
    # every function reads the replica's name
    functions = of_type(standby.resources, "AWS::Lambda::Function")
    names = {f["Properties"]["Environment"]["Variables"].get("TABLE_NAME") for f in functions.values()}
    assert names == {"ImpairmentRecovery-recovery"}


def test_standby_depends_on_nothing_in_the_primary_region(standby):
    # Static stability: no import, no cross-region reference reader, no ARN of the primary's region
    # in what the standby region runs (the configuration's metadata may name other regions' ARNs).
    text = json.dumps({k: standby.template.get(k) for k in ("Resources", "Outputs", "Conditions", "Parameters")})
    assert "Fn::ImportValue" not in text
    assert "CrossRegion" not in text
    assert f":{PRIMARY}:" not in text, "the standby stack names a resource of the primary region"


# --- everything else, in each region ---


@pytest.mark.parametrize("region", [PRIMARY, STANDBY])
def test_each_region_has_its_own_bus_state_machine_detectors_and_topic(deployment, region):
    resources = deployment[region].resources
    only(resources, "AWS::Events::EventBus")
    state_machine(resources)
    state_machine(resources, "RecoveryCleanup")
    only(resources, "AWS::SNS::Topic")
    detectors = [h for h in functions_by_handler(resources) if h.startswith("detectors.")]
    assert len(detectors) >= 5, detectors
    sweeps = [r for r in of_type(resources, "AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]]
    assert sweeps, "the health sweep runs in every region"
    outputs = deployment[region].template["Outputs"]
    assert {"RecoveryBusName", "RecoveryTableName", "RecoveryStateMachineArn", "EscalationTopicArn"} <= set(outputs)


def _alarm_workloads(resources: dict[str, dict[str, Any]]) -> set[str]:
    workloads = set()
    for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values():
        tags = {t["Key"]: t["Value"] for t in alarm["Properties"].get("Tags", [])}
        if "recovery:workload" in tags:
            workloads.add(tags["recovery:workload"])
    return workloads


def _alarm_rule_prefixes(resources: dict[str, dict[str, Any]]) -> list[str]:
    for rule in of_type(resources, "AWS::Events::Rule").values():
        pattern = rule["Properties"].get("EventPattern", {})
        if pattern.get("source") == ["aws.cloudwatch"]:
            return [p["prefix"] for p in pattern["detail"]["alarmName"]]
    return []


def test_workload_alarms_only_in_their_region(primary, standby):
    # checkout says us-west-2; the others default to the primary
    assert _alarm_workloads(primary.resources) == {"web-api", "orders"}  # ledger (Aurora) has no alarm
    assert _alarm_workloads(standby.resources) == {"checkout"}
    assert _alarm_rule_prefixes(primary.resources) == ["ledger-", "orders-", "web-api-"]
    assert _alarm_rule_prefixes(standby.resources) == ["checkout-"]
    # the sweep of a region knows only that region's groups
    for regional, groups in ((primary, {"web-api-asg": "web-api"}), (standby, {})):
        for fn in of_type(regional.resources, "AWS::Lambda::Function").values():
            variables = fn["Properties"].get("Environment", {}).get("Variables", {})
            if "WORKLOAD_GROUPS" in variables:
                assert json.loads(variables["WORKLOAD_GROUPS"]) == groups
    # the template metadata (what the emulator builds) lists the region's workloads
    metadata = standby.template["Metadata"]["ImpairmentRecovery"]["workloads"]
    assert [(w["name"], w["region"]) for w in metadata] == [("checkout", STANDBY)]


# --- the gates ---


def test_cfn_lint_finds_no_errors_in_either_template(primary, standby):
    errors = cfn_lint_errors(primary.path, standby.path)
    assert not errors, "cfn-lint errors:\n" + "\n".join(errors)


@pytest.mark.parametrize("region", [PRIMARY, STANDBY])
def test_cdk_nag_finds_no_unsuppressed_error(deployment, region):
    from aws_cdk.assertions import Annotations, Match

    errors = Annotations.from_stack(deployment[region].stack).find_error(
        "*", Match.string_like_regexp("AwsSolutions-.*")
    )
    assert errors == [], "\n".join(f"{e.id}: {e.entry.data}" for e in errors)


# --- configuration ---


def _regions(raw: Raw, **regions: Any) -> None:
    raw["regions"] = regions


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda r: _regions(r, primary="us-east", standby=["us-west-2"]), "regions.primary"),
        (lambda r: _regions(r, primary="US-EAST-1", standby=["us-west-2"]), "regions.primary"),
        (lambda r: _regions(r, primary="us-east-1", standby=["uswest2"]), "not a region name: 'uswest2'"),
        (lambda r: _regions(r, primary="us-east-1", standby=[]), "regions.standby"),
        (lambda r: _regions(r, primary="us-east-1", standby=["us-east-1"]), "cannot also be a standby region"),
        (
            lambda r: _regions(r, primary="us-east-1", standby=["us-west-2", "eu-west-1", "us-west-2"]),
            "standby regions listed twice: us-west-2",
        ),
        (lambda r: _regions(r, primary="us-east-1", standby=["us-west-2"], tertiary="eu-west-1"), "regions.tertiary"),
        (
            lambda r: r["workloads"][1].update(region="eu-west-1"),
            "workloads.1.region (workload 'checkout'): eu-west-1 is not one of the configured regions",
        ),
    ],
)
def test_bad_regions_are_refused_with_what_to_fix(breakage, expected):
    raw = regional_config()
    breakage(raw)
    with pytest.raises(ConfigError, match="invalid recovery configuration") as caught:
        validate(raw)
    assert expected in str(caught.value)


def test_a_workload_region_needs_regions_configured():
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["workloads"][0]["region"] = "us-east-1"
    with pytest.raises(ConfigError, match="names region us-east-1 but no `regions` are configured"):
        validate(raw)


def test_region_names_of_every_partition_are_accepted():
    raw = regional_config()
    raw["regions"] = {"primary": "us-gov-west-1", "standby": ["us-gov-east-1"]}
    raw["workloads"][1]["region"] = "us-gov-east-1"
    config = validate(raw)
    assert config.regions.all == ["us-gov-west-1", "us-gov-east-1"]
    assert config.stack_name_in("us-gov-east-1") == "ImpairmentRecovery-us-gov-east-1"
    assert [w.name for w in config.workloads_in("us-gov-east-1")] == ["checkout"]
    assert (
        validate(copy.deepcopy(cdk_context()["recovery"])).table_name is None
    )  # single region: CloudFormation names it
