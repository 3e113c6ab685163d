"""Reading a synthesized CloudFormation template: intrinsics as readable strings, the state
machine's definition as a dict, every policy statement, the functions by handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

Resources = dict[str, dict[str, Any]]


def placeholder(value: Any) -> str:
    """A stand-in for an intrinsic that names what it refers to: ${LogicalId.Attr}, ${Ref}."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Ref":
            return f"${{{argument}}}"
        if name == "Fn::GetAtt":
            return "${" + (".".join(argument) if isinstance(argument, list) else str(argument)) + "}"
    return "${?}"


def resolve(value: Any) -> Any:
    """A string, or an Fn::Join of strings and intrinsics, as one string (intrinsics become
    placeholders); anything else unchanged."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(part if isinstance(part, str) else placeholder(part) for part in parts)
    return value


def of_type(resources: Resources, resource_type: str) -> Resources:
    return {key: resource for key, resource in resources.items() if resource["Type"] == resource_type}


def only(resources: Resources, resource_type: str) -> tuple[str, dict[str, Any]]:
    """The one resource of a type (fails if there are none or several)."""
    found = of_type(resources, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def state_machine(resources: Resources, name: str = "Recovery") -> tuple[str, dict[str, Any]]:
    """The recovery workflow's state machine ("Recovery"), or the cleanup after a dead execution
    ("RecoveryCleanup"): by the start of its logical id."""
    machines = of_type(resources, "AWS::StepFunctions::StateMachine")
    found = {k: v for k, v in machines.items() if k.startswith(f"{name}StateMachine")}
    assert len(found) == 1, f"expected one {name} state machine, found {sorted(machines)}"
    return next(iter(found.items()))


def get_att(value: Any) -> str:
    """The logical id an {"Fn::GetAtt": [id, attr]} or {"Ref": id} points at."""
    if "Ref" in value:
        return value["Ref"]
    target = value["Fn::GetAtt"]
    return target[0] if isinstance(target, list) else target.split(".", 1)[0]


def functions_by_handler(resources: Resources) -> dict[str, str]:
    """Lambda logical ids by handler ("actions.replace_instance.apply_handler" -> id)."""
    return {r["Properties"]["Handler"]: key for key, r in of_type(resources, "AWS::Lambda::Function").items()}


def state_machine_definition(state_machine: dict[str, Any]) -> dict[str, Any]:
    """The ASL definition of an AWS::StepFunctions::StateMachine, with references as placeholders."""
    return json.loads(resolve(state_machine["Properties"]["DefinitionString"]))


def all_states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state by name, including those inside Map item processors and Parallel branches."""
    states: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        assert name not in states, f"state {name!r} defined twice"
        states[name] = state
        inner = [state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])]
        for sub in filter(None, inner):
            for sub_name, sub_state in all_states(sub).items():
                assert sub_name not in states, f"state {sub_name!r} defined twice"
                states[sub_name] = sub_state
    return states


def policy_statements(resources: Resources) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(logical id, resource type, statement) for every statement of every policy document in the
    template: identity policies, inline role policies, trust policies and resource policies."""

    def documents(value: Any) -> Iterator[dict[str, Any]]:
        if isinstance(value, dict):
            if "Statement" in value and "Version" in value:
                yield value
            for child in value.values():
                yield from documents(child)
        elif isinstance(value, list):
            for child in value:
                yield from documents(child)

    for key, resource in resources.items():
        for document in documents(resource.get("Properties", {})):
            statements = document["Statement"]
            for statement in statements if isinstance(statements, list) else [statements]:
                yield key, resource["Type"], statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(resources: Resources, role_id: str) -> list[dict[str, Any]]:
    """The statements of every identity policy attached to a role (and its inline policies)."""
    statements: list[dict[str, Any]] = []
    for resource in resources.values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": role_id} in resource[
            "Properties"
        ].get("Roles", []):
            statements += as_list(resource["Properties"]["PolicyDocument"]["Statement"])
    for inline in resources[role_id]["Properties"].get("Policies", []):
        statements += as_list(inline["PolicyDocument"]["Statement"])
    return statements


def cfn_lint_errors(*templates: Any) -> list[str]:
    """cfn-lint's errors for these templates, each as "file rule path: message" (run from the
    repository root, so a .cfnlintrc there applies as it does for `cfn-lint` by hand). Exit status
    bit 2 means errors even when none is in the JSON: that is reported too."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import ROOT

    beside = Path(sys.executable).with_name("cfn-lint")
    executable = str(beside) if beside.exists() else shutil.which("cfn-lint")
    assert executable, "cfn-lint is not installed (it is in requirements-dev)"
    result = subprocess.run(
        [executable, "--format", "json", *(str(t) for t in templates)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [
        f"{Path(f['Filename']).name} {f['Rule']['Id']} {'/'.join(map(str, f['Location']['Path']))}: {f['Message']}"
        for f in json.loads(result.stdout or "[]")
        if f["Level"] == "Error" or f["Rule"]["Id"].startswith("E")
    ]
    if result.returncode & 2 and not errors:
        errors.append(f"cfn-lint exited with errors: {result.stderr.strip()}")
    return errors
