"""Every problem of an input that did not validate as a model (core/model.py), as pydantic's
`errors()` listed them: msgspec stops at the first problem, and a person fixing a configuration
wants them all at once (`recoveryctl config validate`, `cdk synth`: core/problems.py words them).

Imported only when a validation has failed: the valid path never pays for it. It walks the input
beside the model's declarations (its fields' annotations) and lets msgspec judge each leaf, so the
rules are msgspec's own: this module decides only where to look, and names each problem's type.
"""

from __future__ import annotations

import ast
import enum
import re
import types
import typing
from typing import Any

import msgspec

Loc = tuple[str | int, ...]

_BOUND = re.compile(r"^Expected `(?P<type>\w+)`(?P<length> of length)? (?P<op>>=|>|<=|<) (?P<bound>\S+)$")
_TYPE = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_FIELD = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<field>[^`]+)`$")
_OWN = re.compile(r"^(?P<field>[A-Za-z_][\w-]*): (?P<message>.+)$", re.DOTALL)
_PATTERN = re.compile(r"^Expected `str` matching regex (?P<pattern>'.*')$", re.DOTALL)
_BOUNDS = {">=": ("greater_than_equal", "ge"), ">": ("greater_than", "gt"), "<=": ("less_than_equal", "le")}
_BOUNDS["<"] = ("less_than", "lt")
_TYPES = {
    "str": "string_type",
    "int": "int_type",
    "float": "float_type",
    "bool": "bool_type",
    "array": "list_type",
    "object": "dict_type",
    "datetime": "datetime_type",
}


def every_problem(data: Any, model: type, strict: bool = True) -> list[dict[str, Any]]:
    """Each problem of `data` as `model`: loc, msg, type, ctx, input (pydantic's error records)."""
    return _check(data, model, (), strict)


def _check(value: Any, annotation: Any, loc: Loc, strict: bool) -> list[dict[str, Any]]:
    try:
        msgspec.convert(value, annotation, strict=strict)
        return []
    except msgspec.ValidationError as exc:
        first = exc
    inner, metas = _unwrap(annotation)
    origin = typing.get_origin(inner)
    found: list[dict[str, Any]] = []
    if isinstance(inner, type) and issubclass(inner, msgspec.Struct) and isinstance(value, dict):
        found = _struct(value, inner, loc, strict)
    elif origin in (list, set, frozenset, tuple) and isinstance(value, list):
        args = typing.get_args(inner)
        if origin is not tuple or (len(args) == 2 and args[1] is Ellipsis):
            for index, item in enumerate(value):
                found += _check(item, args[0] if args else Any, (*loc, index), strict)
    elif origin is dict and isinstance(value, dict):
        key_type, value_type = typing.get_args(inner) or (Any, Any)
        for key, item in value.items():
            found += _check(key, key_type, (*loc, key), strict)
            found += _check(item, value_type, (*loc, key), strict)
    elif origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(inner) if m is not type(None)]
        if len(members) == 1 and value is not None:
            found = _check(value, members[0], loc, strict)
    if found:
        # The container's own bounds (its length), judged apart from its items'.
        if metas and isinstance(value, list | dict | str):
            found = _length(value, metas, loc) + found
        return found
    return [_record(first, value, loc, annotation)]


def _struct(value: dict[str, Any], model: type[msgspec.Struct], loc: Loc, strict: bool) -> list[dict[str, Any]]:
    fields = msgspec.structs.fields(model)
    config = model.__struct_config__
    names = {f.encode_name for f in fields}
    if isinstance(config.tag_field, str):
        names.add(config.tag_field)
    found: list[dict[str, Any]] = []
    if config.forbid_unknown_fields:
        for key in value:
            if key not in names:
                found.append(_error("extra_forbidden", "Extra inputs are not permitted", (*loc, key), value[key]))
    checks = getattr(model, "_field_checks", {})
    for field in fields:
        if field.encode_name not in value:
            if field.required:
                found.append(_error("missing", "Field required", (*loc, field.encode_name), value))
            continue
        given, at = value[field.encode_name], (*loc, field.encode_name)
        problems = _check(given, field.type, at, strict)
        if not problems and field.name in checks:
            problems = _field_check(checks[field.name], msgspec.convert(given, field.type, strict=strict), at, given)
        found += problems
    return found


def _field_check(check: Any, value: Any, loc: Loc, given: Any) -> list[dict[str, Any]]:
    """The problem a field's own check (the model's `_field_checks`) finds in its valid value."""
    try:
        check(value)
    except ValueError as exc:
        return [_error("value_error", str(exc), loc, given, {"error": str(exc)})]
    return []


