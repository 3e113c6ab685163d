"""The base of the functions' models: a msgspec Struct with the methods the call sites use
(model_validate, model_dump, model_copy), and one ValidationError naming the field path.

Why not pydantic: importing it and building its validators on first use cost each handler about
100 ms of cold start; msgspec validates the same declarations (types, Meta constraints, enums,
ISO datetimes) for a few. docs/performance.md ("Cold start") says what has moved and what has not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Self

import msgspec

# A datetime that must carry a time zone (pydantic's AwareDatetime).
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# Set while msgspec builds models from data (model_validate, a constructor's check): the
# instances it makes are validated by it, so their __post_init__ only runs their own checks.
_CONVERTING: ContextVar[bool] = ContextVar("_CONVERTING", default=False)
# Python values model_dump() keeps as they are (pydantic's python mode kept them too).
_PYTHON_TYPES = (datetime, date, time, timedelta)
_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


class ValidationError(ValueError):
    """Input that does not validate as a model: names the model, the field path and the problem.

    A ValueError, so a pydantic model holding one of these models reports it as that field's
    error."""

    def __init__(
        self,
        model: str,
        message: str,
        path: tuple[str | int, ...] = (),
        problems: list[dict[str, Any]] | None = None,
    ) -> None:
        self.model = model
        self.message = message
        self.path = path
        self._problems = problems
        where = ".".join(str(p) for p in path)
        more = f" (and {len(problems) - 1} more)" if problems and len(problems) > 1 else ""
        super().__init__(f"invalid {model}: {where + ': ' if where else ''}{message}{more}")

    @classmethod
    def from_msgspec(cls, model: str, exc: msgspec.ValidationError) -> ValidationError:
        match = _PATH.match(str(exc))
        message, path = (match.group("message"), match.group("path")) if match else (str(exc), None)
        steps: list[str | int] = []
        for name, index in _STEP.findall(path or ""):
            steps.append(name or (int(index) if index.isdigit() else index))
        return cls(model, message, tuple(steps))

    @classmethod
    def of(cls, model: type, data: Any, exc: msgspec.ValidationError, strict: bool = True) -> ValidationError:
        """The error of `data` as `model`: msgspec's first problem, and every problem of the input
        (found only now that it failed: the valid path pays nothing for it)."""
        from core.model_errors import every_problem

        first = cls.from_msgspec(model.__name__, exc)
        return cls(first.model, first.message, first.path, every_problem(data, model, strict) or None)

    def errors(self, **_: Any) -> list[dict[str, Any]]:
        """Every problem, as pydantic's errors() gave them: loc (the field path), msg, type (pydantic's
        error types: missing, extra_forbidden, int_type, greater_than_equal, string_pattern_mismatch,
        enum, value_error ...), ctx (the bound, the pattern, the expected values) and input."""
        if self._problems:
            return [dict(problem) for problem in self._problems]
        return [{"loc": self.path, "msg": self.message, "type": "value_error", "ctx": {}, "input": None}]


class Model(msgspec.Struct, kw_only=True):
    """Base of a validated model.

    - `Model.model_validate(data)` validates and converts (msgspec.convert), raising ValidationError;
    - constructing a model validates it too (as pydantic did), keeping the coerced values ("high"
      -> Severity.HIGH, an ISO string -> datetime);
    - `model_dump(mode="json")` gives JSON-ready builtins, `model_dump()` keeps datetimes;
    - `model_copy(update=...)` returns a validated copy with the fields replaced;
    - a model's own checks go in `_check(self)` (raise ValueError), run after every validation;
      a check of one field's value alone (pydantic's field_validator) in `_field_checks`, by the
      field's name: it is run before `_check`, and judged even when other fields are invalid.
      A check's message that starts with a field's name and a colon ("alarms: ...") is that
      field's problem (its path, in ValidationError.errors()).

    Options go in the class statement: `kw_only=True` (named fields, as pydantic's), pydantic's
    extra="forbid" is `forbid_unknown_fields=True`, `frozen=True`, aliases `msgspec.field(name=)`.
    A pydantic model may hold one as a field (`__get_pydantic_core_schema__`: pydantic is imported
    then, by that model, never by this module).
    """

    # A field's own check, by its name: takes the field's value, raises ValueError.
    _field_checks: ClassVar[dict[str, Callable[[Any], None]]] = {}

    @classmethod
    def model_validate(cls, data: Any, strict: bool = True) -> Self:
        """`data` (a mapping, or an instance) as this model, or ValidationError. Not strict: text
        is read as the number or boolean a field wants ("60", "true"), as environments need."""
        if isinstance(data, cls):
            return data
        token = _CONVERTING.set(True)
        try:
            return msgspec.convert(data, cls, strict=strict)
        except msgspec.ValidationError as exc:
            raise ValidationError.of(cls, data, exc, strict) from None
        finally:
            _CONVERTING.reset(token)

    @classmethod
    def model_validate_json(cls, data: bytes | str) -> Self:
        """JSON text as this model, or ValidationError (malformed JSON included)."""
        token = _CONVERTING.set(True)
        try:
            return msgspec.json.decode(data, type=cls)
        except msgspec.ValidationError as exc:
            raise ValidationError.of(cls, msgspec.json.decode(data), exc) from None
        except msgspec.DecodeError as exc:
            raise ValidationError(cls.__name__, f"not JSON: {exc}") from None
        finally:
            _CONVERTING.reset(token)

    def __post_init__(self) -> None:
        if _CONVERTING.get():
            for name, check in self._field_checks.items():
                try:
                    check(getattr(self, name))
                except ValueError as exc:
                    raise ValueError(f"{_encoded(type(self), name)}: {exc}") from None
            self._check()
            return
        # Built by a constructor: validate it as data would be, and keep the coerced values.
        fields = {name: getattr(self, name) for name in self.__struct_fields__}
        checked = type(self).model_validate({_encoded(type(self), n): v for n, v in fields.items()})
        for name, value in fields.items():
            coerced = getattr(checked, name)
            if coerced is not value:
                msgspec.structs.force_setattr(self, name, coerced)

    def _check(self) -> None:
        """The model's own checks beyond its declarations; raise ValueError. None by default."""

    def model_dump(
        self, mode: str = "python", exclude: set[str] | None = None, exclude_none: bool = False
    ) -> dict[str, Any]:
        """The model as builtins: JSON-ready with mode="json", else datetimes kept; without the
        `exclude`d fields, and with exclude_none without its fields that are None."""
        dumped = msgspec.to_builtins(self, builtin_types=None if mode == "json" else _PYTHON_TYPES)
        if exclude:
            names = {_encoded(type(self), n) for n in exclude}
            dumped = {k: v for k, v in dumped.items() if k not in names}
        if exclude_none:
            dumped = {k: v for k, v in dumped.items() if v is not None}
        return dumped

    def model_dump_json(self) -> str:
        return msgspec.json.encode(self).decode()

    def model_copy(self, update: dict[str, Any] | None = None) -> Self:
        """A copy with `update`'s fields replaced, validated like a new model."""
        # replace() runs __post_init__: the copy is validated as a constructed model is.
        return msgspec.structs.replace(self, **(update or {}))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def serialize(value: Model, info: Any) -> Any:
            return value.model_dump(mode="json" if info.mode == "json" else "python")

        def validate(data: Any) -> Model:
            try:
                return cls.model_validate(data)
            except ValidationError as exc:
                raise _pydantic_error(cls.__name__, exc) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(serialize, info_arg=True),
        )


