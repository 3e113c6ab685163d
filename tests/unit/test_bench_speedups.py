"""The storm's moto speed-ups answer as moto does: each scenario runs under moto alone, then
under bench.speedups.faster_moto, and the answers must be equal."""

from __future__ import annotations

from typing import Any

import pytest


def _queries() -> list[Any]:
    """Queries of a table with a range key and an index, and of one without a range key: a
    partition, a range condition, a page and the next, backwards, a filter, an index, an empty
    and a deleted partition; then a scan (every item, sorted by moto)."""
    import boto3
    from moto import mock_aws

    seen: list[Any] = []
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "GSI1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(
            TableName="h",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # written out of key order, in several partitions, two workloads on the index
        for n in (7, 2, 9, 0, 5, 3):
            for pk in ("IMPAIRMENT#b", "IMPAIRMENT#a", "LOCK#x"):
                item = {"pk": {"S": pk}, "sk": {"S": f"s{n}"}, "n": {"N": str(n)}}
                if pk.startswith("IMPAIRMENT"):
                    item |= {"gsi1pk": {"S": f"W#{n % 2}"}, "gsi1sk": {"S": f"t{n}"}}
                ddb.put_item(TableName="t", Item=item)
            ddb.put_item(TableName="h", Item={"pk": {"S": f"k{n}"}, "n": {"N": str(n)}})
        ddb.delete_item(TableName="t", Key={"pk": {"S": "LOCK#x"}, "sk": {"S": "s9"}})
        for n in (0, 2, 3, 5, 7, 9):
            ddb.delete_item(TableName="t", Key={"pk": {"S": "GONE"}, "sk": {"S": f"s{n}"}})

        def query(**kwargs: Any) -> Any:
            out = ddb.query(TableName=kwargs.pop("table", "t"), **kwargs)
            return out["Items"], out.get("LastEvaluatedKey"), out["Count"], out["ScannedCount"]

        a = {":p": {"S": "IMPAIRMENT#a"}}
        seen.append(query(KeyConditionExpression="pk = :p", ExpressionAttributeValues=a))
        seen.append(
            query(
                KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues=a | {":lo": {"S": "s2"}, ":hi": {"S": "s7"}},
            )
        )
        first = query(KeyConditionExpression="pk = :p", ExpressionAttributeValues=a, Limit=2)
        seen.append(first)
        seen.append(
            query(KeyConditionExpression="pk = :p", ExpressionAttributeValues=a, Limit=2, ExclusiveStartKey=first[1])
        )
        seen.append(query(KeyConditionExpression="pk = :p", ExpressionAttributeValues=a, ScanIndexForward=False))
        seen.append(
            query(
                KeyConditionExpression="pk = :p",
                FilterExpression="n > :three",
                ExpressionAttributeValues={":p": {"S": "LOCK#x"}, ":three": {"N": "3"}},
            )
        )
        for workload in ("W#0", "W#1"):
            seen.append(
                query(
                    IndexName="GSI1",
                    KeyConditionExpression="gsi1pk = :w",
                    ExpressionAttributeValues={":w": {"S": workload}},
                )
            )
        seen.append(
            query(
                IndexName="GSI1",
                KeyConditionExpression="gsi1pk = :w AND gsi1sk >= :t",
                ExpressionAttributeValues={":w": {"S": "W#1"}, ":t": {"S": "t5"}},
                ScanIndexForward=False,
                Limit=3,
            )
        )
        for pk in ("NOPE", "GONE"):
            seen.append(query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}}))
        seen.append(query(table="h", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "k5"}}))
        seen.append(ddb.scan(TableName="t")["Items"])
        seen.append(ddb.scan(TableName="h")["Items"])
    return seen


def test_the_partition_query_answers_as_moto_does():
    from bench.speedups import faster_moto

    reference = _queries()
    with faster_moto():
        faster = _queries()

    assert faster == reference
    assert [i["sk"]["S"] for i in faster[0][0]] == ["s0", "s2", "s3", "s5", "s7", "s9"]
    assert [i["sk"]["S"] for i in faster[4][0]] == ["s9", "s7", "s5", "s3", "s2", "s0"]
    assert [i["sk"]["S"] for i in faster[2][0] + faster[3][0]] == ["s0", "s2", "s3", "s5"]
    assert {i["pk"]["S"] for i in faster[6][0]} == {"IMPAIRMENT#a", "IMPAIRMENT#b"}
    assert faster[9][0] == [] and faster[10][0] == []
    assert [i["pk"]["S"] for i in faster[-1]] == sorted(f"k{n}" for n in (7, 2, 9, 0, 5, 3))


