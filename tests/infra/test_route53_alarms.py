"""Route 53 health check alarms exist where their metrics are (us-east-1), for a workload in any
region (issue 17): in the stack itself in us-east-1, in a us-east-1 stack of their own that
forwards their state changes to the workload's region, or, for a stack deployed to any region,
with a template rule that refuses any region but us-east-1."""

from __future__ import annotations

import copy
from typing import Any

from infra.config import validate
from tests.conftest import cdk_context
from tests.infra import cfn
from tests.infra.conftest import CHECKOUT_HEALTH_CHECK
from tests.infra.test_accounts import CENTRAL, MEMBER

WEB_API_CHECK = "5f1d7e0a-1b2c-4d3e-8f90-a1b2c3d4e5f6"  # cdk.json: web-api's dns.health_check_id


def _alarms(resources: cfn.Resources) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["AlarmName"]: r for r in cfn.of_type(resources, "AWS::CloudWatch::Alarm").values()}


def _tags(alarm: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in alarm["Properties"].get("Tags", [])}


# --- a stack deployed to any region ---


def test_a_region_agnostic_stack_holds_the_alarm_and_refuses_any_region_but_us_east_1(synthesized):
    alarm = _alarms(synthesized.resources)[f"web-api-route53-{WEB_API_CHECK}"]
    assert "Condition" not in alarm  # no silent absence: it is there, or the stack is not deployed
    assert _tags(alarm)["recovery:impairment-type"] == "network_issue"
    (assertion,) = synthesized.template_json["Rules"]["Route53MetricsRegion"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
    assert "web-api" in assertion["AssertDescription"] and "`regions`" in assertion["AssertDescription"]
    assert "route53_health_check.enabled" in assertion["AssertDescription"]


# --- regions configured: a us-east-1 stack per account, forwarding to the workload's region ---


def test_the_central_workloads_health_check_alarm_is_in_a_us_east_1_stack_only(everywhere):
    name = f"web-api-route53-{WEB_API_CHECK}"
    alarm = _alarms(everywhere["ImpairmentRecovery-Route53Alarms"])[name]
    assert _tags(alarm)["recovery:workload"] == "web-api"
    assert _tags(alarm)["recovery:managed"] == "true"
    assert set(_alarms(everywhere["ImpairmentRecovery-Route53Alarms"])) == {name}  # health checks only
    assert name not in _alarms(everywhere["ImpairmentRecovery-us-west-2"])
    assert name not in _alarms(everywhere["ImpairmentRecovery"])
    # web-api's other alarms stay in its region's stack
    assert "web-api-unhealthy-hosts" in _alarms(everywhere["ImpairmentRecovery-us-west-2"])


def _forwarding(resources: cfn.Resources) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    (rule,) = cfn.of_type(resources, "AWS::Events::Rule").values()
    (target,) = rule["Properties"]["Targets"]
    role_id = cfn.get_att(target["RoleArn"])
    return rule["Properties"], cfn.resolve(target["Arn"]), cfn.role_statements(resources, role_id)


def test_the_alarm_state_changes_are_forwarded_to_the_workload_regions_default_bus(everywhere):
    rule, bus, statements = _forwarding(everywhere["ImpairmentRecovery-Route53Alarms"])
    assert rule["EventPattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": "web-api-route53-"}]},
    }
    assert bus == f"arn:aws:events:us-west-2:{CENTRAL}:event-bus/default"
    assert [(s["Action"], cfn.resolve(s["Resource"])) for s in statements] == [("events:PutEvents", bus)]


def test_the_workload_regions_alarm_detector_may_read_the_forwarded_alarms_tags(everywhere):
    resources = everywhere["ImpairmentRecovery-us-west-2"]
    role_id = cfn.get_att(
        resources[cfn.functions_by_handler(resources)["detectors.alarm.handler"]]["Properties"]["Role"]
    )
    readable = [
        cfn.resolve(r)
        for s in cfn.role_statements(resources, role_id)
        if "cloudwatch:ListTagsForResource" in cfn.as_list(s["Action"])
        for r in cfn.as_list(s["Resource"])
    ]
    # (the central stack's account is the deployment's: CDK_DEFAULT_ACCOUNT is not set here)
    assert "arn:aws:cloudwatch:us-east-1:${AWS::AccountId}:alarm:web-api-route53-*" in readable


def test_a_member_workloads_alarm_is_in_the_members_us_east_1_stack_forwarded_to_the_central_bus(everywhere):
    resources = everywhere["ImpairmentRecovery-Member-shop-Route53Alarms"]
    alarm = _alarms(resources)[f"checkout-route53-{CHECKOUT_HEALTH_CHECK}"]
    assert _tags(alarm)["recovery:workload"] == "checkout"
    _, bus, _ = _forwarding(resources)
    assert bus == f"arn:aws:events:us-west-2:{CENTRAL}:event-bus/default"
    # the member role of checkout's region may read its tags there (the central detector assumes it)
    member = everywhere["ImpairmentRecovery-Member-shop-us-west-2"]
    (role_id,) = [k for k in cfn.of_type(member, "AWS::IAM::Role") if "RecoveryRole" in k]
    readable = [
        cfn.resolve(r)
        for s in cfn.role_statements(member, role_id)
        if "cloudwatch:ListTagsForResource" in cfn.as_list(s["Action"])
        for r in cfn.as_list(s["Resource"])
    ]
    assert f"arn:aws:cloudwatch:us-east-1:{MEMBER}:alarm:checkout-route53-*" in readable


def _config(primary: str, standby: str, enabled: bool = True) -> Any:
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["regions"] = {"primary": primary, "standby": [standby]}
    web = next(w for w in raw["workloads"] if w["name"] == "web-api")
    web["alarms"] = {"route53_health_check": {"enabled": enabled}}
    return validate(raw)


def test_with_no_region_in_us_east_1_the_alarms_still_get_a_us_east_1_stack(tmp_path):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    import app as cdk_app
    from infra.route53_alarms import build_route53_alarm_stacks

    config = _config("eu-west-1", "eu-central-1")
    app = cdk.App(outdir=str(tmp_path), context=cdk_context())
    stacks = cdk_app.build(app, config)
    (alarms,) = build_route53_alarm_stacks(app, config)
    primary = Template.from_stack(stacks[0]).to_json()
    assert (alarms.stack_name, alarms.region) == ("ImpairmentRecovery-Route53Alarms", "us-east-1")
    resources = Template.from_stack(alarms).to_json()["Resources"]
    assert set(_alarms(resources)) == {f"web-api-route53-{WEB_API_CHECK}"}
    _, bus, _ = _forwarding(resources)
    assert bus.startswith("arn:aws:events:eu-west-1:")  # web-api runs in the primary region
    # the primary's stack, whose region is known, neither holds the alarm nor refuses its region
    assert f"web-api-route53-{WEB_API_CHECK}" not in _alarms(primary["Resources"])
    assert "Route53MetricsRegion" not in primary.get("Rules", {})
    # and the new stack passes cdk-nag and cfn-lint as the others do
    from aws_cdk.assertions import Annotations, Match

    errors = Annotations.from_stack(alarms).find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert errors == [], "\n".join(f"{e.id}: {e.entry.data}" for e in errors)
    path = app.synth().get_stack_artifact(alarms.artifact_id).template_full_path
    assert cfn.cfn_lint_errors(path) == []


def test_with_the_alarm_disabled_there_is_no_us_east_1_stack():
    import aws_cdk as cdk

    from infra.route53_alarms import build_route53_alarm_stacks

    assert build_route53_alarm_stacks(cdk.App(), _config("eu-west-1", "eu-central-1", enabled=False)) == []
