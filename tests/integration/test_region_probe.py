"""The region probe's handler under moto, run as the standby region's (us-west-2) function: the
workloads' groups in their own regions, the recovery table and bus in us-west-2, and the primary
region made to fail by a botocore hook that answers its Auto Scaling calls with what an impaired
region gives (no connection, a connection reset, a timeout, HTTP 5xx) or with a refusal
(AccessDenied, throttling)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from core import runtime_config
from core.contract import (
    CLEARED,
    DETECTED,
    ImpairmentCleared,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    make_impairment_id,
)
from core.errors import InvalidInput
from core.store import RecoveryStore
from detectors import region_probe
from tests import builders
from tests.builders import BUS_NAME, TABLE_NAME, capture_bus, create_table, received, scheduled_event
from tests.emf import datapoints, named

PRIMARY, STANDBY, OTHER = "us-east-1", "us-west-2", "eu-west-1"
STANDBY_TG = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/web-api-standby/0123456789abcdef"


def probe(workload: str = "web-api", region: str = PRIMARY, failures: int = 3, **extra: Any) -> dict[str, Any]:
    """A probe as the standby region's runtime configuration carries it."""
    return {
        "workload": workload,
        "region": region,
        "auto_scaling_group": f"{workload}-asg",
        "failures_to_impair": failures,
        "standby": {
            "region": STANDBY,
            "auto_scaling_group": f"{workload}-standby",
            "desired_capacity": 4,
            "target_group_arn": STANDBY_TG,
        },
        "dns": {
            "hosted_zone_id": "Z0EXAMPLE0WEBAPI",
            "record_name": "api.example.com",
            "record_type": "A",
            "primary_set_identifier": "web-api-primary",
            "secondary_set_identifier": "web-api-standby",
        },
        **extra,
    }


@dataclass
class RegionFault:
    """What the Auto Scaling API of each faulty region answers: an exception to raise, or an
    (HTTP status, error code) to return; regions not listed answer normally (moto)."""

    faults: dict[str, Any] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        region = params["url"].split("://", 1)[1].split(".")[1]
        self.calls.append(region)
        fault = self.faults.get(region)
        if fault is None:
            return None
        if isinstance(fault, Exception):
            raise fault
        status, code = fault
        return (
            AWSResponse(params["url"], status, {}, None),
            {"Error": {"Code": code, "Message": f"{code} in {region}"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        )


CONNECTION_FAILURES = {
    "no connection": lambda: EndpointConnectionError(endpoint_url=f"https://autoscaling.{PRIMARY}.amazonaws.com/"),
    "connect timeout": lambda: ConnectTimeoutError(endpoint_url=f"https://autoscaling.{PRIMARY}.amazonaws.com/"),
    "read timeout": lambda: ReadTimeoutError(endpoint_url=f"https://autoscaling.{PRIMARY}.amazonaws.com/"),
    "connection reset": lambda: ConnectionClosedError(endpoint_url=f"https://autoscaling.{PRIMARY}.amazonaws.com/"),
    "503": lambda: (503, "ServiceUnavailable"),
    "500": lambda: (500, "InternalFailure"),
}


@dataclass
class Standby:
    """The standby region's deployment of the probe, and the fault injector."""

    fault: RegionFault
    bus: str
    store: RecoveryStore
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Any
    ticks: int = 0

    def configure(self, *probes: dict[str, Any]) -> None:
        path = self.tmp_path / runtime_config.FILE_NAME
        path.write_text(runtime_config.build([], {}, {}, list(probes)).to_json())
        self.monkeypatch.setenv(runtime_config.ENV, str(path))

    def run(self, lambda_context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """One tick of the schedule (each with its own event id, as EventBridge gives)."""
        self.ticks += 1
        if event is None:
            event = {**scheduled_event(), "id": f"tick-{self.ticks}", "region": STANDBY}
        return region_probe.handler(event, lambda_context)

    def detected(self) -> list[ImpairmentDetected]:
        return [ImpairmentDetected.model_validate(e["detail"]) for e in self.events(DETECTED)]

    def events(self, detail_type: str) -> list[dict[str, Any]]:
        return [e for e in received(self.bus) if e["detail-type"] == detail_type]


def make_group(region: str, name: str) -> None:
    """An Auto Scaling group in a region (moto)."""
    ec2 = boto3.client("ec2", region_name=region)
    ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    boto3.client("autoscaling", region_name=region).create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        AvailabilityZones=[f"{region}a"],
    )


@pytest.fixture
def standby(mocked_aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, frozen_clock: Any) -> Iterator[Standby]:
    # The function runs in the standby region: its table replica and bus are there.
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, STANDBY)
    monkeypatch.setattr(builders, "REGION", STANDBY)
    create_table(TABLE_NAME)
    bus = capture_bus(BUS_NAME)
    monkeypatch.setenv("TABLE_NAME", TABLE_NAME)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS_NAME)
    make_group(PRIMARY, "web-api-asg")
    make_group(OTHER, "shop-asg")
    fault = RegionFault()
    session = boto3._get_default_session()
    session.events.register("before-call.auto-scaling.DescribeAutoScalingGroups", fault, unique_id="region-fault")
    try:
        yield Standby(fault, bus, RecoveryStore(TABLE_NAME), monkeypatch, tmp_path)
    finally:
        session.events.unregister("before-call.auto-scaling.DescribeAutoScalingGroups", unique_id="region-fault")