def test_a_query_reads_only_its_partition_and_a_scan_still_sees_every_item():
    """The point of the speed-up, and where it stops: inside a table query all_items is one
    partition; outside (a scan, or a query of another table) it is the whole table, sorted."""
    from moto.dynamodb.models.table import Table

    from bench import speedups

    seen: dict[str, Any] = {}

    def spy(original: Any) -> Any:
        def all_items(table: Any) -> list[Any]:
            items = original(table)
            seen.setdefault(table.name, []).append([(i.hash_key.value, i.range_key.value) for i in items])
            return items

        return all_items

    import boto3
    from moto import mock_aws

    with speedups.faster_moto(), mock_aws():
        Table.all_items = spy(Table.all_items)  # restored by faster_moto's patch on exit
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            BillingMode="PAY_PER_REQUEST",
        )
        for pk in ("b", "a"):
            for sk in ("2", "1"):
                ddb.put_item(TableName="t", Item={"pk": {"S": pk}, "sk": {"S": sk}})
        ddb.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "b"}})
        ddb.scan(TableName="t")
    assert {hash_key for hash_key, _ in seen["t"][0]} == {"b"}
    assert seen["t"][1] == [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]


def _tags() -> list[Any]:
    """Tags of instances as DescribeInstances shows them, and DescribeTags with filters."""
    import boto3
    from moto import mock_aws

    seen: list[Any] = []
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        ids = [
            i["InstanceId"]
            for i in ec2.run_instances(
                ImageId="ami-12c6146b",
                MinCount=3,
                MaxCount=3,
                TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "b", "Value": "1"}]}],
            )["Instances"]
        ]
        ec2.create_tags(Resources=[ids[0]], Tags=[{"Key": "a", "Value": "2"}, {"Key": "Name", "Value": "x"}])
        ec2.delete_tags(Resources=[ids[1]], Tags=[{"Key": "b"}])
        vpc = ec2.create_vpc(
            CidrBlock="10.0.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "v", "Value": "1"}]}]
        )["Vpc"]
        seen.append(vpc["Tags"])
        for reservation in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            seen.extend((ids.index(i["InstanceId"]), i.get("Tags")) for i in reservation["Instances"])
        seen.append(ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [ids[0]]}])["Tags"])
        seen.append(ec2.describe_tags(Filters=[{"Name": "key", "Values": ["b"]}])["Tags"])
        seen.append(ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"][0]["Tags"])
    return seen


def test_an_instances_own_tags_are_the_ones_moto_finds():
    from bench.speedups import faster_moto

    reference = _tags()
    with faster_moto():
        faster = _tags()

    # ids differ between the runs (moto draws them); compare the tags in their order
    def shape(seen: list[Any]) -> list[Any]:
        out = []
        for entry in seen:
            if isinstance(entry, tuple):
                out.append(entry)
            else:
                out.append([(t["Key"], t["Value"], t.get("ResourceType")) for t in entry])
        return out

    assert shape(faster) == shape(reference)
    assert (0, [{"Key": "b", "Value": "1"}, {"Key": "a", "Value": "2"}, {"Key": "Name", "Value": "x"}]) in faster
    assert (1, None) in faster, "an instance whose only tag was deleted shows none"


def test_a_resource_id_with_wildcards_is_matched_as_moto_matches_it():
    """Not an id moto makes, but get_tags must not answer a pattern with one entry's tags."""
    from types import SimpleNamespace

    from bench import speedups

    calls = []
    backend = SimpleNamespace(
        tags={"i-1": {"k": "v"}, "i-2": {"k": "w"}},
        describe_tags=lambda filters: calls.append(filters) or ["moto's answer"],
    )
    assert speedups._tags_of(SimpleNamespace(id="i-*", ec2_backend=backend)) == ["moto's answer"]
    assert calls == [{"resource-id": ["i-*"]}]
    assert speedups._tags_of(SimpleNamespace(id="i-2", ec2_backend=backend)) == [
        {"resource_id": "i-2", "key": "k", "value": "w", "resource_type": "instance"}
    ]
    assert speedups._tags_of(SimpleNamespace(id="", ec2_backend=backend)) == []


@pytest.mark.parametrize("index_name", [None, "GSI1"])
def test_the_query_scope_is_cleared_when_moto_raises(index_name):
    """A query that fails (a bad index name, say) leaves no scope behind for the next all_items."""
    from bench import speedups

    def failing(table: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        assert speedups._local.querying is not None
        raise ValueError("bad index")

    query = speedups._query_in_scope(failing)
    with pytest.raises(ValueError):
        query(object(), "h", None, [], None, None, True, None, index_name=index_name)
    assert getattr(speedups._local, "querying", None) is None


def test_the_frozen_heap_still_collects_cycles_made_in_it_and_thaws_after():
    import gc
    import weakref

    from bench.speedups import frozen_heap

    class Node:
        pass

    before = Node()
    before.me = before  # a cycle from before the block, still reachable when it begins
    seen_before = weakref.ref(before)
    holder = [before]
    del before
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        holder.clear()  # unreachable now, but frozen: not collected inside the block
        made = Node()
        made.me = made
        seen_made = weakref.ref(made)
        del made
        gc.collect()
        assert seen_made() is None, "a cycle made in the block is collected as before"
        assert seen_before() is not None, "what existed before is out of the collector's sight"
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert seen_before() is None, "given back to the collector afterwards"
