"""core/kube.py: the EKS token as aws-iam-authenticator makes it, the REST calls as the API server
serves them (paths, verbs, content types, the Eviction body, the bearer token, TLS with the
cluster's authority), its answers classified, and no client package imported (its cold start)."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from core import kube
from core.errors import PermanentError, TransientError
from recoveryctl.emulator.kube_server import KubeServer

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture
def server() -> Iterator[KubeServer]:
    running = KubeServer().start()
    yield running
    running.stop()


@pytest.fixture
def cluster(server: KubeServer) -> kube.Cluster:
    return kube.Cluster("prod", server.url, "tok")


def _decoded(token: str) -> str:
    assert token.startswith("k8s-aws-v1.")
    body = token.removeprefix("k8s-aws-v1.")
    assert "=" not in body and "+" not in body and "/" not in body  # base64url, no padding
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def test_the_token_is_a_presigned_get_caller_identity_bound_to_the_cluster():
    credentials = {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "secret"}
    url = urlparse(_decoded(kube.token("prod", "eu-west-1", credentials)))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}

    assert url.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == "GetCallerIdentity"
    assert query["X-Amz-Expires"] == "60"
    # the header the API server checks is signed, so a token of one cluster is refused by another
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert query["X-Amz-Credential"].startswith("AKIDEXAMPLE/")


def test_a_member_accounts_token_carries_its_session():
    member = {"AccessKeyId": "ASIAMEMBER", "SecretAccessKey": "s", "SessionToken": "session"}
    query = parse_qs(urlparse(_decoded(kube.token("prod", "us-east-1", member))).query)

    assert query["X-Amz-Credential"][0].startswith("ASIAMEMBER/")
    assert query["X-Amz-Security-Token"] == ["session"]


def test_cordon_pods_and_evictions_against_the_api_server(server, cluster):
    server.state.add_node("ip-10-0-1-5", "i-0aaa", nodegroup="workers")
    server.state.add_node("ip-10-0-2-6", "i-0bbb", nodegroup="other")
    server.state.add_pod("shop", "web-1", "ip-10-0-1-5", refusals=1)
    server.state.add_pod("kube-system", "aws-node-x", "ip-10-0-1-5", owner_kind="DaemonSet")
    server.state.add_pod("kube-system", "static", "ip-10-0-1-5", owner_kind="", mirror=True)

    assert [kube.instance_of(n) for n in cluster.nodes("workers")] == ["i-0aaa"]
    assert kube.is_cordoned(cluster.cordon("ip-10-0-1-5"))
    assert [p["metadata"]["name"] for p in cluster.pods_on("ip-10-0-1-5") if kube.evictable(p)] == ["web-1"]
    # the budget refuses once (429), then allows; the pod is then gone
    assert [cluster.evict("shop", "web-1") for _ in range(3)] == ["refused", "evicted", "gone"]
    assert not kube.is_cordoned(cluster.cordon("ip-10-0-1-5", False))
    sent = [(m, p, t) for (m, p, _), t in zip(server.state.requests, server.state.content_types, strict=True)]
    assert sent[0] == ("GET", "/api/v1/nodes?labelSelector=eks.amazonaws.com%2Fnodegroup%3Dworkers", "")
    assert sent[1] == ("PATCH", "/api/v1/nodes/ip-10-0-1-5", "application/strategic-merge-patch+json")
    assert sent[2] == ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dip-10-0-1-5", "")
    assert sent[3] == ("POST", "/api/v1/namespaces/shop/pods/web-1/eviction", "application/json")
    assert {a for _, _, a in server.state.requests} == {"Bearer tok"}


def test_a_node_and_an_unknown_node_read_by_name(server, cluster):
    server.state.add_node("ip-10-0-1-5", "i-0aaa")
    assert kube.instance_of(cluster.node("ip-10-0-1-5")) == "i-0aaa"
    with pytest.raises(kube.NotFound, match='nodes "ip-10-0-9-9" not found'):
        cluster.node("ip-10-0-9-9")


@pytest.mark.parametrize(
    ("status", "error", "retried"),
    [
        (429, TransientError, True),
        (500, TransientError, True),
        (503, TransientError, True),
        (502, TransientError, True),
        (401, PermanentError, False),
        (403, PermanentError, False),
        (404, kube.NotFound, False),
        (409, PermanentError, False),
    ],
)
def test_the_api_servers_errors_are_classified(server, cluster, status, error, retried):
    server.state.fail_next(status)
    with pytest.raises(error) as raised:
        cluster.nodes()
    assert isinstance(raised.value, TransientError) is retried
    assert isinstance(raised.value, kube.NotFound) is (status == 404)
    assert raised.value.details["code"] == str(status)
    assert f"injected {status}" in str(raised.value)  # the server's message is kept


@pytest.mark.parametrize(("status", "answer"), [(429, "refused"), (404, "gone")])
def test_an_eviction_refused_by_its_budget_or_of_a_pod_gone_is_an_answer_not_an_error(server, cluster, status, answer):
    server.state.add_node("n", "i-0aaa")
    server.state.add_pod("shop", "web-1", "n")
    server.state.fail_next(status)
    assert cluster.evict("shop", "web-1") == answer
    assert ("shop", "web-1") not in server.state.evicted


def test_a_server_that_does_not_answer_is_transient(server, cluster):
    server.stop()
    with pytest.raises(TransientError, match="no answer"):
        cluster.node("ip-10-0-1-5")


def test_a_server_that_accepts_but_never_answers_times_out_as_transient(monkeypatch):
    # A listening socket that never accepts: the connection is made (the backlog), no answer comes.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    monkeypatch.setattr(kube, "TIMEOUTS", (2, 0.2))
    try:
        with pytest.raises(TransientError, match="no answer") as raised:
            kube.Cluster("prod", f"http://127.0.0.1:{silent.getsockname()[1]}").nodes()
    finally:
        silent.close()
    assert "timed out" in str(raised.value).lower()


def test_an_eviction_the_server_fails_is_not_read_as_a_budget(server, cluster):
    server.state.add_node("n", "i-0aaa")
    server.state.add_pod("shop", "web-1", "n")
    server.state.fail_next(500)
    with pytest.raises(TransientError):
        cluster.evict("shop", "web-1")
    server.state.fail_next(403)
    with pytest.raises(PermanentError, match="403"):
        cluster.evict("shop", "web-1")


def test_connect_reads_the_endpoint_and_authority_and_sends_the_token(server, monkeypatch):
    monkeypatch.setattr(kube.aws, "own_account", lambda: "123456789012")

    class Eks:
        meta = type("Meta", (), {"region_name": "us-east-1"})()

    described = {
        "cluster": {
            "endpoint": "https://ABC.gr7.us-east-1.eks.amazonaws.com",
            "certificateAuthority": {"data": base64.b64encode(b"PEM").decode()},
        }
    }
    monkeypatch.setattr(kube.aws, "client", lambda *a, **k: Eks())
    monkeypatch.setattr(kube.aws, "call", lambda client, op, **k: described)
    monkeypatch.setattr(kube, "token", lambda cluster, region, credentials=None: f"tok-{cluster}-{region}")

    remote = kube.connect("prod")
    assert remote.host == described["cluster"]["endpoint"]
    assert remote.authority == "PEM"  # DescribeCluster's base64, decoded: the PEM urllib3 verifies with
    assert remote.bearer == "tok-prod-us-east-1"

    kube.use_endpoint("prod", server.url)
    try:
        server.state.add_node("n", "i-0aaa")
        kube.connect("prod").nodes()
    finally:
        kube.use_endpoint("prod", None)
    assert server.state.requests[-1][2] == "Bearer tok-prod-us-east-1"


def test_no_function_loads_a_kubernetes_client_package_and_kube_adds_none_to_boto3():
    # Every function module imported: no `kubernetes` package (the REST calls are core/kube.py's
    # own, over urllib3); and core.kube, after boto3, loads no third-party package boto3 has not.
    modules = sorted(
        ".".join(p.relative_to(FUNCTIONS).with_suffix("").parts)
        for p in FUNCTIONS.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, json, sys\n"
        "import boto3\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import core.kube\n"
        "added = {m.split('.')[0] for m in sys.modules} - before - set(sys.stdlib_module_names) - {'core'}\n"
        f"for m in {modules!r}:\n    importlib.import_module(m)\n"
        "print(json.dumps([sorted(added), sorted(m for m in sys.modules if m.startswith('kubernetes'))]))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=FUNCTIONS, capture_output=True, text=True, check=True)
    added, kubernetes = json.loads(loaded.stdout)
    assert added == [] and kubernetes == []
    assert len(modules) > 50 and "core.kube" in modules and "actions.replace_eks_node" in modules


# --- TLS with the cluster's certificate authority ---


def _authority(common_name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _pem(certificate: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.PEM).decode()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[KubeServer, str]]:
    """The server over https, its certificate (for 127.0.0.1) signed by a cluster's authority;
    with that authority's PEM, as DescribeCluster gives it decoded."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key, ca = _authority("kubernetes")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "server.pem").write_bytes(certificate.public_bytes(Encoding.PEM))
    (tmp_path / "server.key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    running = KubeServer(tls=context).start()
    yield running, _pem(ca)
    running.stop()


def test_the_api_server_is_reached_over_tls_verified_with_the_clusters_authority(tls_server):
    server, authority = tls_server
    server.state.add_node("n", "i-0aaa")
    assert server.url.startswith("https://127.0.0.1:")

    nodes = kube.Cluster("prod", server.url, "tok", authority).nodes()

    assert [kube.instance_of(n) for n in nodes] == ["i-0aaa"]
    assert server.state.requests[-1][2] == "Bearer tok"  # the token went over the verified connection


@pytest.mark.parametrize("authority", ["another", None], ids=["another-clusters-authority", "the-systems"])
def test_a_certificate_the_clusters_authority_did_not_sign_is_refused_and_permanent(tls_server, authority):
    server, _ = tls_server
    other = _pem(_authority("another")[1]) if authority else None

    with pytest.raises(PermanentError, match="not signed by the cluster's authority") as raised:
        kube.Cluster("prod", server.url, "tok", other).nodes()

    assert not isinstance(raised.value, TransientError) and raised.value.details["code"] == "Certificate"
    assert server.state.requests == []  # no request (nor its token) reached the server
