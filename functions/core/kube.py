"""An EKS cluster's Kubernetes API, as the EKS actions and the EKS check reach it: through the
official client, authenticated as aws-iam-authenticator does, every error classified.

The token is made here, with no call: a presigned STS GetCallerIdentity URL (60 s) signing the
header `x-k8s-aws-id: <cluster>`, as `k8s-aws-v1.` + base64url without padding. The endpoint and
certificate authority come from DescribeCluster. Only the EKS modules import this one (the
client's import cost is theirs alone: tests/unit/test_kube.py checks).

Answers: 429 and 5xx are TransientError, 404 NotFound (the node or pod is gone), 401/403
PermanentError with the server's message (the stack's access entry is missing or too narrow), no
answer TransientError. An eviction refused by a disruption budget (429) is `evict`'s to read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from core import aws
from core.errors import PermanentError, TransientError

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - the token format's prefix, not a secret
CLUSTER_ID_HEADER = "x-k8s-aws-id"
TOKEN_EXPIRES_SECONDS = 60
# (connect, read) seconds of every call: a Lambda of 60 s must not wait on one answer.
TIMEOUTS = (3, 10)
NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# How long a connection (its DescribeCluster and token) is used again: an invocation plans, then
# drains, through one, and a retry's replay of its recorded plan too. Well within the token's
# 60 s, so a reused token never expires in a call.
REUSE_SECONDS = 40

# cluster name -> API server URL, used instead of DescribeCluster's endpoint (the emulator and
# the tests: a local server on 127.0.0.1). Empty in Lambda.
_endpoints: dict[str, str] = {}


def use_endpoint(cluster: str, url: str | None) -> None:
    """Reach `cluster`'s API server at `url` (emulator and tests only; None: DescribeCluster's again)."""
    aws.kept(__name__).clear()
    if url is None:
        _endpoints.pop(cluster, None)
    else:
        _endpoints[cluster] = url


class NotFound(PermanentError):
    """The API server answered 404: the node or pod is gone."""


def token(cluster: str, region: str, credentials: Any = None) -> str:
    """The bearer token for `cluster`: made locally (a presigned URL), as aws-iam-authenticator makes it."""
    import boto3

    options: dict[str, Any] = {"region_name": region}
    if credentials:
        options |= {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials.get("SessionToken"),
        }
    # A client of its own: the header handler below must not stay on a shared client.
    sts = boto3.client("sts", endpoint_url=f"https://sts.{region}.amazonaws.com", **options)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url(
        "get_caller_identity", Params={}, ExpiresIn=TOKEN_EXPIRES_SECONDS, HttpMethod="GET"
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def classify(exc: Exception, what: str) -> PermanentError | TransientError:
    """An error of the client as TransientError, NotFound or PermanentError, the server's message kept."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = _message(exc)
        text = f"Kubernetes {what} failed: {status} {exc.reason}: {message}"
        if status == 429 or status >= 500:
            return TransientError(text, operation=what, code=str(status))
        if status == 404:
            return NotFound(text, operation=what, code="404")
        return PermanentError(text, operation=what, code=str(status))
    if isinstance(exc, (Urllib3Error, OSError)):
        return TransientError(f"Kubernetes {what} failed: no answer: {exc}", operation=what, code="Connection")
    return PermanentError(f"Kubernetes {what} failed: {exc}", operation=what, code=type(exc).__name__)


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except (ValueError, AttributeError):
        return str(exc.body or "")