def probe_item(workload: str = "web-api", region: str = PRIMARY) -> dict[str, Any] | None:
    return RecoveryStore(TABLE_NAME).get_probe(workload, region)


# --- failures counted to the threshold ---


@pytest.mark.parametrize("failure", sorted(CONNECTION_FAILURES))
def test_three_failed_probes_of_the_primary_region_are_one_region_impairment(
    standby, lambda_context, frozen_clock, failure
):
    # Given web-api's region fails every probe from its standby region
    standby.configure(probe())
    standby.fault.faults[PRIMARY] = CONNECTION_FAILURES[failure]()
    first_failure = frozen_clock.now

    # When the probe runs twice: counted, nothing published
    for expected in (1, 2):
        assert standby.run(lambda_context)["probes"]["web-api@us-east-1"] == {"status": "failing", "failures": expected}
        frozen_clock.advance(60)
    assert standby.events(DETECTED) == []
    assert standby.fault.calls == [PRIMARY, PRIMARY]  # in the primary region, nowhere else

    # Then the third failure publishes one critical region_impairment, timed from the first failure
    response = standby.run(lambda_context)
    (impairment,) = standby.detected()
    expected_id = make_impairment_id(
        "web-api", "recovery.region-probe", "region-probe/us-east-1/web-api", first_failure
    )
    assert response["detected"] == [expected_id] == [impairment.impairment_id]
    assert impairment.impairment_type is ImpairmentType.REGION_IMPAIRMENT
    assert impairment.severity is Severity.CRITICAL
    assert impairment.workload == "web-api"
    assert [(r.resource_type, r.resource_id) for r in impairment.affected_resources] == [
        ("region:workload", "us-east-1/web-api")
    ]
    assert impairment.signal.source == "recovery.region-probe"
    assert impairment.signal.id == "region-probe/us-east-1/web-api"
    assert impairment.signal.signal_time == first_failure
    assert impairment.mttd_seconds == 120
    assert impairment.metrics == {"consecutive_failures": 3.0}
    assert impairment.account_id is None
    assert "us-east-1" in impairment.description and "3 consecutive failed probes" in impairment.description
    assert impairment.scope == {
        "impaired_region": PRIMARY,
        "standby_region": STANDBY,
        "primary_auto_scaling_group": "web-api-asg",
        "auto_scaling_group": "web-api-standby",
        "standby_auto_scaling_group": "web-api-standby",
        "standby_desired_capacity": "4",
        "target_group_arn": STANDBY_TG,
        "dns_hosted_zone_id": "Z0EXAMPLE0WEBAPI",
        "dns_record_name": "api.example.com",
        "dns_record_type": "A",
        "dns_primary_set": "web-api-primary",
        "dns_secondary_set": "web-api-standby",
    }

    # And while the outage lasts, the same impairment (same id), not published again
    frozen_clock.advance(60)
    again = standby.run(lambda_context)["probes"]["web-api@us-east-1"]
    assert again == {"status": "impaired", "failures": 4, "impairment_id": expected_id}
    assert standby.events(DETECTED) == []
    item = probe_item()
    assert (item["failures"], item["impairment_id"]) == (4, expected_id)
    assert item["first_failure_at"] == first_failure.isoformat()


