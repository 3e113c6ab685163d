"""Whether the role a step runs with may make the calls the step's action declares
(actions/registry.py), judged from IAM's policy simulation (iam:SimulatePrincipalPolicy) of that
role: pure functions of the declaration, the step's params and what the simulation answered.

Each IAM action is judged on the resources the step will touch, where they are known (its group,
its hosted zone, its routing controls; the ARNs its grants name), else on "*"; with the managed
tag in the request context, so that an Allow conditioned on aws:ResourceTag is judged as it is
when the action runs on a resource that opted in.

Design: docs/operations.md#readiness
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actions.specs import ActionSpec, StepParams

NAME = "permissions"
ALLOWED = "allowed"
# A service whose IAM actions are authorized on another service's ARNs.
_ARN_SERVICE = {"route53-recovery-cluster": "route53-recovery-control"}
_TAG_KEY = "aws:ResourceTag"


def arn_service(iam_action: str) -> str:
    """The service of the ARNs an IAM action is authorized on ("autoscaling:SetDesiredCapacity":
    autoscaling)."""
    service = iam_action.split(":", 1)[0]
    return _ARN_SERVICE.get(service, service)


def placed(arn: str, partition: str, region: str, account: str) -> str:
    """A declared ARN (${AWS::Partition}, ${AWS::Region}, ${AWS::AccountId}) in the role's place."""
    for name, value in (("Partition", partition), ("Region", region), ("AccountId", account)):
        arn = arn.replace(f"${{AWS::{name}}}", value)
    return arn


def required(
    spec: ActionSpec, params: StepParams, known: Mapping[str, Iterable[str]], place: tuple[str, str, str]
) -> dict[str, list[str]]:
    """IAM action -> the resources to judge it on: the step's resources of its service (`known`,
    by ARN service), else the ARNs its grant names (`place`: partition, region, account), else "*"."""
    wanted: dict[str, list[str]] = {}

    def add(action: str, resources: Iterable[str]) -> None:
        listed = wanted.setdefault(action, [])
        listed += [r for r in resources if r not in listed]

    for action in (*spec.iam_actions, *spec.iam_actions_without_tag_condition):
        add(action, list(known.get(arn_service(action)) or ()) or ["*"])
    grants = (*spec.iam_grants, *(spec.param_grants(params) if spec.param_grants else ()))
    for grant in grants:
        for action in grant.actions:
            add(action, list(known.get(arn_service(action)) or ()) or [placed(r, *place) for r in grant.resources])
    return wanted


def context(spec: ActionSpec, params: StepParams, managed_tag: tuple[str, str]) -> list[dict[str, Any]]:
    """The request context: the managed tag under aws:ResourceTag, and under any tag condition key
    of the action's grants (ssm:resourceTag), as on a resource that opted in."""
    grants = (*spec.iam_grants, *(spec.param_grants(params) if spec.param_grants else ()))
    keys = dict.fromkeys([_TAG_KEY, *(g.tag_condition_key for g in grants if g.tag_condition_key)])
    key, value = managed_tag
    return [
        {"ContextKeyName": f"{prefix}/{key}", "ContextKeyValues": [value], "ContextKeyType": "string"}
        for prefix in keys
    ]


def decisions(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(IAM action lowercased, resource) -> decision, from EvaluationResults: per resource from
    ResourceSpecificResults; (action, "") is the action's overall decision (IAM now answers one
    EvaluationResult per action, whose EvalResourceName is an ARN template, not a resource)."""
    found: dict[tuple[str, str], str] = {}
    for result in results:
        action = str(result["EvalActionName"]).lower()
        found[(action, "")] = result["EvalDecision"]
        found.setdefault((action, str(result.get("EvalResourceName", "*"))), result["EvalDecision"])
        for specific in result.get("ResourceSpecificResults") or []:
            found[(action, specific["EvalResourceName"])] = specific["EvalResourceDecision"]
    return found


def judged(role: str, wanted: Mapping[str, list[str]], results: Iterable[dict[str, Any]]) -> tuple[bool, str]:
    """(all allowed, evidence): each action and resource that is not allowed, with IAM's decision."""
    found = decisions(results)
    name = role.rsplit("/", 1)[-1]
    refused = []
    for action, resources in wanted.items():
        for resource in resources:
            decision = found.get((action.lower(), resource)) or found.get((action.lower(), ""), "not simulated")
            if decision != ALLOWED:
                refused.append(f"{action} on {resource}: {decision}")
    if refused:
        return False, f"role {name}: {'; '.join(refused)}"
    return True, f"role {name}: {len(wanted)} action(s) allowed"
