"""failover kind "routing_control": two ARC routing controls switched in one transaction through
the cluster's Regional endpoints, and switched back on rollback.

moto has no route53-recovery-cluster: every endpoint's client is a real boto3 client made by the
action's own factory, answered by botocore's Stubber against the real API shapes. An unreachable
endpoint is a real one: 127.0.0.1 on a port nothing listens on (connection refused), which
pytest-socket allows.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from actions import failover_routing_control as routing_control
from core import aws
from core.errors import ActionRefused, InvalidInput, PermanentError, TransientError
from tests.builders import ACCOUNT, action_event, impairment, run_step

PANEL = f"arn:aws:route53-recovery-control::{ACCOUNT}:controlpanel/abd5fbfc052d4844a082dbf400f61da8"
PRIMARY = f"{PANEL}/routingcontrol/d5d90e587870494b"
STANDBY = f"{PANEL}/routingcontrol/8a1c3e5b7d9f0a2c"
RULE = f"{PANEL}/safetyrule/3f9c2b7e1a4d6e8f"
NAMES = {PRIMARY: "web-api-us-east-1", STANDBY: "web-api-us-west-2"}
# DescribeCluster's ClusterEndpoints, as a plan copies them
ENDPOINTS = [
    {"Endpoint": f"https://{host}.route53-recovery-cluster.{region}.amazonaws.com/v1", "Region": region}
    for host, region in (
        ("c1a2b3c4", "us-east-1"),
        ("c5d6e7f8", "us-west-2"),
        ("c9a0b1c2", "eu-west-1"),
        ("c3d4e5f6", "ap-southeast-2"),
        ("c7a8b9c0", "ap-northeast-1"),
    )
]


def params(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "routing_control",
        "primary_routing_control_arn": PRIMARY,
        "standby_routing_control_arn": STANDBY,
        "cluster_endpoints": ENDPOINTS,
        **overrides,
    }


def unreachable_endpoint() -> str:
    """An https URL on 127.0.0.1 whose port nothing listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://127.0.0.1:{port}/v1"


