"""What is wrong with a configuration, said in its author's terms: `<field path>: <message>`.

pydantic's own messages quote regular expressions ("String should match pattern '^[1-9][0-9]*[mh]$'")
and prefixes ("Value error, ..."); a person editing a JSON file needs the field's path and what
the field must be. Each error type maps to a plain message here, and a pattern mismatch to what
the field holds (by the pattern, for an ARN's shape; else by the field's name), so that every
validator of the configuration (infra/validation.py, core/plans.py, each action's parameters)
reports alike. The errors are pydantic's or core.model's (its ValidationError.errors() gives
records of the same form: loc, msg, type, ctx).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from msgspec import Struct
from msgspec.structs import replace

from core.arns import SHAPES as _ARN_SHAPES

Location = tuple[str | int, ...]


class Problem(Struct, frozen=True):
    """One thing to fix: where (a dotted path from the configuration's root) and what."""

    path: str
    message: str
    # What the path leads into, by its name: "plan 'fail-over-region'" (a list's index alone is hard to find).
    within: str = ""

    def __str__(self) -> str:
        where = f"{self.path} ({self.within})" if self.within else self.path
        return f"{where}: {self.message}" if where else self.message

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, **({"within": self.within} if self.within else {})}


def named(problems: list[Problem], where: str, items: Any, what: str) -> list[Problem]:
    """The problems, those under `where`.N said to be within the item's name ("plan 'p1'"), before
    what they were said to be within ("plan 'p1', action scale_out")."""
    if not isinstance(items, list):
        return problems
    result = []
    for problem in problems:
        parts = problem.path.split(".")
        if len(parts) > 1 and parts[0] == where and parts[1].isdigit() and int(parts[1]) < len(items):
            item = items[int(parts[1])]
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name and not problem.within.startswith(f"{what} "):
                within = ", ".join(w for w in (f"{what} {name!r}", problem.within) if w)
                problem = replace(problem, within=within)
        result.append(problem)
    return result


def path(*parts: str | int) -> str:
    """ "plans.0.steps.1.params" from its parts (empty parts are left out)."""
    return ".".join(str(p) for p in parts if p != "")


class Errors(Protocol):
    """A validation error listing its problems: pydantic's ValidationError or core.model's."""

    def errors(self) -> Any: ...


def from_validation(error: Errors, *prefix: str | int) -> list[Problem]:
    """Every error of a validation, under `prefix` (where the validated object sits)."""
    return [problem_of(e, *prefix) for e in error.errors()]


def problem_of(error: Any, *prefix: str | int) -> Problem:
    """One error of a validation (an item of ValidationError.errors()), under `prefix`."""
    return Problem(path(*prefix, *_fields(error["loc"])), describe(error))


def _fields(loc: Iterable[str | int]) -> Location:
    # A union or a function validator adds its schema's tag ("function-after[check(), str]"): not a field.
    return tuple(part for part in loc if isinstance(part, int) or "[" not in part)


# What a field whose value does not match its pattern must be, by the field's name.
_SHAPES = {
    "expires_in": "a duration like 30m or 2h",
    "region": "a region name like us-east-1",
    "primary": "a region name like us-east-1",
    "standby": "a region name like us-west-2",
    "account_id": "a 12-digit AWS account ID",
    "central_account_id": "a 12-digit AWS account ID",
    "organization_id": "an AWS Organizations ID like o-a1b2c3d4e5",
    "stack_name": "a CloudFormation stack name: a letter, then letters, digits and hyphens (128 at most)",
    "role_name": "an IAM role name: letters, digits and +=,.@_- (64 at most)",
    "hosted_zone_id": "a Route 53 hosted zone ID like Z0123456789ABCDEFGHIJ",
    "db_instance_identifier": "an RDS identifier: a letter, then letters, digits and hyphens (63 at most)",
    "db_cluster_identifier": "an RDS identifier: a letter, then letters, digits and hyphens (63 at most)",
    "target_db_instance_identifier": "an RDS identifier: a letter, then letters, digits and hyphens (63 at most)",
    "primary_routing_control_arn": "a routing control ARN "
    "(arn:aws:route53-recovery-control::ACCOUNT:controlpanel/ID/routingcontrol/ID)",
    "standby_routing_control_arn": "a routing control ARN "
    "(arn:aws:route53-recovery-control::ACCOUNT:controlpanel/ID/routingcontrol/ID)",
    "safety_rules_to_override": "a safety rule ARN (arn:aws:route53-recovery-control::ACCOUNT:controlpanel/ID/"
    "safetyrule/ID)",
    "endpoint": "an https:// URL",
    "start": "a time of day like 02:00",
    "end": "a time of day like 04:00",
    "unit": "a systemd unit name like nginx.service",
    "instance_id": "an EC2 instance ID like i-0123456789abcdef0",
    "routing_key_secret": "a Secrets Manager secret's name (letters, digits and /_+=.@-) or ARN",
    "workspace_id": "a Slack workspace ID like T0123ABCD",
    "channel_id": "a channel ID (Slack: like C0123ABCD; Teams: from the channel's link, like 19%3a...%40thread.tacv2)",
    "team_id": "a Microsoft Teams ID (a UUID)",
    "tenant_id": "a Microsoft Teams tenant ID (a UUID)",
    "function_name": "a Lambda function name (optionally name:alias) or its ARN",
    "rollback_function": "a Lambda function name (optionally name:alias) or its ARN",
    "document_name": "an SSM document name like AWS-RestartEC2Instance, or its ARN",
    "rollback_document": "an SSM document name like AWS-StartEC2Instance, or its ARN",
    "document_version": "a document version: a number, $DEFAULT or $LATEST",
    "target_parameter": "a runbook parameter name like InstanceId",
}
# A name's rules differ by what it names (the first part of the path).
_NAMES = {
    "workloads": "a workload name: lowercase letters, digits and hyphens, starting with a letter or digit (40 at most)",
    "plans": "a plan name: lowercase letters, digits and hyphens, starting with a letter or digit (63 at most)",
    "accounts": "a member name: lowercase letters, digits and hyphens, starting with a letter or digit (40 at most)",
}
# Type errors: what the value must be.
_TYPES = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def describe(error: Any) -> str:
    """One error (an item of ValidationError.errors()) as a person would say it."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input", _UNKNOWN)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error") or error["msg"]).removeprefix("Value error, ")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field here (check its spelling and where it is nested)"
    if kind == "string_pattern_mismatch":
        shape = _ARN_SHAPES.get(ctx.get("pattern", "")) or _shape(error["loc"])
        return f"must be {shape}{_given(value)}"
    if kind in _TYPES:
        return f"must be {_TYPES[kind]}{_given(value)}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}{_given(value)}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected')}{_given(value)}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must have at least {least} items"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters long"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    # Anything else: pydantic's message, worded as the others.
    return str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")


def _shape(loc: Iterable[str | int]) -> str:
    fields = [part for part in _fields(loc) if isinstance(part, str)]
    if not fields:
        return "in the expected form"
    if fields[-1] == "name":
        return _NAMES.get(fields[0], "a name: lowercase letters, digits and hyphens")
    return _SHAPES.get(fields[-1], "in the expected form")


_UNKNOWN = object()  # an error that does not carry the value given


def _given(value: Any) -> str:
    """ " (got '2 hours')": the value, when it is short enough to quote."""
    if value is _UNKNOWN:
        return ""
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return f" (got {value!r})" if value is not None else " (got null)"
    if isinstance(value, str) and len(value) <= 120:
        return f" (got {value!r})"
    return ""
