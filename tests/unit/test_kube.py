"""core/kube.py: the EKS token as aws-iam-authenticator makes it, the API server's answers
classified, and the client reached only by the EKS modules (its import cost)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
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
def cluster(server: KubeServer, monkeypatch: pytest.MonkeyPatch) -> kube.Cluster:
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = server.url
    configuration.retries = 0
    return kube.Cluster("prod", k8s.CoreV1Api(k8s.ApiClient(configuration)))


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
    methods = [(m, p.split("?")[0]) for m, p, _ in server.state.requests]
    assert ("PATCH", "/api/v1/nodes/ip-10-0-1-5") in methods
    assert ("POST", "/api/v1/namespaces/shop/pods/web-1/eviction") in methods


@pytest.mark.parametrize(
    ("status", "error", "retried"),
    [
        (429, TransientError, True),
        (500, TransientError, True),
        (503, TransientError, True),
        (403, PermanentError, False),
        (404, kube.NotFound, False),
    ],
)
def test_the_api_servers_errors_are_classified(server, cluster, status, error, retried):
    server.state.fail_next(status)
    with pytest.raises(error) as raised:
        cluster.nodes()
    assert isinstance(raised.value, TransientError) is retried
    assert f"injected {status}" in str(raised.value)  # the server's message is kept


def test_a_server_that_does_not_answer_is_transient(server, cluster):
    server.stop()
    with pytest.raises(TransientError, match="no answer"):
        cluster.node("ip-10-0-1-5")


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
    assert remote.api.api_client.configuration.host == described["cluster"]["endpoint"]
    assert Path(remote.api.api_client.configuration.ssl_ca_cert).read_bytes() == b"PEM"

    kube.use_endpoint("prod", server.url)
    try:
        server.state.add_node("n", "i-0aaa")
        kube.connect("prod").nodes()
    finally:
        kube.use_endpoint("prod", None)
    assert server.state.requests[-1][2] == "Bearer tok-prod-us-east-1"


def test_only_the_eks_modules_load_the_kubernetes_client():
    modules = sorted(
        ".".join(p.relative_to(FUNCTIONS).with_suffix("").parts)
        for p in FUNCTIONS.rglob("*.py")
        if p.name != "__init__.py" and "eks" not in p.stem and p.stem != "kube"
    )
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n    importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('kubernetes'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=FUNCTIONS, capture_output=True, text=True, check=True)
    assert json.loads(loaded.stdout) == []
    assert len(modules) > 50  # every handler's module was imported, not none