@dataclass
class Cluster:
    """Every endpoint's client, made by the action's own factory, with a Stubber on each; and the
    endpoints in the order the action made their clients."""

    stubbers: dict[str, Stubber] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    accounts: list[str | None] = field(default_factory=list)
    real_factory: Any = None  # failover._cluster_client itself

    def at(self, index: int, endpoints: list[dict[str, str]] = ENDPOINTS) -> Stubber:
        return self.stubbers[endpoints[index]["Endpoint"]]

    def state(self, stubber: Stubber, arn: str, state: str) -> None:
        stubber.add_response(
            "get_routing_control_state",
            {"RoutingControlArn": arn, "RoutingControlState": state, "RoutingControlName": NAMES[arn]},
            {"RoutingControlArn": arn},
        )

    def states(self, stubber: Stubber, primary: str, standby: str) -> None:
        self.state(stubber, PRIMARY, primary)
        self.state(stubber, STANDBY, standby)

    def update(self, stubber: Stubber, primary: str, standby: str, overrides: list[str] | None = None) -> None:
        entries = [
            {"RoutingControlArn": arn, "RoutingControlState": state}
            for arn, state in sorted(((PRIMARY, primary), (STANDBY, standby)), key=lambda e: e[1] != "On")
        ]
        expected: dict[str, Any] = {"UpdateRoutingControlStateEntries": entries}
        if overrides:
            expected["SafetyRulesToOverride"] = overrides
        stubber.add_response("update_routing_control_states", {}, expected)

    def done(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


@pytest.fixture
def cluster(store, monkeypatch) -> Iterator[Cluster]:
    """A stubbed client for each of ENDPOINTS (any other endpoint gets a real client), and the
    rotation starting at the first endpoint listed (the action starts at random)."""
    made = Cluster()
    real_factory = made.real_factory = routing_control._cluster_client

    def factory(endpoint: str, region: str, account: str | None) -> Any:
        made.made.append(endpoint)
        made.accounts.append(account)
        if endpoint not in made.stubbers:
            return real_factory(endpoint, region, account)  # not stubbed: really connects
        return made.stubbers[endpoint].client

    for entry in ENDPOINTS:
        client = real_factory(entry["Endpoint"], entry["Region"], None)
        made.stubbers[entry["Endpoint"]] = Stubber(client)
        made.stubbers[entry["Endpoint"]].activate()
    monkeypatch.setattr(routing_control, "_cluster_client", factory)
    monkeypatch.setattr(routing_control, "_first_endpoint", lambda count: 0)
    yield made
    for stubber in made.stubbers.values():
        stubber.deactivate()


def model():
    return impairment(resources=[("route53-recovery-control:routingcontrol", PRIMARY)])


def apply(lambda_context, event_params: dict[str, Any] | None = None, *, dry_run: bool = False):
    event = action_event(model(), "failover", params=event_params or params())
    if dry_run:
        event["dry_run"] = True
    return run_step("apply", event, lambda_context)


def rollback(lambda_context, applied: dict[str, Any], event_params: dict[str, Any] | None = None):
    event = action_event(model(), "failover", params=event_params or params(), applied=applied)
    return run_step("rollback", event, lambda_context)


# --- apply ------------------------------------------------------------------------------------


def test_failover_sets_the_standby_on_and_the_primary_off_in_one_update(store, cluster, lambda_context):
    # Given the primary On and the standby Off
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    cluster.update(first, primary="Off", standby="On")

    # When failover is applied
    applied = apply(lambda_context)

    # Then one UpdateRoutingControlStates call set both (the Stubber checked the call's shape)
    cluster.done()
    assert applied["result"] == "changed"
    assert applied["targets"] == [PRIMARY, STANDBY]
    assert applied["after"] == {"primary": "Off", "standby": "On"}
    # and the states before are in the result and the audit trail
    assert applied["before"] == {
        "kind": "routing_control",
        "primary": {"arn": PRIMARY, "name": NAMES[PRIMARY], "state": "On"},
        "standby": {"arn": STANDBY, "name": NAMES[STANDBY], "state": "Off"},
    }
    assert store.get_action(model().impairment_id, 0, "apply")["before"] == applied["before"]
    assert NAMES[PRIMARY] in applied["message"]
    # only the endpoint that answered was reached
    assert cluster.made == [ENDPOINTS[0]["Endpoint"]]


def test_the_plan_may_override_named_safety_rules(store, cluster, lambda_context):
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    cluster.update(first, primary="Off", standby="On", overrides=[RULE])

    applied = apply(lambda_context, params(safety_rules_to_override=[RULE]))

    cluster.done()
    assert applied["result"] == "changed"


def test_an_unreachable_first_endpoint_makes_the_calls_go_to_the_second(store, cluster, lambda_context):
    # Given the first endpoint refuses connections
    endpoints = [{"Endpoint": unreachable_endpoint(), "Region": "us-east-1"}, *ENDPOINTS[1:]]
    second = cluster.at(1)
    cluster.states(second, "On", "Off")
    cluster.update(second, primary="Off", standby="On")

    # When failover is applied
    applied = apply(lambda_context, params(cluster_endpoints=endpoints))

    # Then the second endpoint served every call, and the first was tried once only
    cluster.done()
    assert applied["result"] == "changed"
    assert cluster.made == [endpoints[0]["Endpoint"], endpoints[1]["Endpoint"]]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("EndpointTemporarilyUnavailableException", 400),
        ("ThrottlingException", 400),
        ("InternalServerException", 500),
        ("ServiceUnavailable", 503),
    ],
)
def test_an_endpoint_that_cannot_serve_now_passes_the_call_to_the_next(store, cluster, lambda_context, code, status):
    # Given the first endpoint answers the update with an error that is its own, not the request's
    first, second = cluster.at(0), cluster.at(1)
    cluster.states(first, "On", "Off")
    first.add_client_error("update_routing_control_states", code, "try another endpoint", status)
    cluster.update(second, primary="Off", standby="On")

    applied = apply(lambda_context)

    cluster.done()
    assert applied["result"] == "changed"


def test_an_endpoint_that_times_out_passes_the_call_to_the_next(store, cluster, lambda_context, monkeypatch):
    first, second = cluster.at(0), cluster.at(1)

    def timed_out(**kwargs):
        raise ReadTimeoutError(endpoint_url=ENDPOINTS[0]["Endpoint"])

    monkeypatch.setattr(first.client, "get_routing_control_state", timed_out)
    cluster.states(second, "On", "Off")
    cluster.update(second, primary="Off", standby="On")

    applied = apply(lambda_context)

    cluster.done()
    assert applied["result"] == "changed"