def _pydantic_error(model: str, error: ValidationError) -> Exception:
    """Every problem of `error` as pydantic's ValidationError: raised by the validator of a
    pydantic model's field holding a Model, pydantic lists them under that field's path, with
    their own types and context (core/problems.py words them as any other)."""
    from pydantic_core import InitErrorDetails, PydanticCustomError
    from pydantic_core import ValidationError as PydanticError

    details = [
        InitErrorDetails(
            # the message is a template over ctx: braces naming no ctx key (a pattern's {0,62}) stay as they are
            type=PydanticCustomError(e["type"], e["msg"], e.get("ctx") or {}),
            loc=tuple(e["loc"]),
            input=e.get("input"),
        )
        for e in error.errors()
    ]
    return PydanticError.from_exception_data(model, details)


def _encoded(model: type[msgspec.Struct], name: str) -> str:
    """A field's name in data (its alias, if it has one)."""
    fields = model.__struct_fields__
    return model.__struct_encode_fields__[fields.index(name)] if name in fields else name


def json_schema_definitions(*models: type[Model]) -> dict[str, Any]:
    """The models' JSON Schema definitions as pydantic published them (draft-04 "definitions",
    referenced as "#/definitions/Name"): for the schema published in schemas/ (build time only).

    From msgspec's schema, with what pydantic's had that it lacks: a title on every property
    that is not a reference, "format": "date-time" on datetimes, enums in their declared order
    with their type, and no default for an empty container (pydantic's default_factory)."""
    import msgspec.inspect as inspect

    _, definitions = msgspec.json.schema_components(models, ref_template="#/definitions/{name}")
    for info in inspect.multi_type_info(models):
        _complete(info, definitions, inspect)
    return definitions


def _complete(info: Any, definitions: dict[str, Any], inspect: Any) -> None:
    """Add to `definitions` what pydantic had for the struct or enum `info` (and what it holds)."""
    if isinstance(info, inspect.Metadata):
        _complete(info.type, definitions, inspect)
    elif isinstance(info, (inspect.ListType, inspect.SetType, inspect.FrozenSetType)):
        _complete(info.item_type, definitions, inspect)
    elif isinstance(info, inspect.DictType):
        _complete(info.value_type, definitions, inspect)
    elif isinstance(info, inspect.UnionType):
        for member in info.types:
            _complete(member, definitions, inspect)
    elif isinstance(info, inspect.EnumType):
        schema = definitions[info.cls.__name__]
        schema["enum"] = [member.value for member in info.cls]
        if all(isinstance(member.value, str) for member in info.cls):
            schema["type"] = "string"
    elif isinstance(info, inspect.StructType):
        properties = definitions[info.cls.__name__]["properties"]
        for field in info.fields:
            schema = properties[field.encode_name]
            _complete(field.type, definitions, inspect)
            if "$ref" in schema:
                continue
            schema["title"] = field.name.replace("_", " ").title()
            if _is_datetime(field.type, inspect):
                schema["format"] = "date-time"
            if schema.get("default", None) in ({}, []):
                del schema["default"]


def _is_datetime(info: Any, inspect: Any) -> bool:
    while isinstance(info, inspect.Metadata):
        info = info.type
    return isinstance(info, inspect.DateTimeType)
