"""Only the detectors may put events on the recovery bus (an "Impairment Detected" starts a
recovery): its resource policy denies events:PutEvents to every principal but their roles."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.registry import DETECTORS, EKS_CHECK, REGION_PROBE
from tests.infra import cfn

# Every detector the registry declares, but the region probe: cdk.json's stack probes no other
# region (a standby region's stack has it: tests/infra/test_region_probe.py).
# The detectors that publish: the readiness check only records and counts (publishes=False).
# Deployed in cdk.json's stack (the EKS check only for EKS workloads: tests/infra/test_eks_check_stack.py).
DETECTOR_HANDLERS = [d.handler for d in DETECTORS if d not in (REGION_PROBE, EKS_CHECK) and d.publishes]
assert len(DETECTOR_HANDLERS) >= 6


def recovery_bus(resources: dict[str, Any]) -> str:
    (bus_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::Events::EventBus"]
    return bus_id


def bus_policy(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the recovery bus's resource policy (its own, or EventBusPolicy resources)."""
    bus_id = recovery_bus(resources)
    statements = cfn.as_list((resources[bus_id]["Properties"].get("Policy") or {}).get("Statement", []))
    for resource in resources.values():
        if resource["Type"] == "AWS::Events::EventBusPolicy" and resource["Properties"].get("EventBusName") == {
            "Ref": bus_id
        }:
            statements.append(resource["Properties"]["Statement"])
    return statements


def admitted_roles(statement: dict[str, Any]) -> set[str]:
    """The logical ids of the roles a Deny statement's ArnNotEquals aws:PrincipalArn excepts."""
    return {cfn.get_att(arn) for arn in cfn.as_list(statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])}


def put_events_grantees(resources: dict[str, Any]) -> set[str]:
    """Roles whose identity policies allow events:PutEvents on the recovery bus."""
    bus_id = recovery_bus(resources)
    found: set[str] = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in cfn.as_list(resource["Properties"]["PolicyDocument"]["Statement"]):
            if (
                statement["Effect"] == "Allow"
                and "events:PutEvents" in cfn.as_list(statement["Action"])
                and {"Fn::GetAtt": [bus_id, "Arn"]} in cfn.as_list(statement["Resource"])
            ):
                found |= {cfn.get_att(role) for role in resource["Properties"]["Roles"]}
    return found


def assert_only_detectors_put_events(resources: dict[str, Any], detector_handlers: list[str]) -> None:
    """The bus denies PutEvents to all but exactly the roles of these detectors, which are exactly
    the roles allowed to put events there."""
    (statement,) = bus_policy(resources)
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] in ("*", {"AWS": "*"})
    # PutEvents only: StartReplay (on the archive) and the replay's own delivery are not PutEvents
    assert cfn.as_list(statement["Action"]) == ["events:PutEvents"]
    assert list(statement["Condition"]) == ["ArnNotEquals"]
    assert list(statement["Condition"]["ArnNotEquals"]) == ["aws:PrincipalArn"]
    # the bus's own ARN (from its name: a resource cannot refer to its own attributes)
    bus = resources[recovery_bus(resources)]
    assert cfn.resolve(statement["Resource"]).endswith(f":event-bus/{bus['Properties']['Name']}")

    handlers = cfn.functions_by_handler(resources)
    detector_roles = {cfn.get_att(resources[handlers[h]]["Properties"]["Role"]) for h in detector_handlers}
    assert admitted_roles(statement) == detector_roles
    assert put_events_grantees(resources) == detector_roles


def test_the_bus_admits_exactly_the_detector_roles(resources):
    assert_only_detectors_put_events(resources, DETECTOR_HANDLERS)


@pytest.mark.parametrize("handler", DETECTOR_HANDLERS)
def test_every_detector_role_is_admitted(handler, resources):
    (statement,) = bus_policy(resources)
    role = cfn.get_att(resources[cfn.functions_by_handler(resources)[handler]]["Properties"]["Role"])
    assert role in admitted_roles(statement)


def test_no_other_function_is_admitted(resources):
    # The recovery trigger, the workflow's tasks and the actions never put events on the bus
    (statement,) = bus_policy(resources)
    others = {
        cfn.get_att(r["Properties"]["Role"])
        for h, function_id in cfn.functions_by_handler(resources).items()
        if not h.startswith("detectors.")
        for r in [resources[function_id]]
    }
    assert others, "the stack has functions other than detectors"
    assert not others & admitted_roles(statement)
