"""The readiness check's permissions and cluster checks under moto: the action roles simulated
through IAM's API (answered in its real shape by tests/integration/iam_simulation.py, moto has no
simulation), page by page and once per role and step; a member's role simulated through itself;
and an ARC cluster's endpoints asked for real: a local HTTPS server answering as the cluster's data
plane does (JSON 1.0, ToggleCustomerAPI.GetRoutingControlState) and a port nothing listens on."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from readiness import handler as readiness
from tests.builders import build_workload, in_account, scheduled_event, use_runtime_config
from tests.integration.iam_simulation import Simulator
from tests.integration.test_failover_routing_control import PRIMARY, STANDBY, unreachable_endpoint
from tests.integration.test_member_sweeps import MEMBER, ROLE

SCALE_ROLE = "arn:aws:iam::123456789012:role/ImpairmentRecovery-ScaleOutApplyRole-1A2B"
ARC_ROLE = "arn:aws:iam::123456789012:role/ImpairmentRecovery-FailoverRoutingControlApplyRole-3C4D"


def plan(name: str, steps: list[dict], workloads: list[str] | None = None) -> dict:
    return {"name": name, "match": {"impairment_types": ["instance_failure"], "workloads": workloads}, "steps": steps}


@pytest.fixture
def action_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTION_ROLES", json.dumps({"scale_out": SCALE_ROLE, "failover_routing_control": ARC_ROLE}))


def test_a_role_denied_one_call_is_not_ready_and_each_role_and_step_is_simulated_once_page_by_page(
    store, lambda_context, tmp_path, monkeypatch, iam_simulation: Simulator, action_roles
):
    # Given two plans scaling out the same group, whose role may not SetDesiredCapacity on it,
    # and a simulation answering two actions a page
    build_workload("web", min_size=1, max_size=6, desired=2)
    iam_simulation.page_size = 2
    use_runtime_config(
        monkeypatch,
        tmp_path,
        plans=[plan("one", [{"action": "scale_out"}]), plan("two", [{"action": "scale_out"}])],
        readiness=[{"workload": "web", "auto_scaling_group": "web-asg"}],
    )
    group_arn = None

    def deny_on_the_group(params):
        nonlocal group_arn
        group_arn = next(r for r in params["ResourceArns"] if ":autoScalingGroup:" in r)
        iam_simulation.decisions[(SCALE_ROLE, "autoscaling:SetDesiredCapacity", group_arn)] = "implicitDeny"

    original = iam_simulation.answer
    iam_simulation.answer = lambda params: (deny_on_the_group(params), original(params))[1]  # type: ignore[method-assign]

    response = readiness.handler(scheduled_event(), lambda_context)

    # Then both plans are not ready, naming the action, the group and the decision
    assert response["not_ready"] == ["one", "two"]
    (check,) = [c for c in response["results"][0]["workloads"][0]["checks"] if c["name"] == "permissions"]
    assert check["evidence"] == (
        f"scale_out: role {SCALE_ROLE.rsplit('/', 1)[1]}: autoscaling:SetDesiredCapacity on {group_arn}: implicitDeny"
    )
    # ...from one simulation of three actions, read in two pages, with the managed tag as context
    assert [c.get("Marker") for c in iam_simulation.calls] == [None, "2"]
    first = iam_simulation.calls[0]
    assert first["PolicySourceArn"] == SCALE_ROLE
    assert first["ContextEntries"] == [
        {"ContextKeyName": "aws:ResourceTag/recovery:managed", "ContextKeyValues": ["true"], "ContextKeyType": "string"}
    ]


def test_a_member_role_lacking_one_action_fails_only_its_plan_and_is_simulated_through_itself(
    store, lambda_context, tmp_path, monkeypatch, iam_simulation: Simulator, action_roles
):
    monkeypatch.setenv("MEMBER_ROLE_NAME", ROLE)
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{MEMBER}"]')
    with in_account(MEMBER, monkeypatch):
        build_workload("member", min_size=1, max_size=6, desired=2)
    build_workload("central", min_size=1, max_size=6, desired=2)
    member_role = f"arn:aws:iam::{MEMBER}:role/{ROLE}"
    use_runtime_config(
        monkeypatch,
        tmp_path,
        plans=[
            plan("member", [{"action": "scale_out"}], ["member"]),
            plan("here", [{"action": "scale_out"}], ["central"]),
        ],
        readiness=[
            {"workload": "member", "account_id": MEMBER, "auto_scaling_group": "member-asg"},
            {"workload": "central", "auto_scaling_group": "central-asg"},
        ],
    )
    # the member role may not DescribeAutoScalingInstances, on anything
    original = iam_simulation.answer

    def deny_all_resources(params):
        for resource in params["ResourceArns"]:
            iam_simulation.decisions[(member_role, "autoscaling:DescribeAutoScalingInstances", resource)] = (
                "explicitDeny"
            )
        return original(params)

    iam_simulation.answer = deny_all_resources  # type: ignore[method-assign]

    response = readiness.handler(scheduled_event(), lambda_context)

    assert response["not_ready"] == ["member"]
    (member,) = [r for r in response["results"] if r["plan"] == "member"]
    failing = [c["evidence"] for c in member["workloads"][0]["checks"] if not c["ok"]]
    assert len(failing) == 1 and "autoscaling:DescribeAutoScalingInstances on " in failing[0]
    assert failing[0].startswith(f"scale_out: role {ROLE}: ") and "explicitDeny" in failing[0]
    assert sorted(c["PolicySourceArn"] for c in iam_simulation.calls) == [member_role, SCALE_ROLE]


def test_a_throttled_simulation_is_unknown_not_ready(
    store, lambda_context, tmp_path, monkeypatch, iam_simulation: Simulator, action_roles
):
    build_workload("web", min_size=1, max_size=6, desired=2)
    iam_simulation.throttle = True
    use_runtime_config(
        monkeypatch,
        tmp_path,
        plans=[plan("p", [{"action": "scale_out"}])],
        readiness=[{"workload": "web", "auto_scaling_group": "web-asg"}],
    )
    response = readiness.handler(scheduled_event(), lambda_context)
    (check,) = [c for c in response["results"][0]["workloads"][0]["checks"] if c["name"] == "permissions"]
    assert check["unknown"] and not check["ok"] and "Throttling" in check["evidence"]
    assert response["not_ready"] == ["p"]


# --- the cluster's endpoints, for real -------------------------------------------------------------


def _certificate(folder) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (clients trust it through AWS_CA_BUNDLE)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cluster.pem", folder / "cluster.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


class ClusterHandler(BaseHTTPRequestHandler):
    states = {PRIMARY: "On", STANDBY: "Off"}
    asked: list[tuple[str, str]] = []
    deny = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        self.asked.append((target, body.get("RoutingControlArn", "")))
        if self.deny:
            status, answer = 400, {"__type": "AccessDeniedException", "message": "not authorized"}
        elif target == "ToggleCustomerAPI.GetRoutingControlState":
            arn = body["RoutingControlArn"]
            status, answer = 200, {"RoutingControlArn": arn, "RoutingControlState": self.states[arn]}
        else:
            status, answer = 400, {"__type": "ValidationException", "message": f"unexpected {target}"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def cluster(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An HTTPS endpoint on 127.0.0.1 answering as an ARC cluster endpoint; its URL."""
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", cert)
    ClusterHandler.asked, ClusterHandler.deny = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), ClusterHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def arc_plan(endpoints: list[str]) -> dict:
    params = {
        "kind": "routing_control",
        "primary_routing_control_arn": PRIMARY,
        "standby_routing_control_arn": STANDBY,
        "cluster_endpoints": [
            {"Endpoint": e, "Region": r} for e, r in zip(endpoints, ["us-east-1", "us-west-2"], strict=True)
        ],
    }
    return plan("arc", [{"action": "failover", "params": params}])


