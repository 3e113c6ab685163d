"""The property tier: every Lambda handler fed random and mutated events under moto.

One hypothesis profile for the tier, database-less and derandomized so that CI sees the same
examples on every run. moto is set up once per test (one handler), not per example; each
example only clears the record of AWS calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from moto import mock_aws

from tests.builders import (
    BUS_NAME,
    REGION,
    TABLE_NAME,
    Workload,
    build_workload,
    create_state_machine,
    create_table,
    use_runtime_config,
)

settings.register_profile(
    "property",
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
PROFILE = settings.get_profile("property")

# Operations that read: allowed to every handler, on any input.
READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "Query", "Scan")
# Writes of the audit trail and locks: allowed to every handler, on the recovery table only.
RECORD_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict[str, Any]

    @property
    def reads(self) -> bool:
        return self.operation.startswith(READ_PREFIXES)

    @property
    def writes_record(self) -> bool:
        if self.service != "dynamodb" or self.operation not in RECORD_WRITES:
            return False
        if self.operation == "TransactWriteItems":
            return all(
                next(iter(item.values())).get("TableName") == TABLE_NAME for item in self.params["TransactItems"]
            )
        return self.params.get("TableName") == TABLE_NAME


@dataclass
class CallLog:
    """Every AWS API call a handler made (botocore's before-parameter-build event: the API parameters)."""

    calls: list[Call] = field(default_factory=list)

    def record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(Call(model.service_model.service_id.hyphenize(), model.name, params))

    def clear(self) -> None:
        self.calls.clear()

    def of(self, service: str, operation: str) -> list[Call]:
        return [c for c in self.calls if c.service == service and c.operation == operation]


@dataclass
class Aws:
    """The moto account one property test runs in."""

    calls: CallLog
    topic_arn: str
    state_machine_arn: str
    _workload: Workload | None = None

    @property
    def workload(self) -> Workload:
        """A managed Auto Scaling group behind a target group, built on first use."""
        if self._workload is None:
            self._workload = build_workload()
        return self._workload


def deployment_plans() -> list[dict]:
    """The deployment's plans and guardrails (cdk.json), as the stack ships them to the functions."""
    from tests.conftest import cdk_context

    return cdk_context()["recovery"]["plans"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    """moto with the recovery table, bus, escalation topic and state machine, the environment a
    deployed function gets, and a log of every API call."""
    import boto3

    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        create_table(TABLE_NAME)
        boto3.client("events", region_name=REGION).create_event_bus(Name=BUS_NAME)
        topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="recovery-escalations")["TopicArn"]
        state_machine_arn = create_state_machine()
        for key, value in {
            "TABLE_NAME": TABLE_NAME,
            "EVENT_BUS_NAME": BUS_NAME,
            "ESCALATION_TOPIC_ARN": topic_arn,
            "STATE_MACHINE_ARN": state_machine_arn,
            "CLEANUP_STATE_MACHINE_ARN": state_machine_arn,
            "WORKLOAD_GROUPS": json.dumps({"web-api-asg": "web-api"}),
        }.items():
            monkeypatch.setenv(key, value)
        use_runtime_config(monkeypatch, tmp_path, plans=deployment_plans())
        log = CallLog()
        session = boto3._get_default_session()
        session.events.register("before-parameter-build.*.*", log.record, unique_id="property-call-log")
        try:
            yield Aws(calls=log, topic_arn=topic_arn, state_machine_arn=state_machine_arn)
        finally:
            session.events.unregister("before-parameter-build.*.*", unique_id="property-call-log")


@pytest.fixture(scope="session", autouse=True)
def shared_botocore_loader() -> Iterator[None]:
    """One botocore loader for the tier (see tests/integration/conftest.py): moto gives every
    test a fresh boto3 session, which would parse the service models again."""
    import functools

    from botocore import session

    original = session.create_loader
    session.create_loader = functools.lru_cache(maxsize=None)(original)
    yield
    session.create_loader = original
