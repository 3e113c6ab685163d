"""An EKS cluster's Kubernetes API, as the EKS actions and the EKS check reach it: five REST calls
over urllib3 (botocore's own HTTP library: no client package to import), TLS verified with the
cluster's certificate authority, authenticated as aws-iam-authenticator does, errors classified.

The token is made here, with no call: a presigned STS GetCallerIdentity URL (60 s) signing the
header `x-k8s-aws-id: <cluster>`, as `k8s-aws-v1.` + base64url without padding. The endpoint and
authority come from DescribeCluster. 429 and 5xx are TransientError, 404 NotFound, other 4xx
PermanentError with the server's message, no answer or a time-out TransientError, a certificate
the authority did not sign PermanentError; an eviction answered 429 (a disruption budget) is
`evict`'s to read. The calls and their answers: docs/eks.md.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from core import aws
from core.errors import PermanentError, TransientError

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - the token format's prefix, not a secret
CLUSTER_ID_HEADER = "x-k8s-aws-id"
TOKEN_EXPIRES_SECONDS = 60
# (connect, read) seconds of every call: a Lambda of 60 s must not wait on one answer.
TIMEOUTS = (3, 10)
NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# How a node is patched: a strategic merge patch, as `kubectl cordon` sends it.
PATCH_CONTENT_TYPE = "application/strategic-merge-patch+json"

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


class ApiError(Exception):
    """The API server answered an error status (its Status object's message kept)."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status, self.reason, self.body = status, reason, body
        super().__init__(f"{status} {reason}: {_message(body)}")


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
    """An error of a call as TransientError, NotFound or PermanentError, the server's message kept."""
    if isinstance(exc, ApiError):
        status = exc.status
        text = f"Kubernetes {what} failed: {exc}"
        if status == 429 or status >= 500:
            return TransientError(text, operation=what, code=str(status))
        if status == 404:
            return NotFound(text, operation=what, code="404")
        return PermanentError(text, operation=what, code=str(status))
    if _untrusted_certificate(exc):
        return PermanentError(
            f"Kubernetes {what} failed: the API server's certificate is not signed by the cluster's authority: {exc}",
            operation=what,
            code="Certificate",
        )
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return TransientError(f"Kubernetes {what} failed: no answer: {exc}", operation=what, code="Connection")
    return PermanentError(f"Kubernetes {what} failed: {exc}", operation=what, code=type(exc).__name__)


def _untrusted_certificate(exc: BaseException | None) -> bool:
    """Whether the TLS handshake failed on the server's certificate (urllib3 wraps ssl's error)."""
    for _ in range(8):  # a chain of wrapped errors: a few deep at most
        if not isinstance(exc, BaseException):
            return False
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)
    return False


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body or b"{}").get("message") or body.decode(errors="replace"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace") if isinstance(body, bytes) else str(body)


class Cluster:
    """One cluster's API, with the calls the EKS actions and check make; answers as plain dicts.
    `authority`: the PEM of the certificate authority the server's certificate must be signed by
    (https only; None: the system's)."""

    def __init__(self, name: str, host: str, bearer: str = "", authority: str | None = None) -> None:
        self.name, self.host, self.bearer, self.authority = name, host, bearer, authority
        # One attempt, no redirect: retries belong to the state machine, as for every AWS call of an action.
        options: dict[str, Any] = {"retries": False}
        if self.host.startswith("https://"):
            options["cert_reqs"] = "CERT_REQUIRED"
            if self.authority:
                options["ca_cert_data"] = self.authority
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=1, **options)

    def _send(self, what: str, method: str, path: str, query: dict[str, str] | None = None, **body: Any) -> Any:
        """The call's answer (status, its JSON); no answer classified."""
        url = self.host.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": "impairment-recovery"}
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        data = None
        if "json" in body:
            data = json.dumps(body["json"]).encode()
            headers["Content-Type"] = body.get("content_type", "application/json")
        try:
            response = self._pool.request(
                method,
                url,
                body=data,
                headers=headers,
                timeout=urllib3.Timeout(connect=TIMEOUTS[0], read=TIMEOUTS[1]),
                retries=False,
                redirect=False,
            )
        except Exception as exc:
            raise classify(exc, what) from exc
        return response

    def _call(self, what: str, method: str, path: str, query: dict[str, str] | None = None, **body: Any) -> Any:
        response = self._send(what, method, path, query, **body)
        if response.status >= 400:
            error = ApiError(response.status, response.reason or "", response.data)
            raise classify(error, what) from error
        try:
            return json.loads(response.data or b"{}")
        except ValueError as exc:
            raise PermanentError(f"Kubernetes {what}: the answer is not JSON", operation=what) from exc

    def nodes(self, nodegroup: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": f"{NODEGROUP_LABEL}={nodegroup}"} if nodegroup else None
        return self._call("list nodes", "GET", "/api/v1/nodes", query).get("items", [])

    def node(self, name: str) -> dict[str, Any]:
        return self._call(f"get node {name}", "GET", f"/api/v1/nodes/{quote(name, safe='')}")

    def cordon(self, name: str, unschedulable: bool = True) -> dict[str, Any]:
        """Cordon (or uncordon) a node: PATCH spec.unschedulable."""
        what = f"{'cordon' if unschedulable else 'uncordon'} node {name}"
        patch = {"spec": {"unschedulable": unschedulable}}
        path = f"/api/v1/nodes/{quote(name, safe='')}"
        return self._call(what, "PATCH", path, json=patch, content_type=PATCH_CONTENT_TYPE)

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        found = self._call(f"list pods on {node}", "GET", "/api/v1/pods", {"fieldSelector": f"spec.nodeName={node}"})
        return found.get("items", [])

    def evict(self, namespace: str, pod: str) -> str:
        """Evict a pod (policy/v1 Eviction): "evicted", "refused" (429: its disruption budget does
        not allow it now; a throttled answer too, which waits the same), or "gone" (404)."""
        what = f"evict pod {namespace}/{pod}"
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/eviction"
        response = self._send(what, "POST", path, json=body)
        if response.status == 429:
            return "refused"
        if response.status == 404:
            return "gone"
        if response.status >= 400:
            error = ApiError(response.status, response.reason or "", response.data)
            raise classify(error, what) from error
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
    host = _endpoints.get(cluster) or described["endpoint"]
    authority = (described.get("certificateAuthority") or {}).get("data")
    return Cluster(
        cluster, host, token(cluster, region, credentials), _pem(authority) if host.startswith("https://") else None
    )


def _pem(data: str | None) -> str | None:
    """DescribeCluster's certificateAuthority.data (base64 of the PEM) as the PEM urllib3 verifies with."""
    if not data:
        return None
    try:
        return base64.b64decode(data, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentError("DescribeCluster's certificateAuthority.data is not a base64 PEM") from exc


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