def endpoint_checks(response) -> dict[str, dict]:
    return {c["name"]: c for c in response["results"][0]["workloads"][0]["checks"] if c["name"] != "permissions"}


def test_one_endpoint_answering_makes_the_cluster_reachable_and_each_endpoint_is_listed(
    store, lambda_context, tmp_path, monkeypatch, cluster
):
    closed = unreachable_endpoint()
    use_runtime_config(monkeypatch, tmp_path, plans=[arc_plan([closed, cluster])], readiness=[{"workload": "web"}])

    response = readiness.handler(scheduled_event(), lambda_context)

    checks = endpoint_checks(response)
    assert list(checks) == ["cluster endpoints"]
    evidence = checks["cluster endpoints"]["evidence"]
    assert checks["cluster endpoints"]["ok"] and evidence.startswith("1 of 2 answered: ")
    assert f"us-east-1 {closed}: no answer (" in evidence
    assert f"us-west-2 {cluster}: answered (primary On, standby Off)" in evidence
    # the data plane was asked for both routing controls, by the cluster API's own target
    assert ClusterHandler.asked == [
        ("ToggleCustomerAPI.GetRoutingControlState", PRIMARY),
        ("ToggleCustomerAPI.GetRoutingControlState", STANDBY),
    ]
    # permissions: no ACTION_ROLES here, said not checked
    assert response["results"][0]["workloads"][0]["not_checked"][0].startswith("permissions: no role of action")


def test_no_endpoint_answering_is_not_ready_and_a_refusal_is_reachable_but_a_permissions_failure(
    store, lambda_context, tmp_path, monkeypatch, cluster
):
    use_runtime_config(
        monkeypatch,
        tmp_path,
        plans=[arc_plan([unreachable_endpoint(), unreachable_endpoint()])],
        readiness=[{"workload": "web"}],
    )
    nowhere = readiness.handler(scheduled_event(), lambda_context)
    assert nowhere["not_ready"] == ["arc"]
    assert endpoint_checks(nowhere)["cluster endpoints"]["evidence"].startswith("0 of 2 answered")

    ClusterHandler.deny = True
    use_runtime_config(
        monkeypatch, tmp_path, plans=[arc_plan([cluster, unreachable_endpoint()])], readiness=[{"workload": "web"}]
    )
    refused = readiness.handler(scheduled_event(), lambda_context)
    checks = endpoint_checks(refused)
    assert checks["cluster endpoints"]["ok"]
    assert not checks["routing control access"]["ok"]
    assert "AccessDeniedException" in checks["routing control access"]["evidence"]
    assert refused["not_ready"] == ["arc"]
