"""The region probe's pure parts: what a call's outcome says about its region, the impairment it
makes, and how a probe's result is settled (with an in-memory store and publisher)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from core import runtime_config
from core.contract import ImpairmentType, Severity, make_impairment_id
from core.errors import InvalidInput, PublishError
from core.runtime_config import RegionProbe
from detectors import region_probe
from detectors.common import Findings
from detectors.region_probe import ProbeResult, Verdict, classify

URL = "https://autoscaling.us-east-1.amazonaws.com/"
STANDBY_TG = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/s/0123456789abcdef"
FIRST = datetime(2026, 11, 20, 9, 14, 31, 104000, tzinfo=UTC)


def make_probe(**changes: Any) -> RegionProbe:
    raw: dict[str, Any] = {
        "workload": "web-api",
        "region": "us-east-1",
        "auto_scaling_group": "web-api-asg",
        "failures_to_impair": 3,
        "standby": {"region": "us-west-2", "auto_scaling_group": "web-api-standby", "desired_capacity": 4},
        **changes,
    }
    return RegionProbe.model_validate(raw)


def client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "DescribeAutoScalingGroups",
    )


# --- classification ---


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url=URL),
        ConnectTimeoutError(endpoint_url=URL),
        ReadTimeoutError(endpoint_url=URL),
        # the connection dropped before a whole answer: reset mid-request, a handshake cut, a body cut
        ConnectionClosedError(endpoint_url=URL),
        SSLError(endpoint_url=URL, error="EOF occurred in violation of protocol"),
        ResponseStreamingError(error="Connection broken: IncompleteRead"),
        client_error(503, "ServiceUnavailable"),
        client_error(500, "InternalFailure"),
        client_error(500, "InternalError"),
    ],
    ids=lambda e: (
        f"{type(e).__name__}-{e.response['Error']['Code']}" if isinstance(e, ClientError) else type(e).__name__
    ),
)
def test_no_connection_a_timeout_or_a_server_error_is_a_region_failure(exc):
    result = classify(exc)
    assert result.verdict is Verdict.REGION_FAILURE
    assert result.error


@pytest.mark.parametrize(
    "exc",
    [client_error(403, "AccessDenied"), client_error(400, "ValidationError"), client_error(400, "Throttling")],
    ids=lambda e: e.response["Error"]["Code"],
)
def test_a_refusal_proves_the_region_answers(exc):
    result = classify(exc)
    assert result.verdict is Verdict.REFUSED
    assert exc.response["Error"]["Code"] in result.error


@pytest.mark.parametrize(
    "exc",
    [
        NoCredentialsError(),
        # our proxy failed, not the region; an unexpected error in the client
        ProxyConnectionError(proxy_url="http://proxy.internal:3128", error="refused"),
        HTTPClientError(error="unexpected"),
        InvalidInput("account 999 is not a member account"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_our_own_failure_is_inconclusive(exc):
    result = classify(exc)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert type(exc).__name__ in result.error


def _no_client(cause: Exception) -> region_probe.NoProbeClient:
    """What AwsRegionApi raises when a member's credentials fail (core/aws.py wraps AssumeRole's errors)."""
    try:
        raise region_probe.NoProbeClient(str(cause)) from cause
    except region_probe.NoProbeClient as exc:
        return exc


def _wrapped(error: ClientError) -> Exception:
    from core.errors import classify_client_error

    try:
        raise classify_client_error(error, "sts:AssumeRole") from error
    except Exception as exc:  # the wrapped error, as core/aws.py raises it
        return exc


@pytest.mark.parametrize(
    ("cause", "verdict"),
    [
        # this region's STS did not answer, or failed: this side's failure, not the probed region's
        (EndpointConnectionError(endpoint_url="https://sts.us-west-2.amazonaws.com/"), Verdict.INCONCLUSIVE),
        (ReadTimeoutError(endpoint_url="https://sts.us-west-2.amazonaws.com/"), Verdict.INCONCLUSIVE),
        (_wrapped(client_error(503, "ServiceUnavailable")), Verdict.INCONCLUSIVE),
        # it refused: the member role is missing or does not trust this stack
        (_wrapped(client_error(403, "AccessDenied")), Verdict.REFUSED),
        (client_error(403, "AccessDenied"), Verdict.REFUSED),
    ],
    ids=["sts-no-connection", "sts-timeout", "sts-5xx", "assume-role-refused", "caller-identity-refused"],
)
def test_credentials_that_fail_in_this_region_never_count_against_the_probed_region(cause, verdict):
    result = classify(_no_client(cause))
    assert result.verdict is verdict
    assert result.error.startswith("no client: ")


def test_an_answer_is_healthy():
    assert classify(None, 1) == ProbeResult(Verdict.HEALTHY, groups_found=1)
    assert classify(None, 0).groups_found == 0


# --- the impairment ---


def test_the_id_is_stable_for_a_series_and_differs_between_series():
    probe = make_probe()
    assert region_probe.impairment_id_of(probe, FIRST) == region_probe.impairment_id_of(make_probe(), FIRST)
    assert region_probe.impairment_id_of(probe, FIRST) == make_impairment_id(
        "web-api", "recovery.region-probe", "region-probe/us-east-1/web-api", FIRST
    )
    assert region_probe.impairment_id_of(probe, FIRST) != region_probe.impairment_id_of(
        probe, FIRST + timedelta(minutes=1)
    )
    assert region_probe.impairment_id_of(probe, FIRST) != region_probe.impairment_id_of(
        make_probe(workload="shop"), FIRST
    )


def test_the_impairment_is_critical_timed_from_the_first_failure_and_names_the_region():
    probe = make_probe(account_id="111122223333")
    impairment = region_probe.impairment_of(
        probe, 3, FIRST, "EndpointConnectionError: x", FIRST + timedelta(seconds=130)
    )
    assert impairment.impairment_type is ImpairmentType.REGION_IMPAIRMENT
    assert impairment.severity is Severity.CRITICAL
    assert impairment.mttd_seconds == 130
    assert impairment.account_id == "111122223333"
    assert impairment.metrics == {"consecutive_failures": 3.0}
    assert impairment.affected_resources[0].key == "region:workload/us-east-1/web-api"
    for fragment in ("us-east-1", "us-west-2", "3 consecutive", "EndpointConnectionError: x"):
        assert fragment in impairment.description


def test_the_scope_has_the_target_group_and_records_only_when_configured():
    bare = region_probe.scope_of(make_probe())
    assert bare == {
        "impaired_region": "us-east-1",
        "standby_region": "us-west-2",
        "primary_auto_scaling_group": "web-api-asg",
        "auto_scaling_group": "web-api-standby",
        "standby_auto_scaling_group": "web-api-standby",
        "standby_desired_capacity": "4",
    }
    full = region_probe.scope_of(
        make_probe(
            standby={
                "region": "us-west-2",
                "auto_scaling_group": "web-api-standby",
                "desired_capacity": 4,
                "target_group_arn": STANDBY_TG,
            },
            dns={
                "hosted_zone_id": "Z1",
                "record_name": "api.example.com",
                "record_type": "AAAA",
                "primary_set_identifier": "p",
                "secondary_set_identifier": "s",
            },
        )
    )
    assert set(full) - set(bare) == {
        "target_group_arn",
        "dns_hosted_zone_id",
        "dns_record_name",
        "dns_record_type",
        "dns_primary_set",
        "dns_secondary_set",
    }
    assert (full["dns_record_type"], full["dns_primary_set"], full["dns_secondary_set"]) == ("AAAA", "p", "s")


def test_the_scope_names_the_standby_ecs_service_beside_the_group_when_the_workload_has_both():
    standby = {
        "region": "us-west-2",
        "auto_scaling_group": "web-api-standby",
        "desired_capacity": 4,
        "ecs_service": {"cluster": "web-standby", "service": "web", "desired_count": 2},
    }
    scope = region_probe.scope_of(make_probe(standby=standby))
    assert scope == region_probe.scope_of(make_probe()) | {
        "standby_ecs_cluster": "web-standby",
        "standby_ecs_service": "web",
        "standby_ecs_desired_count": "2",
    }


# --- the runtime configuration ---


def test_probes_are_optional_and_existing_callers_of_build_keep_working():
    assert runtime_config.build([], {}, {}).probes == []
    config = runtime_config.build([], {}, {}, probes=[make_probe().model_dump(mode="json")])
    assert config.probes == [make_probe()]
    assert runtime_config.RuntimeConfig.model_validate_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"region": "nowhere"}, "probes.0.region"),
        ({"failures_to_impair": 0}, "probes.0.failures_to_impair"),
        ({"standby": {"region": "us-west-2", "auto_scaling_group": "s"}}, "auto_scaling_group and desired_capacity go"),
        ({"standby": {"region": "us-west-2"}}, "a standby needs an auto_scaling_group or an ecs_service"),
        (
            {"standby": {"region": "us-west-2", "ecs_service": {"cluster": "c", "service": "s"}}},
            "the standby service's count on failover is required",
        ),
        ({"auto_scaling_group": None}, "nothing to probe (an auto_scaling_group or an ecs_service)"),
        ({"account_id": "12"}, "probes.0.account_id"),
        ({"colour": "red"}, "probes.0.colour"),
        (
            {"standby": {"region": "us-east-1", "auto_scaling_group": "s", "desired_capacity": 1}},
            "the standby region is the probed region us-east-1",
        ),
    ],
)
def test_a_probe_that_does_not_validate_is_refused_naming_the_field(change, field):
    raw = {**make_probe().model_dump(mode="json"), **change}
    with pytest.raises(InvalidInput) as caught:
        runtime_config.build([], {}, {}, probes=[raw])
    assert field in str(caught.value)


# --- settling a probe's result ---


class MemoryStore:
    """The probe items of the recovery table, in memory (the same rules as core/store.py)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.now = FIRST

    def probe_failed(self, workload: str, region: str, tick: str, error: str, keep_seconds: int) -> dict[str, Any]:
        item = self.items.setdefault((workload, region), {"failures": 0, "first_failure_at": self.now.isoformat()})
        if item.get("last_tick") != tick:
            item.update(failures=item["failures"] + 1, last_error=error, last_tick=tick)
        return dict(item)

    def get_probe(self, workload: str, region: str) -> dict[str, Any] | None:
        item = self.items.get((workload, region))
        return dict(item) if item else None

    def probe_published(self, workload: str, region: str, first_failure_at: str, impairment_id: str) -> None:
        item = self.items.get((workload, region))
        if item and item["first_failure_at"] == first_failure_at:
            item["impairment_id"] = impairment_id

    def reset_probe(self, workload: str, region: str, first_failure_at: str) -> bool:
        return self.items.pop((workload, region), None) is not None