def test_when_no_endpoint_answers_the_step_is_transient_and_nothing_is_recorded(store, cluster, lambda_context):
    # Given every endpoint is unavailable
    for index in range(len(ENDPOINTS)):
        cluster.at(index).add_client_error(
            "get_routing_control_state", "EndpointTemporarilyUnavailableException", "maintenance", 400
        )

    # When failover is applied
    with pytest.raises(TransientError, match="no endpoint of the ARC cluster answered") as caught:
        apply(lambda_context)

    # Then the state machine retries: each endpoint was tried once, and nothing is recorded
    cluster.done()
    assert caught.value.details["code"] == "NoClusterEndpointAnswered"
    assert len(cluster.made) == len(ENDPOINTS)
    for entry in ENDPOINTS:
        assert entry["Region"] in str(caught.value)
    assert store.get_action(model().impairment_id, 0, "apply") is None


def test_the_endpoints_are_tried_within_a_time_budget(store, cluster, lambda_context, monkeypatch):
    # Given every try at an endpoint takes 25 s (a clock that moves 25 s each time it is read) and
    # the first endpoint is unavailable
    clock = iter(range(0, 10_000, 25))
    monkeypatch.setattr(routing_control, "monotonic", lambda: float(next(clock)))
    cluster.at(0).add_client_error("get_routing_control_state", "EndpointTemporarilyUnavailableException", "x", 400)

    # When failover is applied
    with pytest.raises(TransientError, match="time budget") as caught:
        apply(lambda_context)

    # Then it stopped once the budget was spent instead of trying the other four, and the state
    # machine retries the step
    assert cluster.made == [ENDPOINTS[0]["Endpoint"]]
    assert ENDPOINTS[0]["Region"] in str(caught.value)


def test_when_no_endpoint_takes_the_update_the_retry_completes_the_same_switch(store, cluster, lambda_context):
    # Given the states are read, then every endpoint throttles the update
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    for index in range(len(ENDPOINTS)):
        cluster.at(index).add_client_error("update_routing_control_states", "ThrottlingException", "slow down", 400)
    with pytest.raises(TransientError):
        apply(lambda_context)
    cluster.done()
    record = store.get_action(model().impairment_id, 0, "apply")
    assert record["status"] == "started"
    assert record["before"]["primary"]["state"] == "On"

    # When the state machine retries in the same warm environment: it goes on from the attempt it
    # remembers recording, reads the states once, and makes the same switch
    cluster.states(first, "On", "Off")
    cluster.update(first, primary="Off", standby="On")
    retried = apply(lambda_context)

    cluster.done()
    assert retried["result"] == "changed"
    assert retried["before"] == record["before"]


def test_a_safety_rule_that_blocks_the_change_is_a_refusal_naming_the_rule(store, cluster, lambda_context):
    # Given an assertion rule of the control panel blocks the change (ConflictException, with
    # the resource ARC names as modeled fields)
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    first.add_client_error(
        "update_routing_control_states",
        "ConflictException",
        "The request would violate a safety rule",
        409,
        modeled_fields={
            "message": "The request would violate a safety rule",
            "resourceId": RULE,
            "resourceType": "SafetyRule",
        },
    )

    # When failover is applied
    with pytest.raises(ActionRefused) as caught:
        apply(lambda_context)

    # Then it is permanent (no other endpoint asked), names the routing controls and the rule
    cluster.done()
    assert RULE in str(caught.value)
    assert NAMES[PRIMARY] in str(caught.value) and NAMES[STANDBY] in str(caught.value)
    assert "safety_rules_to_override" in str(caught.value)
    assert cluster.made == [ENDPOINTS[0]["Endpoint"]]
    # and the audit trail holds the failure and the states before, no change
    record = store.get_action(model().impairment_id, 0, "apply")
    assert record["status"] == "failed"
    assert "result" not in record
    assert record["before"]["standby"]["state"] == "Off"


@pytest.mark.parametrize(
    "code",
    ["AccessDeniedException", "ResourceNotFoundException", "ValidationException", "ServiceLimitExceededException"],
)
def test_errors_about_the_request_are_permanent_at_the_first_endpoint(store, cluster, lambda_context, code):
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    first.add_client_error("update_routing_control_states", code, "no", 400)

    with pytest.raises(PermanentError, match=code) as caught:
        apply(lambda_context)

    assert not isinstance(caught.value, TransientError)
    assert PRIMARY in str(caught.value)
    assert cluster.made == [ENDPOINTS[0]["Endpoint"]]


def test_already_failed_over_is_unchanged_and_updates_nothing(store, cluster, lambda_context):
    # Given the standby is On and the primary Off already
    cluster.states(cluster.at(0), "Off", "On")

    applied = apply(lambda_context)

    # Then no update call was made (the Stubber has none queued: one would fail the test)
    cluster.done()
    assert applied["result"] == "unchanged"
    assert "already" in applied["message"]


