"""The region probe in the templates: only a standby region's stack, for the workloads it stands
by for, has the probe function, its schedule and its probes (in the functions' runtime
configuration and in the template's metadata); the primary's and a single-region stack have none."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import validate
from tests.conftest import cdk_context
from tests.infra.cfn import as_list, cfn_lint_errors, functions_by_handler, get_att, of_type, policy_statements

PRIMARY, STANDBY = "us-east-1", "us-west-2"
HANDLER = "detectors.region_probe.handler"
MEMBER = "111122223333"
STANDBY_TG = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/web-api-standby/0123456789abcdef"


def standby_config() -> dict[str, Any]:
    """cdk.json's configuration in two regions, web-api (us-east-1) standing by in us-west-2."""
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["regions"] = {"primary": PRIMARY, "standby": [STANDBY]}
    web_api = next(w for w in raw["workloads"] if w["name"] == "web-api")
    web_api["standby"] = {
        "region": STANDBY,
        "auto_scaling_group": "web-api-standby",
        "desired_capacity": 3,
        "target_group_arn": STANDBY_TG,
    }
    # and a member account's workload, probed in its account through the member role
    raw["accounts"] = {
        "organization_id": "o-a1b2c3d4e5",
        "central_account_id": "123456789012",
        "members": [{"account_id": MEMBER, "name": "shop"}],
    }
    raw["workloads"].append(
        {
            "name": "billing",
            "account_id": MEMBER,
            "auto_scaling_group": "billing-asg",
            "standby": {"region": STANDBY, "auto_scaling_group": "billing-standby", "desired_capacity": 1},
            # the records the shipped region failover plan moves (a standby without them is refused)
            "dns": {
                "hosted_zone_id": "Z0EXAMPLE0BILLING",
                "record_name": "billing.example.com",
                "primary_set_identifier": "billing-primary",
                "secondary_set_identifier": "billing-standby",
            },
        }
    )
    return raw


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both regions' stacks, synthesized once by app.py's own builder."""
    import aws_cdk as cdk

    import app as cdk_app

    config = validate(standby_config())
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.probe")), context=cdk_context())
    stacks = cdk_app.build(app, config)
    assembly = app.synth()
    out: dict[str, Any] = {"config": config}
    for stack in stacks:
        path = Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path)
        out[stack.region] = {"stack": stack, "path": path, "template": json.loads(path.read_text())}
    return out


def runtime_config_of(stack: Any) -> dict[str, Any]:
    """The recovery-config.json in the code asset every function of the stack shares."""
    code = stack.node.find_child("Functions").code
    return json.loads((Path(code.path) / "recovery-config.json").read_text())


def role_actions(resources: dict[str, Any], function_id: str) -> dict[str, list[Any]]:
    """Every action the function's role holds, with the statements' resources and conditions."""
    role = get_att(resources[function_id]["Properties"]["Role"])
    held: dict[str, list[Any]] = {}
    for logical_id, resource_type, statement in policy_statements(resources):
        if resource_type != "AWS::IAM::Policy":
            continue
        if {"Ref": role} not in resources[logical_id]["Properties"].get("Roles", []):
            continue
        for action in as_list(statement["Action"]):
            held.setdefault(action, []).append((statement["Resource"], statement.get("Condition")))
    return held


def test_the_standby_stack_probes_the_workloads_it_stands_by_for(deployment):
    standby = deployment[STANDBY]
    resources = standby["template"]["Resources"]
    function_id = functions_by_handler(resources)[HANDLER]

    # Its schedule: every minute, to the probe function
    schedules = [
        r["Properties"]
        for r in of_type(resources, "AWS::Events::Rule").values()
        if r["Properties"].get("ScheduleExpression") == "rate(1 minute)"
        and any(get_att(t["Arn"]) == function_id for t in r["Properties"].get("Targets", []))
    ]
    assert len(schedules) == 1
    assert schedules[0]["State"] == "ENABLED"

    # Its probes, in the functions' runtime configuration and in the template's metadata
    expected = [p.model_dump(mode="json") for p in deployment["config"].region_probes(STANDBY)]
    assert [(p["workload"], p["account_id"]) for p in expected] == [("web-api", None), ("billing", MEMBER)]
    assert runtime_config_of(standby["stack"])["probes"] == expected
    declared = standby["template"]["Metadata"]["ImpairmentRecovery"]["probes"]
    assert [p["workload"] for p in declared] == ["web-api", "billing"]
    assert "null" not in json.dumps(declared)  # unset values are left out
    assert declared[0]["region"] == PRIMARY
    assert declared[0]["standby"] == {
        "region": STANDBY,
        "auto_scaling_group": "web-api-standby",
        "desired_capacity": 3,
        "target_group_arn": STANDBY_TG,
    }
    # what the emulator does with it: the same runtime configuration
    from core import runtime_config

    assert runtime_config.build([], {}, {}, probes=declared).probes == deployment["config"].region_probes(STANDBY)


def test_the_probe_function_holds_exactly_what_it_needs(deployment):
    resources = deployment[STANDBY]["template"]["Resources"]
    function_id = functions_by_handler(resources)[HANDLER]
    held = role_actions(resources, function_id)

    # Describe only, on any group (describe calls support no resource-level permissions)
    assert held["autoscaling:DescribeAutoScalingGroups"] == [("*", None)]
    assert not [
        a
        for a in held
        if a.startswith(("autoscaling:", "ec2:", "elasticloadbalancing:"))
        and a != ("autoscaling:DescribeAutoScalingGroups")
    ]
    # Its region's replica of the recovery table, nothing else
    for action in ("dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:DeleteItem"):
        for resource, _ in held[action]:
            text = json.dumps(resource)
            assert f"arn:aws:dynamodb:{STANDBY}:" in text and "ImpairmentRecovery-recovery" in text
    # Detection events on the local bus only
    ((bus, condition),) = held["events:PutEvents"]
    assert condition == {"StringEquals": {"events:source": "recovery.detection"}}
    assert "Fn::GetAtt" in json.dumps(bus)
    # The member role, to probe a member's workload in its account
    ((role, _),) = held["sts:AssumeRole"]
    assert role == f"arn:aws:iam::{MEMBER}:role/ImpairmentRecoveryMember"
    # and a timeout that holds parallel probes of an impaired region (8 s each at most)
    assert resources[function_id]["Properties"]["Timeout"] == 60


def test_the_probe_role_is_admitted_on_its_region_s_bus_with_the_other_detectors(deployment):
    from tests.infra.test_bus_policy import DETECTOR_HANDLERS, assert_only_detectors_put_events

    # The standby region's bus admits its detectors, the probe among them; the primary's, its own
    assert_only_detectors_put_events(deployment[STANDBY]["template"]["Resources"], [*DETECTOR_HANDLERS, HANDLER])
    assert_only_detectors_put_events(deployment[PRIMARY]["template"]["Resources"], DETECTOR_HANDLERS)


@pytest.mark.parametrize("region", [PRIMARY, STANDBY])
def test_the_probe_function_is_watched_like_the_other_detectors(deployment, region):
    resources = deployment[region]["template"]["Resources"]
    function_id = functions_by_handler(resources).get(HANDLER)
    watched = [
        a
        for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if function_id and any(d.get("Value") == {"Ref": function_id} for d in a["Properties"].get("Dimensions", []))
    ]
    assert bool(watched) == (region == STANDBY)


@pytest.mark.parametrize("region", [PRIMARY, STANDBY])
def test_every_function_of_either_region_calls_sts_in_its_own_region(deployment, region):
    # The standby's probe and actions assume member roles while the primary region (here
    # us-east-1, where the global STS endpoint is) may be down: never through the global endpoint.
    functions = of_type(deployment[region]["template"]["Resources"], "AWS::Lambda::Function")
    assert HANDLER in {f["Properties"]["Handler"] for f in functions.values()} or region == PRIMARY
    for function_id, function in functions.items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables.get("AWS_STS_REGIONAL_ENDPOINTS") == "regional", function_id


def _custom_metric_alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alarms on the functions' own metrics (ImpairmentRecovery namespace), by metric name."""
    found = {}
    for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        for query in props.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace") == "ImpairmentRecovery":
                found[metric["MetricName"]] = props
    return found