class Bus:
    def __init__(self, refuse: int = 0) -> None:
        self.sent: list[Findings] = []
        self.refuse = refuse

    def __call__(self, findings: Findings, account_id: str | None) -> dict[str, Any]:
        if self.refuse:
            self.refuse -= 1
            raise PublishError("refused")
        self.sent.append(findings)
        return {"status": "published"}


FAILED = ProbeResult(Verdict.REGION_FAILURE, "EndpointConnectionError: x")


def test_the_impairment_is_published_once_per_series():
    probe, store, bus = make_probe(failures_to_impair=2), MemoryStore(), Bus()
    statuses = [region_probe.settle(probe, FAILED, store, bus, f"t{n}")["status"] for n in range(4)]
    assert statuses == ["failing", "published", "impaired", "impaired"]
    assert len(bus.sent) == 1 and len(bus.sent[0].detected) == 1


def test_a_refused_publication_is_tried_again_on_the_next_failure():
    probe, store, bus = make_probe(failures_to_impair=1), MemoryStore(), Bus(refuse=1)
    with pytest.raises(PublishError):
        region_probe.settle(probe, FAILED, store, bus, "t1")
    assert region_probe.settle(probe, FAILED, store, bus, "t2")["status"] == "published"
    (impairment,) = bus.sent[0].detected
    assert impairment.signal.signal_time == FIRST
    assert impairment.metrics == {"consecutive_failures": 2.0}


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (ProbeResult(Verdict.REFUSED, "AccessDenied (HTTP 403): m"), "refused"),
        (ProbeResult(Verdict.INCONCLUSIVE, "NoCredentialsError: m"), "inconclusive"),
    ],
)
def test_a_refused_or_inconclusive_probe_touches_nothing(result, status):
    probe, store, bus = make_probe(), MemoryStore(), Bus()
    region_probe.settle(probe, FAILED, store, bus, "t1")
    before = dict(store.items)
    outcome = region_probe.settle(probe, result, store, bus, "t2")
    assert outcome == {"status": status, "error": result.error}
    assert store.items == before and bus.sent == []