def test_a_retry_after_the_switch_finds_it_done(store, cluster, lambda_context):
    # Given the switch was made, but the step crashed before "done" was recorded
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    cluster.update(first, primary="Off", standby="On")
    applied = apply(lambda_context)
    store.put_action(model().impairment_id, 0, "apply", {"status": "started", "before": applied["before"]})

    # When the step runs again (it reads the states, learns of its earlier attempt from its
    # refused first record, and reads them again from there)
    cluster.states(first, "Off", "On")
    cluster.states(first, "Off", "On")
    retried = apply(lambda_context)

    # Then it reports the change it made, without a second update
    cluster.done()
    assert retried["result"] == "changed"
    assert retried["before"] == applied["before"]


def test_a_retry_refuses_states_someone_changed_since_they_were_recorded(store, cluster, lambda_context):
    # Given the states were recorded (primary On, standby Off), then both set Off by someone else
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    first.add_client_error("update_routing_control_states", "ThrottlingException", "slow down", 400)
    for index in range(1, len(ENDPOINTS)):
        cluster.at(index).add_client_error("update_routing_control_states", "ThrottlingException", "slow", 400)
    with pytest.raises(TransientError):
        apply(lambda_context)

    cluster.states(first, "Off", "Off")  # read once, by the retry going on from its remembered record
    with pytest.raises(ActionRefused, match="changed since they were recorded"):
        apply(lambda_context)
    cluster.done()


def test_dry_run_reads_and_reports_and_updates_nothing(store, cluster, lambda_context):
    cluster.states(cluster.at(0), "On", "Off")

    result = apply(lambda_context, dry_run=True)

    cluster.done()
    assert result["result"] == "would_change"
    assert result["after"] == {"primary": "On", "standby": "Off"}


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_restores_the_states_recorded_before_in_one_update(store, cluster, lambda_context):
    # Given failover was applied
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    cluster.update(first, primary="Off", standby="On")
    applied = apply(lambda_context)

    # When it is rolled back, the routing controls as the failover left them
    cluster.states(first, "Off", "On")
    cluster.update(first, primary="On", standby="Off")
    result = rollback(lambda_context, applied)

    # Then one update restored primary On and standby Off
    cluster.done()
    assert result["result"] == "changed"
    assert result["before"] == {"primary": "Off", "standby": "On"}
    assert result["after"] == {"primary": "On", "standby": "Off"}


def test_rollback_restores_exactly_what_was_recorded_even_both_on(store, cluster, lambda_context):
    # Given both were On before the failover (a state ARC allows without an assertion rule)
    first = cluster.at(0)
    cluster.states(first, "On", "On")
    cluster.update(first, primary="Off", standby="On")
    applied = apply(lambda_context)

    cluster.states(first, "Off", "On")
    cluster.update(first, primary="On", standby="On")
    result = rollback(lambda_context, applied)

    cluster.done()
    assert result["after"] == {"primary": "On", "standby": "On"}


def test_rollback_leaves_states_someone_else_changed_since(store, cluster, lambda_context):
    # Given failover was applied, then an operator turned the primary back On (both On now)
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    cluster.update(first, primary="Off", standby="On")
    applied = apply(lambda_context)
    cluster.states(first, "On", "On")

    # When the failover is rolled back
    result = rollback(lambda_context, applied)

    # Then the operator's states stand: no update
    cluster.done()
    assert result["result"] == "unchanged"
    assert "someone else" in result["message"]


def test_rollback_of_an_unchanged_failover_changes_nothing(store, cluster, lambda_context):
    first = cluster.at(0)
    cluster.states(first, "Off", "On")
    applied = apply(lambda_context)
    cluster.states(first, "Off", "On")

    result = rollback(lambda_context, applied)

    cluster.done()
    assert result["result"] == "unchanged"


def test_rollback_blocked_by_a_safety_rule_is_refused(store, cluster, lambda_context):
    first = cluster.at(0)
    cluster.states(first, "On", "Off")
    cluster.update(first, primary="Off", standby="On")
    applied = apply(lambda_context)
    cluster.states(first, "Off", "On")
    first.add_client_error(
        "update_routing_control_states",
        "ConflictException",
        "gating rule is Off",
        409,
        modeled_fields={"message": "gating rule is Off", "resourceId": RULE, "resourceType": "SafetyRule"},
    )

    with pytest.raises(ActionRefused, match="gating rule is Off"):
        rollback(lambda_context, applied)
    cluster.done()


# --- clients and parameters -------------------------------------------------------------------


