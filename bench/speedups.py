"""Speed-ups of moto for fleets of a thousand instances, applied by the idle and storm benches.

They change how fast moto answers, never what it answers (each has a unit test that it answers
as moto does): EC2 look-ups by id (of the API and moto's own, such as attaching a launched
instance's volume) without copying every reservation, an EC2 resource's tags read
from its own entry, DynamoDB transactions that back up only the items they write, DynamoDB
queries that read one partition instead of sorting the whole table, Step Functions definitions
parsed once, and the response serializer's name look-ups remembered. Counts of API calls do not
depend on them; wall times do.

Design: docs/performance.md#4-event-storm
"""

from __future__ import annotations

import contextlib
import copy
import gc
import threading
import types
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from unittest import mock

# Table name -> keys (hash, range) the running transaction writes; set around a transaction.
_written: dict[str, list[tuple[Any, Any]]] = {}
# Per thread: .querying, the (table, hash key or _ANY_ORDER) of the DynamoDB query it runs.
_local = threading.local()
_ANY_ORDER = object()  # a query of an index: it sorts what it finds by every key itself
_WILDCARDS = frozenset("*?[]\\")


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


def _get_instance(backend: Any, instance_id: str) -> Any:
    """moto's get_instance (attaching a launched instance's root volume, its network interface,
    ...: every instance Auto Scaling launches) without copying every reservation to look through
    them all: O(instances) per launch, O(n^2) over a storm's replacements."""
    from moto.ec2.exceptions import InvalidInstanceIdError

    found = _get_instance_by_id(backend, instance_id)
    if found is None:
        raise InvalidInstanceIdError(instance_id)
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


def _tags_of(resource: Any) -> list[dict[str, str]]:
    """moto's TaggedEC2Resource.get_tags: describe_tags filtered on the resource's id, which
    matches every tag of every resource against a pattern (instances ask per instance serialized:
    O(resources) each). fnmatch's pattern of an id without wildcards matches that id only, so the
    answer is its own tags, in moto's order and shape; an id with wildcards is asked as moto does."""
    from moto.ec2.models.tags import EC2_PREFIX_TO_RESOURCE
    from moto.ec2.utils import get_prefix

    resource_id = resource.id
    if not resource_id:
        return []
    if not isinstance(resource_id, str) or _WILDCARDS.intersection(resource_id):
        return resource.ec2_backend.describe_tags(filters={"resource-id": [resource_id]})
    tags = resource.ec2_backend.tags.get(resource_id) or {}
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


def _query_in_scope(original: Any) -> Any:
    """moto's Table.query, telling all_items (below) what it looks for while it runs."""

    def query(table: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        previous = getattr(_local, "querying", None)
        if index_name:
            _local.querying = (table, _ANY_ORDER)
        elif hash_key is not None:
            _local.querying = (table, hash_key)
        try:
            return original(table, hash_key, *args, **kwargs)
        finally:
            _local.querying = previous

    return query


def _all_items_in_scope(original: Any) -> Any:
    """moto's Table.all_items (every item of the table, sorted by key) as a query uses it:
    a query of the table keeps only the items whose hash key is the one asked and sorts them by
    range key, so its partition alone (in any order) leaves it the same items in the same order;
    a query of an index keeps the items matching its conditions and sorts them by the index's
    keys and the table's (unique per item), so the table's own order is not needed. Outside a
    query (a scan, an export), every item sorted, as moto does. Without this a query sorted the
    whole table: O(n log n) per query, O(n^2 log n) over a storm."""

    def all_items(table: Any) -> list[Any]:
        scope = getattr(_local, "querying", None)
        if scope is None or scope[0] is not table:
            return original(table)
        if scope[1] is _ANY_ORDER:
            if table.range_key_attr:
                return [item for partition in table.items.values() for item in partition.values()]
            return list(table.items.values())
        partition = table.items.get(scope[1])
        if partition is None:
            return []
        return list(partition.values()) if table.range_key_attr else [partition]

    return all_items


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
def frozen_heap() -> Iterator[None]:
    """Python's cyclic garbage collector, blind to what exists when the block begins: a storm's
    emulator, fleet, moto models and imported modules (about 800,000 objects) were walked by
    every full collection (0.45 s each at 100 impaired, 0.8 s at 300: 13 to 16 % of a storm's
    CPU). Objects made in the block are collected as before, and the frozen ones are given back
    to the collector when it ends. What runs, and what moto answers, do not change: the
    collector only frees cycles nothing can reach."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def faster_moto() -> Iterator[None]:
    import xmltodict
    from moto.core import serialize
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models.table import Table
    from moto.ec2.models.core import TaggedEC2Resource
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
        mock.patch.object(InstanceBackend, "get_instance", _get_instance),
        mock.patch.object(InstanceBackend, "get_multi_instances_by_id", _get_multi_instances_by_id),
        mock.patch.object(dynamodb_models, "copy", copier),
        mock.patch.object(dynamodb_models.DynamoDBBackend, "transact_write_items", transact_write_items),
        mock.patch.object(Table, "query", _query_in_scope(Table.query)),
        mock.patch.object(Table, "all_items", _all_items_in_scope(Table.all_items)),
        mock.patch.object(TaggedEC2Resource, "get_tags", _tags_of),
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
