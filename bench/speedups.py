"""Speed-ups of moto for fleets of a thousand instances, applied by the idle and storm benches.

They change how fast moto answers, never what it answers (each has a unit test that it answers
as moto does): EC2 look-ups by id without copying every reservation, DynamoDB transactions that
back up only the items they write, Step Functions definitions parsed once, and the response
serializer's name look-ups remembered. Counts of API calls do not depend on them; wall times do.

Design: docs/performance.md#4-event-storm
"""

from __future__ import annotations

import contextlib
import copy
import types
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from unittest import mock

# Table name -> keys (hash, range) the running transaction writes; set around a transaction.
_written: dict[str, list[tuple[Any, Any]]] = {}


def _get_instance_by_id(backend: Any, instance_id: str) -> Any:
    """moto's look-up of one instance, from an index of the backend's instances: moto only ever
    adds reservations and instances (a terminated instance stays in its reservation), so an
    instance once found stays the answer; an id not in the index is looked for again among all of
    them (the index rebuilt), as moto looks. The load balancer asks once or twice per target."""
    index = backend.__dict__.get("_bench_instance_index")
    if index is None or index[0] is not backend.reservations:
        index = (backend.reservations, {})
        backend.__dict__["_bench_instance_index"] = index
    found = index[1].get(instance_id)
    if found is None:
        index[1].clear()
        index[1].update((i.id, i) for reservation in list(backend.reservations.values()) for i in reservation.instances)
        found = index[1].get(instance_id)
    return found


def _get_multi_instances_by_id(backend: Any, instance_ids: list[str], filters: Any = None) -> list[Any]:
    """moto's, without copying every reservation to find them (DescribeInstanceStatus and
    DescribeInstances of a few ids, a storm's recoveries make thousands)."""
    from moto.ec2.exceptions import InvalidInstanceIdError

    found = [_get_instance_by_id(backend, i) for i in instance_ids]
    missing = [i for i, instance in zip(instance_ids, found, strict=True) if instance is None]
    if missing:
        raise InvalidInstanceIdError(missing)
    return [instance for instance in found if instance.applies(filters)]


def _cached_possible_keys(original: Any, known: list[Any], cache: dict[tuple[Any, ...], list[str]]) -> Any:
    """moto's XFormedAttributePicker.get_possible_keys (the attribute names a response member may
    be found under), remembered per object type, member name, shape and parent shape: the alias
    providers moto ships decide on nothing else (an object with its own Meta aliases, or a picker
    with other providers, is asked as moto does)."""
    no_parent = object()

    def get_possible_keys(picker: Any, context: Any) -> Any:
        obj, shape = context.obj, context.shape
        if picker.alias_providers is not known or hasattr(obj, "Meta"):
            return original(picker, context)
        key = (type(obj), context.key, shape, getattr(shape, "parent", no_parent))
        keys = cache.get(key)
        if keys is None:
            keys = cache[key] = list(original(picker, context))
        return keys

    return get_possible_keys


def _remembered_valid_names(original: Any) -> Any:
    """xmltodict's check of an XML element or attribute name (it looks at every character, for
    every element of every response: a third of writing a 300-instance group out), done once per
    name that passes; a name that fails is checked, and fails, every time as before."""
    valid: set[tuple[str, str]] = set()

    def validate_name(value: Any, kind: str) -> None:
        if isinstance(value, str) and (value, kind) in valid:
            return
        original(value, kind)
        if isinstance(value, str):
            valid.add((value, kind))

    return validate_name


def _backup(table: Any, keys: list[tuple[Any, Any]]) -> Any:
    """What moto's deepcopy of the table is for a transaction's rollback, copying only what the
    transaction may change: the index of items, and the items it writes."""
    backup = copy.copy(table)
    backup.items = defaultdict(dict, table.items)
    for hash_key, range_key in keys:
        if table.has_range_key:
            inner = dict(table.items.get(hash_key, {}))
            if range_key in inner:
                inner[range_key] = copy.deepcopy(inner[range_key])
            backup.items[hash_key] = inner
        elif hash_key in table.items:
            backup.items[hash_key] = copy.deepcopy(table.items[hash_key])
    return backup


def _deepcopy(value: Any, memo: Any = None) -> Any:
    from moto.dynamodb.models.table import Table

    if isinstance(value, Table) and value.name in _written:
        return _backup(value, _written[value.name])
    return copy.deepcopy(value, memo)


def _keys_written(backend: Any, transact_items: list[dict[str, Any]]) -> dict[str, list[tuple[Any, Any]]]:
    """Per table, the keys a transaction writes; a table whose keys cannot be told is left out
    (moto's own full copy backs it up)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    written: dict[str, list[tuple[Any, Any]]] = {}
    unknown: set[str] = set()
    for item in transact_items:
        op_type, op = next(iter(item.items()))
        table = backend.tables.get(op.get("TableName"))
        if table is None:
            continue
        attrs = op.get("Item") if op_type == "Put" else op.get("Key")
        try:
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = DynamoType(attrs[table.range_key_attr]) if table.has_range_key else None
        except (KeyError, TypeError):
            unknown.add(table.name)
            continue
        written.setdefault(table.name, []).append((hash_key, range_key))
    return {name: keys for name, keys in written.items() if name not in unknown}


def _cached_parse(original: Any, trees: dict[str, Any]) -> Any:
    """moto's AmazonStateLanguageParser.parse, each definition's ANTLR tree parsed once (by moto,
    which rejects a definition with syntax errors as before): the Preprocessor then builds fresh
    evaluation components from the tree for every execution, as moto's parse does (they hold
    per-execution state; the tree is only read to build them)."""
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    def parse(definition: str) -> tuple[Any, Any]:
        tree = trees.get(definition)
        if tree is None:
            program, tree = original(definition)
            trees[definition] = tree
            return program, tree
        return Preprocessor().visit(tree), tree

    return parse


@contextlib.contextmanager
def faster_moto() -> Iterator[None]:
    import xmltodict
    from moto.core import serialize
    from moto.dynamodb import models as dynamodb_models
    from moto.ec2.models.instances import InstanceBackend
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original_transact = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        _written.update(_keys_written(backend, transact_items))
        try:
            return original_transact(backend, transact_items)
        finally:
            _written.clear()

    copier = types.SimpleNamespace(deepcopy=_deepcopy, copy=copy.copy)
    with (
        mock.patch.object(InstanceBackend, "get_instance_by_id", _get_instance_by_id),
        mock.patch.object(InstanceBackend, "get_multi_instances_by_id", _get_multi_instances_by_id),
        mock.patch.object(dynamodb_models, "copy", copier),
        mock.patch.object(dynamodb_models.DynamoDBBackend, "transact_write_items", transact_write_items),
        mock.patch.object(
            AmazonStateLanguageParser, "parse", staticmethod(_cached_parse(AmazonStateLanguageParser.parse, {}))
        ),
        mock.patch.object(
            serialize.XFormedAttributePicker,
            "get_possible_keys",
            _cached_possible_keys(
                serialize.XFormedAttributePicker.get_possible_keys, serialize.DEFAULT_ALIAS_PROVIDERS, {}
            ),
        ),
        mock.patch.object(xmltodict, "_validate_name", _remembered_valid_names(xmltodict._validate_name)),
    ):
        yield