def test_each_endpoint_gets_a_client_of_its_own_url_and_region_without_sdk_retries():
    entry = ENDPOINTS[3]

    client = routing_control._cluster_client(entry["Endpoint"], entry["Region"], None)

    assert client.meta.endpoint_url == entry["Endpoint"]
    assert client.meta.region_name == entry["Region"]
    assert client.meta.service_model.service_name == "route53-recovery-cluster"

    # and a call to an endpoint that refuses the connection is sent once, not retried by the SDK
    unreachable = routing_control._cluster_client(unreachable_endpoint(), "us-east-1", None)
    sent: list[str] = []
    unreachable.meta.events.register("before-send", lambda request, **kwargs: sent.append(request.url))
    with pytest.raises(EndpointConnectionError):
        unreachable.get_routing_control_state(RoutingControlArn=PRIMARY)
    assert len(sent) == 1


def test_a_member_accounts_routing_controls_are_reached_with_the_member_role(
    store, cluster, monkeypatch, lambda_context
):
    # Given member accounts are configured and the impairment is a member's
    member = "111122223333"
    monkeypatch.setenv("MEMBER_ROLE_NAME", "ImpairmentRecoveryMember")
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{member}"]')
    cluster.states(cluster.at(0), "Off", "On")
    event = action_event(model().model_copy(update={"account_id": member}), "failover", params=params())

    run_step("apply", event, lambda_context)

    # Then the endpoint's client was made in the member account
    assert cluster.accounts == [member]
    # and such a client (core.aws's, like every other) signs with the member role's credentials
    entry = ENDPOINTS[0]
    client = cluster.real_factory(entry["Endpoint"], entry["Region"], member)
    assert client.meta.endpoint_url == entry["Endpoint"]
    assert client._request_signer._credentials.access_key == aws._credentials[member]["AccessKeyId"]


def test_the_rotation_starts_at_random_and_goes_round_the_list(store, cluster, lambda_context, monkeypatch):
    # Given the rotation starts at the last endpoint, which is unavailable
    monkeypatch.setattr(routing_control, "_first_endpoint", lambda count: count - 1)
    cluster.at(4).add_client_error("get_routing_control_state", "EndpointTemporarilyUnavailableException", "x", 400)
    cluster.states(cluster.at(0), "Off", "On")

    apply(lambda_context)

    # Then it went round to the first
    cluster.done()
    assert cluster.made == [ENDPOINTS[4]["Endpoint"], ENDPOINTS[0]["Endpoint"]]
    assert {routing_control._first_endpoint(5) for _ in range(50)} <= set(range(5))


@pytest.mark.parametrize(
    "given",
    [
        {"kind": "routing_control", "primary_routing_control_arn": PRIMARY, "cluster_endpoints": ENDPOINTS},
        params(standby_routing_control_arn=PRIMARY),
        params(cluster_endpoints=[]),
        params(cluster_endpoints=[*ENDPOINTS, {"Endpoint": "https://c0.example.com/v1", "Region": "sa-east-1"}]),
        params(cluster_endpoints=[ENDPOINTS[0], ENDPOINTS[0]]),
        params(cluster_endpoints=[{"Endpoint": "http://c1.example.com/v1", "Region": "us-east-1"}]),
        params(cluster_endpoints=[{"Endpoint": ENDPOINTS[0]["Endpoint"], "Region": "US East"}]),
        params(primary_routing_control_arn=f"{PANEL}/safetyrule/3f9c2b7e1a4d6e8f"),
        params(safety_rules_to_override=[PRIMARY]),
        params(record_name="app.example.com"),
        params(db_cluster_identifier="orders"),
        params(standby_weight=10),
        {"kind": "dns", "primary_routing_control_arn": PRIMARY},
        {"kind": "database", "cluster_endpoints": ENDPOINTS},
        {"kind": "dns", "safety_rules_to_override": [RULE]},
    ],
    ids=[
        "no-standby",
        "same-control-twice",
        "no-endpoints",
        "six-endpoints",
        "endpoint-twice",
        "http-endpoint",
        "bad-region",
        "safety-rule-as-control",
        "control-as-safety-rule",
        "dns-param",
        "database-param",
        "dns-weight",
        "routing-control-param-for-dns",
        "routing-control-param-for-database",
        "safety-rules-for-dns",
    ],
)
def test_params_that_do_not_fit_the_kind_are_invalid_and_nothing_is_called(store, cluster, lambda_context, given):
    with pytest.raises(InvalidInput):
        run_step("apply", action_event(model(), "failover", params=given), lambda_context)

    assert cluster.made == []