@pytest.mark.parametrize("region", [PRIMARY, STANDBY])
def test_refusals_and_the_probes_other_errors_each_have_their_own_alarm(deployment, region):
    # The function succeeds while its probes are refused or cannot be settled: only these metrics tell
    resources = deployment[region]["template"]["Resources"]
    alarms = _custom_metric_alarms(resources)
    if region == PRIMARY:
        assert not {"RegionProbeRefused", "RegionProbeErrors"} & set(alarms)
        return
    refused, errors = alarms["RegionProbeRefused"], alarms["RegionProbeErrors"]
    assert refused["AlarmName"] == f"ImpairmentRecovery-{STANDBY}-recovery-system-region-probe-refused"
    assert errors["AlarmName"] == f"ImpairmentRecovery-{STANDBY}-recovery-system-region-probe-incomplete"
    (topic,) = of_type(resources, "AWS::SNS::Topic")
    for alarm in (refused, errors):
        assert alarm["Threshold"] == 1 and alarm["AlarmActions"] == [{"Ref": topic}], alarm["AlarmName"]
        assert "What to do:" in alarm["AlarmDescription"]
    # each says what it counts, in the words of the probe's logs
    assert "refused (AccessDenied" in refused["AlarmDescription"]
    assert "'region probe refused'" in refused["AlarmDescription"]
    for cause in ("not in its region", "recorded or published", "does not validate"):
        assert cause in errors["AlarmDescription"], cause
    assert "refused" not in errors["AlarmDescription"]


def test_the_primary_stack_has_no_probe(deployment):
    primary = deployment[PRIMARY]
    assert HANDLER not in functions_by_handler(primary["template"]["Resources"])
    assert "probes" not in primary["template"]["Metadata"]["ImpairmentRecovery"]
    assert runtime_config_of(primary["stack"])["probes"] == []


def test_a_single_region_stack_has_no_probe(synthesized):
    assert HANDLER not in functions_by_handler(synthesized.resources)
    assert "probes" not in synthesized.template_json["Metadata"]["ImpairmentRecovery"]
    assert runtime_config_of(synthesized.stack)["probes"] == []


def test_the_standby_stack_still_depends_on_nothing_in_the_primary_region(deployment):
    # The probed region is named in the runtime configuration and the metadata, not in a resource.
    template = deployment[STANDBY]["template"]
    text = json.dumps({k: template.get(k) for k in ("Resources", "Outputs", "Conditions", "Parameters")})
    assert f":{PRIMARY}:" not in text
    assert "Fn::ImportValue" not in text


def test_cfn_lint_and_cdk_nag_stay_clean(deployment):
    from aws_cdk.assertions import Annotations, Match

    errors = cfn_lint_errors(deployment[PRIMARY]["path"], deployment[STANDBY]["path"])
    assert not errors, "cfn-lint errors:\n" + "\n".join(errors)
    for region in (PRIMARY, STANDBY):
        found = Annotations.from_stack(deployment[region]["stack"]).find_error(
            "*", Match.string_like_regexp("AwsSolutions-.*")
        )
        assert found == [], "\n".join(f"{e.id}: {e.entry.data}" for e in found)