@dataclass
class Cluster:
    """One cluster's API, with the calls the EKS actions and check make; answers as plain dicts."""

    name: str
    api: Any  # kubernetes.client.CoreV1Api

    def _call(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            response = call(*args, _preload_content=False, _request_timeout=TIMEOUTS, **kwargs)
            return json.loads(response.data or b"{}")
        except Exception as exc:
            raise classify(exc, what) from exc

    def nodes(self, nodegroup: str | None = None) -> list[dict[str, Any]]:
        selector = f"{NODEGROUP_LABEL}={nodegroup}" if nodegroup else None
        kwargs = {"label_selector": selector} if selector else {}
        return self._call("list nodes", self.api.list_node, **kwargs).get("items", [])

    def node(self, name: str) -> dict[str, Any]:
        return self._call(f"get node {name}", self.api.read_node, name)

    def cordon(self, name: str, unschedulable: bool = True) -> dict[str, Any]:
        """Cordon (or uncordon) a node: PATCH spec.unschedulable."""
        what = f"{'cordon' if unschedulable else 'uncordon'} node {name}"
        return self._call(what, self.api.patch_node, name, {"spec": {"unschedulable": unschedulable}})

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        what = f"list pods on {node}"
        found = self._call(what, self.api.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}")
        return found.get("items", [])

    def evict(self, namespace: str, pod: str) -> str:
        """Evict a pod (policy/v1 Eviction): "evicted", "refused" (429: its disruption budget does
        not allow it now; a throttled answer too, which waits the same), or "gone" (404)."""
        body = k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=pod, namespace=namespace))
        try:
            self.api.create_namespaced_pod_eviction(pod, namespace, body, _request_timeout=TIMEOUTS)
        except ApiException as exc:
            if exc.status == 429:
                return "refused"
            if exc.status == 404:
                return "gone"
            raise classify(exc, f"evict pod {namespace}/{pod}") from exc
        except Exception as exc:
            raise classify(exc, f"evict pod {namespace}/{pod}") from exc
        return "evicted"


def connect(cluster: str, account: str | None = None, region: str | None = None) -> Cluster:
    """The cluster's API: its endpoint and certificate authority from DescribeCluster, a fresh
    token; the same connection again within REUSE_SECONDS."""
    # (cluster, account, region) -> (monotonic time made, the connection), in the warm environment
    connections = aws.kept(__name__)
    key = (cluster, account, region)
    made = connections.get(key)
    if made and time.monotonic() - made[0] < REUSE_SECONDS:
        return made[1]
    connection = _connect(cluster, account, region)
    connections[key] = (time.monotonic(), connection)
    return connection


def _connect(cluster: str, account: str | None, region: str | None) -> Cluster:
    eks = aws.client("eks", max_attempts=1, account=account, region=region)
    described = aws.call(eks, "describe_cluster", name=cluster)["cluster"]
    region = region or eks.meta.region_name
    own = not account or account == aws.own_account()
    credentials = None if own else aws.member_credentials(account)
    configuration = k8s.Configuration()
    configuration.host = _endpoints.get(cluster) or described["endpoint"]
    configuration.api_key = {"authorization": token(cluster, region, credentials)}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    authority = (described.get("certificateAuthority") or {}).get("data")
    if authority and configuration.host.startswith("https://"):
        configuration.ssl_ca_cert = _ca_file(authority)
    # One attempt: retries belong to the state machine, as for every AWS call of an action.
    configuration.retries = 0
    return Cluster(cluster, k8s.CoreV1Api(k8s.ApiClient(configuration)))


def _ca_file(data: str) -> str:
    """The cluster's certificate authority as a file (what the client reads), kept per content."""
    path = os.path.join(tempfile.gettempdir(), f"eks-ca-{hashlib.sha256(data.encode()).hexdigest()[:16]}.pem")
    if not os.path.exists(path):
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))
    return path


# --- what a node says, as the actions and the check read it ---


def instance_of(node: dict[str, Any]) -> str:
    """The EC2 instance id of a node (its spec.providerID, aws:///<zone>/<instance id>)."""
    return str((node.get("spec") or {}).get("providerID") or "").rsplit("/", 1)[-1]


def conditions(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (node.get("status") or {}).get("conditions") or [] if "type" in c}


def is_ready(node: dict[str, Any]) -> bool:
    return (conditions(node).get("Ready") or {}).get("status") == "True"


def is_cordoned(node: dict[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def evictable(pod: dict[str, Any]) -> bool:
    """A pod a drain evicts: not a DaemonSet's (its controller would put it back on the node), not
    a mirror pod (the kubelet's static pod: the API cannot evict it), not finished."""
    metadata = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (metadata.get("annotations") or {}):
        return False
    if any(o.get("kind") == "DaemonSet" for o in metadata.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
