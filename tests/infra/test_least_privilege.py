"""No unconditioned mutation on "*" in any synthesized template: the single-region stack, and a
deployment with standby regions and a member account (every central, member and regional stack
app.py builds). A statement that allows a call which changes something, on every resource and
without a condition, is a failure here, but for the exceptions below, each with its reason."""

from __future__ import annotations

import json
from typing import Any

from infra.config import validate
from tests.conftest import cdk_context
from tests.infra import cfn

# Calls that change nothing: by the verb that starts their name.
READ_VERBS = ("Describe", "Get", "List", "BatchGet", "Search", "Lookup")

# Mutating calls that may be allowed on "*" without a condition, and why.
EXCEPTIONS = {
    # X-Ray has no resource-level permissions: tracing is granted on "*" (AWS's managed policy
    # AWSXRayDaemonWriteAccess does the same); it writes telemetry, it changes no resource.
    "xray:PutTraceSegments": "X-Ray supports no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray supports no resource-level permissions",
    # Step Functions' logging to CloudWatch Logs (vended log delivery): the state machine's role
    # must hold these on "*", as AWS documents (they support no resource-level permissions or
    # condition keys); CDK adds them with `logs` on a state machine.
    "logs:CreateLogDelivery": "Step Functions log delivery: resource-level permissions unsupported",
    "logs:UpdateLogDelivery": "Step Functions log delivery: resource-level permissions unsupported",
    "logs:DeleteLogDelivery": "Step Functions log delivery: resource-level permissions unsupported",
    "logs:PutResourcePolicy": "Step Functions log delivery: resource-level permissions unsupported",
}

# Resource policies in which "*" is the resource itself (a key policy names no other key).
SELF_RESOURCE_POLICIES = {"AWS::KMS::Key"}


def unconditioned_mutations(resources: cfn.Resources) -> list[tuple[str, str]]:
    """(logical id, IAM action) of each Allow on "*", without a Condition, of a call that is
    neither a read nor one of EXCEPTIONS."""
    found = []
    for key, resource_type, statement in cfn.policy_statements(resources):
        if resource_type in SELF_RESOURCE_POLICIES or statement.get("Effect") != "Allow":
            continue
        if "*" not in cfn.as_list(statement.get("Resource", [])) or statement.get("Condition"):
            continue
        for action in cfn.as_list(statement.get("Action", [])):
            verb = action.split(":", 1)[-1]
            if "*" in action or not (verb.startswith(READ_VERBS) or action in EXCEPTIONS):
                found.append((key, action))
    return found


def test_the_deployment_has_central_member_and_regional_stacks(everywhere):
    assert {"ImpairmentRecovery", "ImpairmentRecovery-us-west-2"} <= set(everywhere)
    assert {"ImpairmentRecovery-Member-shop", "ImpairmentRecovery-Member-shop-us-west-2"} <= set(everywhere)
    assert {"ImpairmentRecovery-Route53Alarms", "ImpairmentRecovery-Member-shop-Route53Alarms"} <= set(everywhere)


def test_no_unconditioned_mutation_on_every_resource_in_the_single_region_stack(resources):
    assert unconditioned_mutations(resources) == []


def test_no_unconditioned_mutation_on_every_resource_in_any_stack_of_a_deployment(everywhere):
    found = {name: unconditioned_mutations(resources) for name, resources in everywhere.items()}
    assert {name: f for name, f in found.items() if f} == {}


def test_the_check_finds_what_it_must():
    """The check itself: a mutation on "*" is found, a conditioned one, a read or a key's own
    policy is not."""

    def policy(*statements: dict[str, Any]) -> dict[str, Any]:
        return {
            "Type": "AWS::IAM::Policy",
            "Properties": {"PolicyDocument": {"Version": "2012-10-17", "Statement": list(statements)}},
        }

    allow = {"Effect": "Allow", "Resource": "*"}
    resources = {
        "Bad": policy({**allow, "Action": ["ec2:DescribeInstances", "ec2:TerminateInstances"]}),
        "Star": policy({**allow, "Action": "s3:*"}),
        "Tagged": policy({**allow, "Action": "ec2:StopInstances", "Condition": {"StringEquals": {"a": "b"}}}),
        "Named": policy({"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:aws:sns:us-east-1:1:t"}),
        "Denied": policy({"Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": "*"}),
        "Key": {**policy({**allow, "Action": "kms:*"}), "Type": "AWS::KMS::Key"},
    }
    assert unconditioned_mutations(resources) == [("Bad", "ec2:TerminateInstances"), ("Star", "s3:*")]


# --- Route 53 record changes: on the hosted zones the configuration names ---


def _record_change_grants(resources: cfn.Resources) -> list[list[str]]:
    return [
        [
            cfn.resolve(r) if not isinstance(r, dict) or "Fn::Sub" not in r else r["Fn::Sub"]
            for r in cfn.as_list(s["Resource"])
        ]
        for _, _, s in cfn.policy_statements(resources)
        if "route53:ChangeResourceRecordSets" in cfn.as_list(s.get("Action", []))
    ]


def test_record_changes_are_granted_on_the_configured_hosted_zone_only(resources, everywhere):
    zone = "arn:${AWS::Partition}:route53:::hostedzone/Z0EXAMPLE0WEBAPI"
    grants = _record_change_grants(resources)
    assert grants and all(g == [zone] for g in grants)
    member = _record_change_grants(everywhere["ImpairmentRecovery-Member-shop"])
    assert member == [[zone]]


def test_hosted_zones_come_from_workloads_and_every_plan_step_that_names_one():
    from infra.permissions import hosted_zones

    raw = cdk_context()["recovery"]
    config = validate(
        {
            **raw,
            "plans": [
                *raw["plans"],
                {
                    "name": "other-zone",
                    "match": {"impairment_types": ["network_issue"]},
                    "steps": [
                        {
                            "action": "failover",
                            "params": {
                                "kind": "dns",
                                "hosted_zone_id": "/hostedzone/ZOTHER",
                                "record_name": "x.example.com",
                            },
                        }
                    ],
                },
            ],
        }
    )
    assert hosted_zones(config.workloads, config.parsed_plans()) == ["Z0EXAMPLE0WEBAPI", "ZOTHER"]


def test_without_a_named_zone_record_changes_are_not_granted_at_all(tmp_path):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.stack import RecoveryStack

    raw = json.loads(json.dumps(cdk_context()["recovery"]))
    for w in raw["workloads"]:
        w.pop("dns", None)
    raw["plans"] = [p for p in raw["plans"] if not any(s["action"].startswith("failover") for s in p["steps"])]
    config = validate(raw)
    app = cdk.App(outdir=str(tmp_path), context=cdk_context())
    stack = RecoveryStack(app, "NoZones", config=config)
    resources = Template.from_stack(stack).to_json()["Resources"]
    assert _record_change_grants(resources) == []