def test_an_impairment_whose_publication_failed_is_published_on_the_next_probe_with_the_same_id(
    standby, lambda_context, frozen_clock, monkeypatch
):
    standby.configure(probe(failures=1))
    standby.fault.faults[PRIMARY] = (503, "ServiceUnavailable")
    # Given the bus refuses the first publication
    from core.errors import PublishError
    from core.publisher import EventPublisher

    original = EventPublisher.publish
    attempts: list[int] = []

    def refuse_once(self: Any, detail_type: str, details: list[Any]) -> int:
        attempts.append(len(details))
        if len(attempts) == 1:
            raise PublishError("1 of 1 events were not accepted", failed=[])
        return original(self, detail_type, details)

    monkeypatch.setattr(EventPublisher, "publish", refuse_once)
    first_failure = frozen_clock.now
    first = standby.run(lambda_context)["probes"]["web-api@us-east-1"]
    assert first["status"] == "error" and "PublishError" in first["error"]
    assert standby.events(DETECTED) == []

    # When the next probe fails too, Then it is published, under the id of the first failure
    frozen_clock.advance(60)
    standby.run(lambda_context)
    (impairment,) = standby.detected()
    assert impairment.signal.signal_time == first_failure
    assert impairment.mttd_seconds == 60
    assert impairment.metrics == {"consecutive_failures": 2.0}
    assert probe_item()["impairment_id"] == impairment.impairment_id


def test_a_redelivered_tick_counts_once(standby, lambda_context):
    standby.configure(probe())
    standby.fault.faults[PRIMARY] = EndpointConnectionError(endpoint_url="https://autoscaling.us-east-1.amazonaws.com")
    tick = {**scheduled_event(), "id": "same-tick", "region": STANDBY}
    for _ in range(3):
        standby.run(lambda_context, tick)
    assert probe_item()["failures"] == 1
    assert standby.events(DETECTED) == []


# --- what is not a region failure ---


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDenied"), (400, "ValidationError"), (400, "Throttling")])
def test_a_refusal_is_logged_as_an_error_neither_counted_nor_resetting(
    standby, lambda_context, frozen_clock, capsys, status, code
):
    standby.configure(probe())
    # Given two failures counted
    standby.fault.faults[PRIMARY] = (503, "ServiceUnavailable")
    standby.run(lambda_context)
    frozen_clock.advance(60)
    standby.run(lambda_context)

    # When the region answers with a refusal
    standby.fault.faults[PRIMARY] = (status, code)
    frozen_clock.advance(60)
    capsys.readouterr()
    outcome = standby.run(lambda_context)["probes"]["web-api@us-east-1"]

    # Then it is not counted, and the count stays
    assert outcome["status"] == "refused" and code in outcome["error"]
    # And it is counted as a refusal (its own alarm), not with the probe's other errors
    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "RegionProbeRefused")] == [1.0]
    assert named(points, "RegionProbeErrors") == named(points, "RegionProbeFailed") == []
    assert probe_item()["failures"] == 2
    assert standby.events(DETECTED) == []

    # And the next failure is the third
    standby.fault.faults[PRIMARY] = (503, "ServiceUnavailable")
    frozen_clock.advance(60)
    standby.run(lambda_context)
    (impairment,) = standby.detected()
    assert impairment.metrics == {"consecutive_failures": 3.0}


def test_a_success_before_the_threshold_resets_the_count(standby, lambda_context, frozen_clock):
    standby.configure(probe())
    standby.fault.faults[PRIMARY] = (503, "ServiceUnavailable")
    for _ in range(2):
        standby.run(lambda_context)
        frozen_clock.advance(60)
    standby.fault.faults.clear()
    assert standby.run(lambda_context)["probes"]["web-api@us-east-1"] == {"status": "healthy", "reset_after": 2}
    assert probe_item() is None
    standby.fault.faults[PRIMARY] = (503, "ServiceUnavailable")
    for _ in range(2):
        frozen_clock.advance(60)
        standby.run(lambda_context)
    assert probe_item()["failures"] == 2
    assert received(standby.bus) == []


# --- recovery of the region ---