def _length(value: Any, metas: list[msgspec.Meta], loc: Loc) -> list[dict[str, Any]]:
    found = []
    for meta in metas:
        kind = "string" if isinstance(value, str) else ""
        if meta.min_length is not None and len(value) < meta.min_length:
            kind = f"{kind}_too_short" if kind else "too_short"
            found.append(_error(kind, "too short", loc, value, {"min_length": meta.min_length}))
        if meta.max_length is not None and len(value) > meta.max_length:
            kind = f"{kind}_too_long" if kind else "too_long"
            found.append(_error(kind, "too long", loc, value, {"max_length": meta.max_length}))
    return found


def _unwrap(annotation: Any) -> tuple[Any, list[msgspec.Meta]]:
    metas: list[msgspec.Meta] = []
    while typing.get_origin(annotation) is typing.Annotated:
        metas += [m for m in annotation.__metadata__ if isinstance(m, msgspec.Meta)]
        annotation = annotation.__origin__
    return annotation, metas


def _record(exc: msgspec.ValidationError, value: Any, loc: Loc, annotation: Any) -> dict[str, Any]:
    """msgspec's first problem of `value` (at `loc`) as a pydantic error record."""
    from core.model import ValidationError

    first = ValidationError.from_msgspec("", exc)  # msgspec's message and path, parsed once
    message, steps = first.message, list(first.path)
    where, given = (*loc, *steps), _at(value, steps)
    if field := _FIELD.match(message):
        name = field.group("field")
        if field.group("what") == "missing required":
            return _error("missing", "Field required", (*where, name), given)
        return _error("extra_forbidden", "Extra inputs are not permitted", (*where, name), _at(given, [name]))
    if bound := _BOUND.match(message):
        kind, key = _BOUNDS[bound.group("op")]
        limit = _number(bound.group("bound"))
        if bound.group("length"):
            text = bound.group("type") == "str"
            short = bound.group("op").startswith(">")
            kind = ("string_" if text else "") + ("too_short" if short else "too_long")
            key = "min_length" if short else "max_length"
            if bound.group("op") in (">", "<"):  # msgspec says >= n + 1 for a length; kept as given
                limit = limit + 1 if short else limit - 1
        return _error(kind, message, where, given, {key: limit})
    if pattern := _PATTERN.match(message):
        declared = _unquoted(pattern.group("pattern"))
        return _error("string_pattern_mismatch", message, where, given, {"pattern": declared})
    expected = _expected(_leaf(annotation, steps))
    if message.startswith("Invalid enum value") or (expected and _TYPE.match(message)):
        return _error("enum", message, where, given, {"expected": expected})
    if kinds := _TYPE.match(message):
        expected = kinds.group("expected")
        return _error(_TYPES.get(expected, "type_error"), message, where, given, {"expected": expected})
    # A model's own check (its _check raising ValueError): a message naming one of its fields
    # first ("alarms: ...") is that field's problem.
    own = _OWN.match(message)
    fields = _field_names(_leaf(annotation, steps))
    if own and own.group("field") in fields:
        field, rest = own.group("field"), own.group("message")
        return _error("value_error", rest, (*where, field), _at(given, [field]), {"error": rest})
    # A datetime's form, and the rest.
    return _error("value_error", message, where, given, {"error": message})


def _field_names(annotation: Any) -> set[str]:
    annotation, _ = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return {f.encode_name for f in msgspec.structs.fields(annotation)}
    return set()


def _error(kind: str, message: str, loc: Loc, value: Any, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": message, "input": value, "ctx": ctx or {}}


def _at(value: Any, steps: list[str | int]) -> Any:
    for step in steps:
        found = isinstance(value, dict) and step in value
        found = found or (isinstance(value, list) and isinstance(step, int) and step < len(value))
        if not found:
            return None
        value = value[step]
    return value


def _unquoted(text: str) -> str:
    """The pattern msgspec quoted (its repr: a backslash doubled) as it was declared."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text[1:-1]
    return value if isinstance(value, str) else text[1:-1]


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _leaf(annotation: Any, steps: list[str | int]) -> Any:
    """The annotation at `steps` below `annotation`, as far as it can be followed."""
    for step in steps:
        annotation, _ = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct) and isinstance(step, str):
            by_name = {f.encode_name: f.type for f in msgspec.structs.fields(annotation)}
            annotation = by_name.get(step, Any)
        elif typing.get_origin(annotation) in (list, set, frozenset, tuple, dict):
            annotation = typing.get_args(annotation)[-1] if typing.get_args(annotation) else Any
        else:
            return annotation
    return annotation


def _expected(annotation: Any) -> str:
    """The values an enum or a Literal takes, as pydantic listed them: "'a', 'b' or 'c'"."""
    quoted = [repr(v) for v in _values(annotation)]
    if not quoted:
        return ""
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _values(annotation: Any) -> list[Any]:
    annotation, _ = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation]
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return [value for member in typing.get_args(annotation) for value in _values(member)]
    return []
