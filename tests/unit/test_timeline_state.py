"""The drill's final state as a person checks it: where the writer is, which EKS nodes serve."""

from __future__ import annotations

from recoveryctl.timeline import describe_state


def test_the_global_databases_writer_and_the_eks_nodes_are_described():
    state = {
        "global_database": {
            "writer": "arn:aws:rds:us-west-2:123456789012:cluster:standby-db",
            "writer_region": "us-west-2",
            "status": "available",
        },
        "eks": {
            "cluster": "shop",
            "nodegroup": "workers",
            "desired_size": 2,
            "nodes": {
                "node-a": {"instance": "i-a", "ready": True, "cordoned": False},
                "node-b": {"instance": "i-b", "ready": False, "cordoned": True},
            },
        },
    }
    lines = describe_state(None, state)
    writer = "arn:aws:rds:us-west-2:123456789012:cluster:standby-db"
    assert f"global database writer in us-west-2: {writer} (available)" in lines
    assert "EKS shop/workers: 1 of 2 nodes Ready (desired 2), node-a i-a, node-b i-b NotReady cordoned" in lines


def test_the_standby_read_replica_is_described_as_a_replica_of_its_source_then_as_promoted():
    replica = {"db_instance": "web-api-replica", "region": "us-west-2", "status": "available"}
    source = "arn:aws:rds:us-east-1:123456789012:db:web-api-db"

    before = describe_state(None, {"read_replica": {**replica, "source": source}})
    after = describe_state(None, {"read_replica": {**replica, "source": None}})

    assert f"DB instance web-api-replica in us-west-2: read replica of {source} (available)" in before
    assert "DB instance web-api-replica in us-west-2: promoted, standalone, takes writes (available)" in after