def test_a_success_after_the_impairment_clears_it_and_a_later_outage_is_a_new_impairment(
    standby, lambda_context, frozen_clock
):
    standby.configure(probe(failures=2))
    standby.fault.faults[PRIMARY] = ReadTimeoutError(endpoint_url="https://autoscaling.us-east-1.amazonaws.com")
    for _ in range(2):
        standby.run(lambda_context)
        frozen_clock.advance(60)
    (impairment,) = standby.detected()

    # When the region answers again
    standby.fault.faults.clear()
    response = standby.run(lambda_context)

    # Then the impairment is cleared, by its id, and the count is gone
    assert response["cleared"] == [impairment.impairment_id]
    (cleared_event,) = standby.events(CLEARED)
    cleared = ImpairmentCleared.model_validate(cleared_event["detail"])
    assert cleared.impairment_id == impairment.impairment_id
    assert cleared.signal == impairment.signal
    assert cleared.cleared_at == frozen_clock.now
    assert probe_item() is None

    # And a success after that publishes nothing
    frozen_clock.advance(60)
    assert standby.run(lambda_context)["status"] == "probed"
    assert received(standby.bus) == []

    # And a later outage is another impairment, with its own id
    standby.fault.faults[PRIMARY] = (500, "InternalFailure")
    for _ in range(2):
        frozen_clock.advance(60)
        standby.run(lambda_context)
    (later,) = standby.detected()
    assert later.impairment_id != impairment.impairment_id


# --- several workloads ---


def test_two_workloads_are_probed_independently_each_in_its_region(standby, lambda_context, frozen_clock):
    # Given web-api in us-east-1 (failing) and shop in eu-west-1 (healthy), both standing by in us-west-2
    standby.configure(probe(failures=2), probe("shop", OTHER, failures=2))
    standby.fault.faults[PRIMARY] = EndpointConnectionError(endpoint_url="https://autoscaling.us-east-1.amazonaws.com")
    for _ in range(2):
        response = standby.run(lambda_context)
        frozen_clock.advance(60)
    assert response["probes"]["shop@eu-west-1"] == {"status": "healthy"}
    (impairment,) = standby.detected()
    assert impairment.workload == "web-api"
    assert sorted(standby.fault.calls) == sorted([PRIMARY, OTHER] * 2)
    assert probe_item("shop", OTHER) is None

    # When eu-west-1 fails as well, its own count starts from one
    standby.fault.faults[OTHER] = (503, "ServiceUnavailable")
    response = standby.run(lambda_context)
    assert response["probes"]["shop@eu-west-1"] == {"status": "failing", "failures": 1}
    assert response["probes"]["web-api@us-east-1"]["status"] == "impaired"


def test_one_probe_that_cannot_be_settled_does_not_stop_the_others(standby, lambda_context, monkeypatch, capsys):
    standby.configure(probe(failures=1), probe("shop", OTHER, failures=1))
    standby.fault.faults[PRIMARY] = (503, "ServiceUnavailable")
    standby.fault.faults[OTHER] = (503, "ServiceUnavailable")
    original = RecoveryStore.probe_failed

    def broken_for_web_api(self: RecoveryStore, workload: str, *args: Any) -> dict[str, Any]:
        if workload == "web-api":
            from core.errors import TransientError

            raise TransientError("dynamodb:UpdateItem failed: InternalServerError")
        return original(self, workload, *args)

    monkeypatch.setattr(RecoveryStore, "probe_failed", broken_for_web_api)
    capsys.readouterr()
    response = standby.run(lambda_context)
    assert response["probes"]["web-api@us-east-1"]["status"] == "error"
    assert response["probes"]["shop@eu-west-1"]["status"] == "published"
    assert [i.workload for i in standby.detected()] == ["shop"]
    # counted with the probe's errors, not as a refusal
    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "RegionProbeErrors")] == [1.0]
    assert named(points, "RegionProbeRefused") == []


def test_the_probe_client_is_in_the_probed_region_with_one_attempt_and_short_timeouts(standby, lambda_context):
    from core import aws

    standby.configure(probe())
    standby.run(lambda_context)
    client = aws.client("autoscaling", max_attempts=1, region=PRIMARY, timeouts=region_probe.TIMEOUTS)
    assert client.meta.region_name == PRIMARY
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (3, 5)
    assert client.meta.config.retries["total_max_attempts"] == 1
    # the function's own clients stay in its region
    assert aws.client("autoscaling").meta.region_name == STANDBY
    assert aws.client("autoscaling") is not client