def test_a_success_clears_only_a_published_impairment():
    probe, store, bus = make_probe(failures_to_impair=2), MemoryStore(), Bus()
    healthy = ProbeResult(Verdict.HEALTHY, groups_found=1)
    region_probe.settle(probe, FAILED, store, bus, "t1")
    assert region_probe.settle(probe, healthy, store, bus, "t2") == {"status": "healthy", "reset_after": 1}
    assert bus.sent == [] and store.items == {}
    for tick in ("t3", "t4"):
        region_probe.settle(probe, FAILED, store, bus, tick)
    outcome = region_probe.settle(probe, healthy, store, bus, "t5")
    assert outcome["status"] == "cleared"
    (cleared,) = bus.sent[-1].cleared
    assert cleared.impairment_id == outcome["impairment_id"] == bus.sent[0].detected[0].impairment_id
    assert store.items == {}


def test_probes_run_in_parallel_and_each_is_classified_on_its_own():
    class Api:
        def describe_group(self, probe: RegionProbe) -> int:
            if probe.workload == "broken":
                raise EndpointConnectionError(endpoint_url=URL)
            return 1

    probes = [make_probe(), make_probe(workload="broken"), make_probe(workload="shop")]
    verdicts = [r.verdict for r in region_probe.call_all(probes, Api())]
    assert verdicts == [Verdict.HEALTHY, Verdict.REGION_FAILURE, Verdict.HEALTHY]


# --- clients in another region ---


def test_clients_are_kept_by_region_and_timeouts_and_the_default_one_is_unchanged(monkeypatch):
    from core import aws

    default = aws.client("autoscaling")
    east = aws.client("autoscaling", region="us-east-1", max_attempts=1, timeouts=(3, 5))
    west = aws.client("autoscaling", region="us-west-2", max_attempts=1, timeouts=(3, 5))
    assert aws.client("autoscaling") is default
    assert aws.client("autoscaling", region="us-east-1", max_attempts=1, timeouts=(3, 5)) is east
    assert east is not west and east is not default
    assert (east.meta.region_name, west.meta.region_name) == ("us-east-1", "us-west-2")
    assert (default.meta.config.connect_timeout, default.meta.config.read_timeout) == aws.DEFAULT_TIMEOUTS
    # max_attempts is the number of attempts, the first included
    assert east.meta.config.retries["total_max_attempts"] == 1
    assert default.meta.config.retries["total_max_attempts"] == 3
