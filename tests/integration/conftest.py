"""Fixtures of the integration tier: handlers run in process against moto."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from core.contract import ImpairmentType
from core.store import RecoveryStore
from tests.builders import BUS_NAME, TABLE_NAME, create_table, use_runtime_config
from tests.integration.iam_simulation import iam_simulation  # noqa: F401 - moto has no IAM policy simulation


@pytest.fixture
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # moto would otherwise register tens of thousands of public AMIs in every test; the
    # workloads here launch from a launch template and never look an AMI up.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    INSTANCE_REFRESHES.clear()
    import boto3

    build, call = "before-parameter-build.auto-scaling.DescribeInstanceRefreshes", _REFRESHES_CALL
    with mock_aws():  # it starts a new default session: the hooks go on that one
        session = boto3._get_default_session()
        session.events.register(build, _remember_group, "refreshes-params")
        session.events.register(call, _instance_refreshes, "refreshes")
        try:
            yield
        finally:
            session.events.unregister(build, unique_id="refreshes-params")
            session.events.unregister(call, unique_id="refreshes")


# moto has no instance refreshes: DescribeInstanceRefreshes answers these (group -> refreshes, as
# the real API shows them, newest first); a test sets them through the `instance_refreshes` fixture.
INSTANCE_REFRESHES: dict[str, list[dict[str, Any]]] = {}


_REFRESHES_CALL = "before-call.auto-scaling.DescribeInstanceRefreshes"


def _remember_group(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    context["refresh_group"] = params.get("AutoScalingGroupName")


def _instance_refreshes(context: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    group = context.get("refresh_group")
    meta = {"HTTPStatusCode": 200, "RequestId": "test"}
    return AWSResponse("https://test", 200, {}, None), {
        "InstanceRefreshes": INSTANCE_REFRESHES.get(group, []),
        "ResponseMetadata": meta,
    }


@pytest.fixture
def instance_refreshes(mocked_aws: None) -> dict[str, list[dict[str, Any]]]:
    return INSTANCE_REFRESHES


@pytest.fixture
def store(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> RecoveryStore:
    """The recovery table in moto, named in TABLE_NAME as the stack does."""
    create_table(TABLE_NAME)
    monkeypatch.setenv("TABLE_NAME", TABLE_NAME)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    return RecoveryStore(TABLE_NAME)


class FrozenClock:
    """Replaces core.clock.utc_now: time moves only when a test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    from core import clock

    frozen = FrozenClock(clock.utc_now().replace(microsecond=0))
    monkeypatch.setattr(clock, "utc_now", frozen)
    return frozen


@pytest.fixture(scope="session", autouse=True)
def shared_botocore_loader() -> Iterator[None]:
    """moto gives every test a fresh boto3 session, and each session would parse the service
    models again (most of this tier's run time). One loader, with its caches, serves them all."""
    import functools

    from botocore import session

    original = session.create_loader
    session.create_loader = functools.lru_cache(maxsize=None)(original)
    yield
    session.create_loader = original


@pytest.fixture
def dynamodb_calls(store: RecoveryStore) -> list[str]:
    """The DynamoDB operations the functions call from now on, in order (the store's client and
    every function's are core.aws's one client)."""
    calls: list[str] = []
    store._db.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


@pytest.fixture
def item_writes(store: RecoveryStore) -> Counter:
    """Writes requested per item ("pk / sk") from now on, as the storm bench counts them
    (bench/hot_items.py: a refused conditional write and every item of a cancelled transaction
    count; a transaction's ConditionCheck does not)."""
    from bench.hot_items import ItemWrites

    counted = ItemWrites()

    def record(params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        counted.record(model.name, params)

    store._db.client.meta.events.register("provide-client-params.dynamodb.*", record)
    return counted.writes


@pytest.fixture
def aws_calls(mocked_aws: None) -> Iterator[list[str]]:
    """Every AWS call ("service:Operation") the functions make from now on, in order: counted on
    the default session, whose hooks the clients core.aws makes from now on take."""
    import boto3

    from core import aws

    calls: list[str] = []
    session = boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION
    session.events.register(
        "before-call.*.*",
        lambda model, **_: calls.append(f"{model.service_model.service_id.hyphenize()}:{model.name}"),
        unique_id="tests-aws-calls",
    )
    aws.reset()
    yield calls
    session.events.unregister("before-call.*.*", unique_id="tests-aws-calls")
    aws.reset()


@pytest.fixture
def any_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """A plan for every impairment (one scale-out): Admit chooses the plan as it admits, so a test
    that admits and is not about plans deploys this one."""
    plan = {"name": "scale-out", "match": {"impairment_types": [t.value for t in ImpairmentType]}}
    use_runtime_config(monkeypatch, tmp_path, plans=[{**plan, "steps": [{"action": "scale_out"}]}])
