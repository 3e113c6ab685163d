"""A Kubernetes API server on 127.0.0.1 (http, or https with `tls`), small and in process: what the
EKS actions and detector call, answered as the real API server answers it (moto has none).

Served: GET /api/v1/nodes (labelSelector), GET, PATCH (a merge or strategic merge patch, else
415) and DELETE /api/v1/nodes/<name>, GET /api/v1/pods (fieldSelector spec.nodeName=), POST
/api/v1/namespaces/<ns>/pods/<pod>/eviction (a policy/v1 Eviction of that pod, else 400): 201 and
the pod is gone, or 429 as a PodDisruptionBudget refuses (a pod's `refusals`, -1: always).
`fail_next(status, times)` answers the next requests with that status. Each request's method,
path and Authorization are kept in `requests`, its Content-Type in `content_types`.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PDB_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget."
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


@dataclass
class KubeState:
    """What the server holds: nodes and pods as the API shows them, and the faults to answer."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (namespace, pod) -> evictions its disruption budget still refuses (-1: all)
    refusals: dict[tuple[str, str], int] = field(default_factory=dict)
    faults: list[int] = field(default_factory=list)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    evicted: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_node(
        self,
        name: str,
        instance_id: str,
        *,
        zone: str = "us-east-1a",
        nodegroup: str = "",
        ready: bool = True,
        conditions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A node of an EC2 instance (its providerID), Ready or not, with more conditions
        (type -> "True"/"False": the node monitoring agent's KernelReady, NetworkingReady...)."""
        labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}
        if nodegroup:
            labels["eks.amazonaws.com/nodegroup"] = nodegroup
        all_conditions = {"Ready": "True" if ready else "Unknown", **(conditions or {})}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels},
            "spec": {"providerID": f"aws:///{zone}/{instance_id}"},
            "status": {
                "conditions": [
                    {
                        "type": kind,
                        "status": status,
                        "reason": f"{kind}{'' if status == 'True' else 'Failure'}",
                        "message": f"{kind} is {status}",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                    for kind, status in all_conditions.items()
                ]
            },
        }
        with self.lock:
            self.nodes[name] = node
        return node

    def set_condition(self, node: str, kind: str, status: str, at: str | None = None) -> None:
        """Set a node's condition (`at`: its lastTransitionTime, as the kubelet reports it)."""
        condition = {"type": kind, "status": status, "reason": kind, "message": f"{kind} is {status}"}
        if at:
            condition["lastTransitionTime"] = at
        with self.lock:
            conditions = self.nodes[node]["status"]["conditions"]
            conditions[:] = [c for c in conditions if c["type"] != kind]
            conditions.append(condition)

    def add_pod(
        self, namespace: str, name: str, node: str, *, owner_kind: str = "ReplicaSet", mirror: bool = False, refusals=0
    ) -> None:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
        if owner_kind:
            metadata["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": owner_kind, "name": f"{name}-owner", "uid": f"uid-{name}-owner"}
            ]
        if mirror:
            metadata["annotations"] = {"kubernetes.io/config.mirror": "hash"}
        with self.lock:
            self.pods[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": metadata,
                "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
                "status": {"phase": "Running"},
            }
            self.refusals[(namespace, name)] = refusals

    def fail_next(self, status: int, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([status] * times)


def _status(code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A Status object, as the API server answers an error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if causes:
        body["details"] = {"causes": causes}
    return body


def _matches(labels: dict[str, str], selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
    return all(labels.get(k) == v for k, v in wanted.items())


class _Handler(BaseHTTPRequestHandler):
    state: KubeState  # set on the subclass each server makes

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is not the server's access log."""

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        state = self.state
        with state.lock:
            state.requests.append((method, self.path, self.headers.get("Authorization", "")))
            state.content_types.append(self.headers.get("Content-Type", ""))
            fault = state.faults.pop(0) if state.faults else None
        if fault is not None:
            self._answer(fault, _status(fault, "InternalError" if fault >= 500 else "Forbidden", f"injected {fault}"))
            return
        parts = [p for p in url.path.split("/") if p]
        self._answer(*self._dispatch(method, parts, query))

    def _dispatch(self, method: str, parts: list[str], query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        state = self.state
        if parts[:3] == ["api", "v1", "nodes"]:
            return self._nodes(method, parts[3] if len(parts) > 3 else None, query)
        if parts == ["api", "v1", "pods"] and method == "GET":
            node = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
            with state.lock:
                items = [p for p in state.pods.values() if not node or p["spec"]["nodeName"] == node]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        if len(parts) == 7 and parts[2] == "namespaces" and parts[4] == "pods" and parts[6] == "eviction":
            body = self._body()
            wanted = {"name": parts[5], "namespace": parts[3]}
            metadata = body.get("metadata") or {}
            if (body.get("apiVersion"), body.get("kind")) != ("policy/v1", "Eviction") or any(
                metadata.get(k, v if k == "namespace" else None) != v for k, v in wanted.items()
            ):
                return 400, _status(400, "BadRequest", f"not a policy/v1 Eviction of {parts[3]}/{parts[5]}: {body}")
            return self._evict(parts[3], parts[5])
        return 404, _status(404, "NotFound", f"no route {method} {self.path}")

    def _nodes(self, method: str, name: str | None, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        state = self.state
        with state.lock:
            if name is None and method == "GET":
                selector = query.get("labelSelector", "")
                items = [n for n in state.nodes.values() if _matches(n["metadata"]["labels"], selector)]
                return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items}
            if name not in state.nodes:
                return 404, _status(404, "NotFound", f'nodes "{name}" not found')
            node = state.nodes[name]
            if method == "PATCH":
                kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if kind not in PATCH_TYPES:
                    return 415, _status(
                        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {kind}"
                    )
                patch = self._body()
                node["spec"].update(patch.get("spec") or {})
                node["metadata"]["labels"].update((patch.get("metadata") or {}).get("labels") or {})
            elif method == "DELETE":
                del state.nodes[name]
            return 200, node

    def _evict(self, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        state = self.state
        key = (namespace, name)
        with state.lock:
            if key not in state.pods:
                return 404, _status(404, "NotFound", f'pods "{name}" not found')
            left = state.refusals.get(key, 0)
            if left != 0:
                state.refusals[key] = left - 1 if left > 0 else left
                cause = {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {name}-pdb needs 1 healthy pods",
                }
                return 429, _status(429, "TooManyRequests", PDB_REFUSAL, [cause])
            del state.pods[key]
            state.evicted.append(key)
        return 201, _status(201, "", "") | {"status": "Success"}

    def do_GET(self) -> None:
        self._route("GET")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")


class KubeServer:
    """The server on an ephemeral port of 127.0.0.1, serving from a thread until stopped."""

    def __init__(self, state: KubeState | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.state = state or KubeState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._scheme = "https" if tls else "http"
        if tls:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    def start(self) -> KubeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
