"""One RDS DB instance, DB cluster or Aurora global database (rds:DescribeDBInstances,
DescribeDBClusters, DescribeGlobalClusters), for the database failovers and for Verify. An
identifier RDS does not know fails the call (DBInstanceNotFound, DBClusterNotFoundFault,
GlobalClusterNotFoundFault): a PermanentError."""

from __future__ import annotations

from typing import Any

from core import aws
from core.errors import PermanentError


def db_instance(client: Any, identifier: str) -> dict[str, Any]:
    found = aws.call(client, "describe_db_instances", DBInstanceIdentifier=identifier)["DBInstances"]
    if not found:
        raise PermanentError(f"DB instance {identifier!r} does not exist", db_instance=identifier)
    return found[0]


def db_cluster(client: Any, identifier: str) -> dict[str, Any]:
    found = aws.call(client, "describe_db_clusters", DBClusterIdentifier=identifier)["DBClusters"]
    if not found:
        raise PermanentError(f"DB cluster {identifier!r} does not exist", db_cluster=identifier)
    return found[0]


def global_cluster(client: Any, identifier: str) -> dict[str, Any]:
    """An Aurora global database (rds:DescribeGlobalClusters): its members, which is the writer
    (GlobalClusterMembers[].IsWriter) and its Status. An identifier RDS does not know fails the
    call (GlobalClusterNotFoundFault): a PermanentError."""
    found = aws.call(client, "describe_global_clusters", GlobalClusterIdentifier=identifier)["GlobalClusters"]
    if not found:
        raise PermanentError(f"global database {identifier!r} does not exist", global_cluster=identifier)
    return found[0]