def test_a_group_missing_in_an_answering_region_is_an_error_not_a_failure(standby, lambda_context, capsys):
    standby.configure(probe("gone", PRIMARY))
    capsys.readouterr()
    outcome = standby.run(lambda_context)["probes"]["gone@us-east-1"]
    assert outcome == {"status": "healthy"}
    assert probe_item("gone") is None
    points = datapoints(capsys.readouterr().out)
    assert [p.value for p in named(points, "RegionProbeErrors")] == [1.0]
    assert named(points, "RegionProbeRefused") == named(points, "RegionProbeFailed") == []


def test_a_member_accounts_group_is_probed_in_that_account(standby, lambda_context, monkeypatch):
    member = "111122223333"
    monkeypatch.setenv("MEMBER_ROLE_NAME", "ImpairmentRecoveryMember")
    monkeypatch.setenv("MEMBER_ACCOUNTS", json.dumps([member]))
    from core import aws

    standby.configure(probe("billing", PRIMARY, failures=1, account_id=member))
    standby.fault.faults[PRIMARY] = (503, "ServiceUnavailable")
    standby.run(lambda_context)
    (impairment,) = standby.detected()
    assert impairment.account_id == member
    assert aws._credentials[member]  # the member role was assumed, in this (the standby) region


STS_DOWN = EndpointConnectionError(endpoint_url=f"https://sts.{STANDBY}.amazonaws.com/")


@pytest.mark.parametrize(
    ("operation", "sts_fault", "status"),
    [
        ("GetCallerIdentity", STS_DOWN, "inconclusive"),
        ("AssumeRole", STS_DOWN, "inconclusive"),
        ("AssumeRole", (403, "AccessDenied"), "refused"),
    ],
    ids=["identity-unreachable", "assume-role-unreachable", "assume-role-refused"],
)
def test_a_member_role_that_cannot_be_assumed_is_not_a_failure_of_the_probed_region(
    standby, lambda_context, monkeypatch, capsys, operation, sts_fault, status
):
    # Given a member's workload probed at the first failure, and this (the standby) region's STS failing
    monkeypatch.setenv("MEMBER_ROLE_NAME", "ImpairmentRecoveryMember")
    monkeypatch.setenv("MEMBER_ACCOUNTS", json.dumps(["111122223333"]))
    standby.configure(probe("billing", PRIMARY, failures=1, account_id="111122223333"))
    sts = RegionFault({STANDBY: sts_fault})
    session = boto3._get_default_session()
    session.events.register(f"before-call.sts.{operation}", sts, unique_id="sts-fault")
    try:
        capsys.readouterr()
        outcome = standby.run(lambda_context)["probes"]["billing@us-east-1"]
    finally:
        session.events.unregister(f"before-call.sts.{operation}", unique_id="sts-fault")

    # Then the role was asked for in this region, the probed region never called, nothing counted
    assert sts.calls == [STANDBY] and standby.fault.calls == []
    assert outcome["status"] == status and outcome["error"].startswith("no client: ")
    assert probe_item("billing") is None and standby.events(DETECTED) == []
    metric = {"refused": "RegionProbeRefused", "inconclusive": "RegionProbeErrors"}[status]
    assert [p.value for p in named(datapoints(capsys.readouterr().out), metric)] == [1.0]


# --- input and configuration ---


def test_without_probes_the_handler_does_nothing(standby, lambda_context):
    standby.configure()
    assert standby.run(lambda_context)["status"] == "idle"
    assert standby.fault.calls == []


def test_input_other_than_a_scheduled_event_is_rejected(standby, lambda_context):
    standby.configure(probe())
    assert region_probe.handler({"source": "aws.ec2"}, lambda_context)["status"] == "rejected"
    assert standby.fault.calls == []


def test_a_probe_configuration_that_does_not_validate_is_a_clear_error(standby, lambda_context):
    path = standby.tmp_path / runtime_config.FILE_NAME
    path.write_text(json.dumps({"probes": [{**probe(), "region": "nowhere"}]}))
    standby.monkeypatch.setenv(runtime_config.ENV, str(path))
    with pytest.raises(InvalidInput, match=r"probes\.0\.region"):
        standby.run(lambda_context)
    assert standby.fault.calls == []


# --- a workload whose compute is an ECS service: its service is probed ---


def ecs_probe(workload: str = "checkout", service: str = "checkout-api") -> dict[str, Any]:
    """A probe of an ECS workload (no group): its service in its region, its standby service here."""
    return probe(
        workload,
        auto_scaling_group=None,
        ecs_service={"cluster": workload, "service": service},
        standby={
            "region": STANDBY,
            "ecs_service": {"cluster": f"{workload}-standby", "service": service, "desired_count": 3},
        },
    )


def make_service(region: str, cluster: str, service: str) -> None:
    ecs = boto3.client("ecs", region_name=region)
    ecs.create_cluster(clusterName=cluster)
    definition = ecs.register_task_definition(
        family=service, containerDefinitions=[{"name": "app", "image": "public.ecr.aws/nginx/nginx:1", "memory": 256}]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=definition, desiredCount=1)


@pytest.fixture
def ecs_fault(standby: Standby) -> Iterator[RegionFault]:
    """The same fault injector, on ECS's DescribeServices."""
    session = boto3._get_default_session()
    session.events.register("before-call.ecs.DescribeServices", standby.fault, unique_id="region-fault-ecs")
    try:
        yield standby.fault
    finally:
        session.events.unregister("before-call.ecs.DescribeServices", unique_id="region-fault-ecs")


@pytest.mark.parametrize("failure", ["no connection", "503"])
def test_an_ecs_workloads_region_is_judged_by_its_service_as_a_groups_by_its_group(
    standby, ecs_fault, lambda_context, frozen_clock, failure
):
    # Given an ECS workload (no group) whose service runs in the primary region
    make_service(PRIMARY, "checkout", "checkout-api")
    standby.configure(ecs_probe())

    # When its region answers: healthy, the service described there (and no group asked for)
    assert standby.run(lambda_context)["probes"]["checkout@us-east-1"] == {"status": "healthy"}
    assert ecs_fault.calls == [PRIMARY]

    # When its region then fails three probes in a row: one region_impairment
    ecs_fault.faults[PRIMARY] = CONNECTION_FAILURES[failure]()
    for _ in range(3):
        frozen_clock.advance(60)
        response = standby.run(lambda_context)
    (impairment,) = standby.detected()
    assert response["detected"] == [impairment.impairment_id]
    assert "ECS service checkout/checkout-api" in impairment.description
    # Its scope names the standby service, and no group
    assert impairment.scope == {
        "impaired_region": PRIMARY,
        "standby_region": STANDBY,
        "standby_ecs_cluster": "checkout-standby",
        "standby_ecs_service": "checkout-api",
        "standby_ecs_desired_count": "3",
        "dns_hosted_zone_id": "Z0EXAMPLE0WEBAPI",
        "dns_record_name": "api.example.com",
        "dns_record_type": "A",
        "dns_primary_set": "web-api-primary",
        "dns_secondary_set": "web-api-standby",
    }


def test_an_ecs_service_missing_in_an_answering_region_is_an_error_not_a_failure(
    standby, ecs_fault, lambda_context, capsys
):
    # Given the workload's cluster there, without its service (ECS lists it under failures: MISSING)
    make_service(PRIMARY, "gone", "something-else")
    standby.configure(ecs_probe("gone"))
    capsys.readouterr()
    outcome = standby.run(lambda_context)["probes"]["gone@us-east-1"]
    assert outcome == {"status": "healthy"}
    assert probe_item("gone") is None
    assert [p.value for p in named(datapoints(capsys.readouterr().out), "RegionProbeErrors")] == [1.0]


def test_an_ecs_cluster_missing_in_an_answering_region_is_a_refusal_not_a_failure(standby, ecs_fault, lambda_context):
    # ECS refuses DescribeServices of a cluster it does not know (ClusterNotFoundException, HTTP 400)
    standby.configure(ecs_probe("nowhere"))
    outcome = standby.run(lambda_context)["probes"]["nowhere@us-east-1"]
    assert outcome["status"] == "refused" and "ClusterNotFoundException" in outcome["error"]
    assert probe_item("nowhere") is None


def test_a_refused_describe_services_is_not_counted(standby, ecs_fault, lambda_context):
    make_service(PRIMARY, "checkout", "checkout-api")
    standby.configure(ecs_probe())
    ecs_fault.faults[PRIMARY] = (400, "AccessDeniedException")
    assert standby.run(lambda_context)["probes"]["checkout@us-east-1"]["status"] == "refused"
    assert probe_item("checkout") is None
