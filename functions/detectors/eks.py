"""Scheduled EKS check: EKS sends no event when a node fails or a node group cannot launch, so
each declared node group's `health.issues` (DescribeNodegroup) and its nodes (Kubernetes API:
Ready and the node monitoring agent's conditions) are read. A failing node is an
instance_failure naming the node and its instance, scoped for replace-failed-eks-node (with
its Auto Scaling group when the node group has exactly one: node_auto_scaling_group).

Ids: a node's comes from its condition's lastTransitionTime (a node that stays NotReady keeps
one id, so one being replaced is not raised again); node group issues carry no time, so theirs
keep one per window, as the sweep's.

Design: docs/detectors.md#eks-check
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Protocol

from msgspec import Meta

from core import aws, clock
from core.contract import AffectedResource, ImpairmentDetected, ImpairmentType, Severity, Signal, make_impairment_id
from core.errors import InvalidInput, RecoveryError
from core.model import Model, ValidationError
from core.observability import logger, metrics
from detectors.common import Findings, load_settings, parse_schedule, publish
from detectors.sweeps import window_start

SOURCE = "aws.eks"
# The node monitoring agent's conditions (besides Ready): False is a failing node.
AGENT_CONDITIONS = (
    "KernelReady",
    "NetworkingReady",
    "StorageReady",
    "ContainerRuntimeReady",
    "AcceleratedHardwareReady",
)
_ISSUE_LIMIT = 100

# Node group health issue code -> (impairment type, severity). Capacity the account or subnet
# lacks is resource_exhaustion; a node group that cannot launch or replace nodes is
# service_degradation (nothing it loses comes back); instances gone outside EKS are
# instance_failure. Codes not listed: service_degradation, medium.
ISSUE_CLASSES: dict[str, tuple[ImpairmentType, Severity]] = {
    "InstanceLimitExceeded": (ImpairmentType.RESOURCE_EXHAUSTION, Severity.HIGH),
    "InsufficientFreeAddresses": (ImpairmentType.RESOURCE_EXHAUSTION, Severity.HIGH),
    "IamLimitExceeded": (ImpairmentType.RESOURCE_EXHAUSTION, Severity.MEDIUM),
    "AsgInstanceLaunchFailures": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "NodeCreationFailure": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "AutoScalingGroupNotFound": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "Ec2LaunchTemplateNotFound": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "Ec2SecurityGroupNotFound": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "Ec2SubnetNotFound": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "IamInstanceProfileNotFound": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "IamNodeRoleNotFound": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "AmiIdNotFound": (ImpairmentType.SERVICE_DEGRADATION, Severity.HIGH),
    "ClusterUnreachable": (ImpairmentType.NETWORK_ISSUE, Severity.HIGH),
    "Ec2InstancesNotFound": (ImpairmentType.INSTANCE_FAILURE, Severity.MEDIUM),
}
_DEFAULT_CLASS = (ImpairmentType.SERVICE_DEGRADATION, Severity.MEDIUM)


class CheckFailed(RecoveryError):
    """No node group could be checked: the invocation fails, so the check's errors alarm fires."""


class NodeGroupRef(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A workload's declared node group, as the stack writes it in EKS_NODEGROUPS."""

    workload: Annotated[str, Meta(min_length=1)]
    cluster: Annotated[str, Meta(min_length=1)]
    nodegroup: Annotated[str, Meta(min_length=1)]
    account_id: str | None = None

    @property
    def scope(self) -> dict[str, str]:
        return {"eks_cluster": self.cluster, "eks_nodegroup": self.nodegroup}

    def key(self, suffix: str) -> str:
        """What an id is derived from; a member's account leads it (as the sweep's ids)."""
        base = f"{self.cluster}/{self.nodegroup}/{suffix}"
        return f"{self.account_id}/{base}" if self.account_id else base


def parse_nodegroups(raw: str) -> list[NodeGroupRef]:
    try:
        return [NodeGroupRef.model_validate(item) for item in json.loads(raw or "[]")]
    except (ValueError, TypeError, ValidationError) as exc:
        raise InvalidInput(f"EKS_NODEGROUPS is not a JSON list of node groups: {exc}") from exc


class Inventory(Protocol):
    def nodegroup(self, ref: NodeGroupRef) -> dict[str, Any]: ...

    def nodes(self, ref: NodeGroupRef) -> list[dict[str, Any]]: ...


class AwsInventory:
    """DescribeNodegroup, and the node group's nodes through the cluster's Kubernetes API."""

    def nodegroup(self, ref: NodeGroupRef) -> dict[str, Any]:
        from actions import eks

        client = aws.client("eks", account=ref.account_id)
        return eks.describe_nodegroup(client, ref.cluster, ref.nodegroup)

    def nodes(self, ref: NodeGroupRef) -> list[dict[str, Any]]:
        from core import kube  # imported where nodes are listed: a run with no cluster declared needs none of it

        return kube.connect(ref.cluster, account=ref.account_id).nodes(ref.nodegroup)


# --- classification (pure) ------------------------------------------------------------------


def health_issues(
    ref: NodeGroupRef, nodegroup: dict[str, Any], window: datetime, now: datetime
) -> ImpairmentDetected | None:
    """The node group's health issues as one impairment of the node group: the type and severity
    of its gravest code (ISSUE_CLASSES), every code and the resources they name in it."""
    issues = (nodegroup.get("health") or {}).get("issues") or []
    if not issues:
        return None
    classes = [ISSUE_CLASSES.get(str(i.get("code")), _DEFAULT_CLASS) for i in issues]
    impairment_type, severity = max(classes, key=lambda c: c[1].rank)
    codes = sorted({str(i.get("code")) for i in issues})
    arn = str(nodegroup.get("nodegroupArn") or f"{ref.cluster}/{ref.nodegroup}")
    named = sorted({r for i in issues for r in i.get("resourceIds") or []})
    said = "; ".join(f"{i.get('code')}: {i.get('message', '')}".strip() for i in issues)
    return ImpairmentDetected(
        impairment_id=make_impairment_id(ref.workload, SOURCE, ref.key("health"), window),
        impairment_type=impairment_type,
        severity=severity,
        workload=ref.workload,
        affected_resources=[AffectedResource(resource_type="eks:nodegroup", resource_id=arn)]
        + [AffectedResource(resource_type=_resource_type(r), resource_id=r) for r in named[: _ISSUE_LIMIT - 1]],
        signal=Signal(source=SOURCE, id=arn, signal_time=window, name=f"{ref.nodegroup} health issues"),
        detected_at=max(now, window),
        description=f"EKS node group {ref.cluster}/{ref.nodegroup} reports health issues: {said}"[:2048],
        metrics={"health_issues": float(len(issues))},
        scope={**ref.scope, "eks_health_issues": ",".join(codes)[:256]},
        account_id=ref.account_id,
    )


def _resource_type(resource_id: str) -> str:
    return "ec2:instance" if resource_id.startswith("i-") else "eks:resource"


def failing_condition(node: dict[str, Any]) -> dict[str, Any] | None:
    """The condition that says the node fails: Ready False or Unknown, else the first agent
    condition that is False; None for a healthy node."""
    from_type = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    ready = from_type.get("Ready")
    if ready is not None and ready.get("status") in ("False", "Unknown"):
        return ready
    return next((from_type[k] for k in AGENT_CONDITIONS if (from_type.get(k) or {}).get("status") == "False"), None)


def _instance_of(node: dict[str, Any]) -> str:
    # spec.providerID: aws:///<zone>/<instance id> (core.kube.instance_of, without importing core.kube)
    return str((node.get("spec") or {}).get("providerID") or "").rsplit("/", 1)[-1]


def _since(condition: dict[str, Any], window: datetime) -> datetime:
    raw = condition.get("lastTransitionTime")
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")) if raw else window
    except ValueError:
        return window


def node_auto_scaling_group(nodegroup: dict[str, Any]) -> str | None:
    """The Auto Scaling group every node of the node group is in: its only one
    (resources.autoScalingGroups); None when it has none or several (which holds a node is
    then looked up by the recovery, not guessed)."""
    names = {g.get("name") for g in (nodegroup.get("resources") or {}).get("autoScalingGroups") or []}
    names.discard(None)
    return str(names.pop()) if len(names) == 1 else None


def failing_nodes(
    ref: NodeGroupRef,
    nodes: list[dict[str, Any]],
    window: datetime,
    now: datetime,
    auto_scaling_group: str | None = None,
) -> list[ImpairmentDetected]:
    """An instance_failure per failing node (a node being deleted left), critical when most of
    the node group fails at once (fail open: a shared cause, CheckGuardrails decides).
    `auto_scaling_group`: the group all the node group's instances are in (node_auto_scaling_group),
    put in the scope."""
    group_scope = {"auto_scaling_group": auto_scaling_group} if auto_scaling_group else {}
    live = [n for n in nodes if not (n.get("metadata") or {}).get("deletionTimestamp")]
    failing = [(n, c) for n in live if (c := failing_condition(n)) is not None]
    fail_open = len(failing) * 2 > len(live)
    found = []
    for node, condition in failing:
        name, instance, kind = node["metadata"]["name"], _instance_of(node), str(condition["type"])
        since = _since(condition, window)
        is_ready = kind == "Ready"
        severity = Severity.CRITICAL if fail_open else (Severity.HIGH if is_ready else Severity.MEDIUM)
        found.append(
            ImpairmentDetected(
                impairment_id=make_impairment_id(ref.workload, SOURCE, ref.key(f"{name}#{kind}"), since),
                impairment_type=ImpairmentType.INSTANCE_FAILURE,
                severity=severity,
                workload=ref.workload,
                affected_resources=[AffectedResource(resource_type="ec2:instance", resource_id=instance)],
                signal=Signal(source=SOURCE, id=f"{ref.cluster}/{name}", signal_time=since, name=f"{name} {kind}"),
                detected_at=max(now, since),
                description=(
                    f"EKS node {name} (instance {instance}) of {ref.cluster}/{ref.nodegroup}: {kind} is "
                    f"{condition.get('status')} ({condition.get('reason', '')}: {condition.get('message', '')})"
                    + (" Most of the node group at once: likely a shared cause." if fail_open else "")
                )[:2048],
                metrics={"failing_nodes": float(len(failing)), "nodes": float(len(live))},
                scope={**ref.scope, "eks_node": name, "eks_condition": kind, **group_scope},
                account_id=ref.account_id,
            )
        )
    return found


def check(
    inventory: Inventory, refs: list[NodeGroupRef], checked_at: datetime, window_seconds: int, now: datetime
) -> tuple[Findings, list[dict[str, str]]]:
    """Both looks at every node group; a node group that cannot be read is logged, counted and
    left (the others are still checked). (findings, the node groups that failed)."""
    window = window_start(checked_at, window_seconds)
    detected: list[ImpairmentDetected] = []
    failed: list[dict[str, str]] = []
    for ref in refs:
        try:
            nodegroup = inventory.nodegroup(ref)
            issue = health_issues(ref, nodegroup, window, now)
            detected += [issue] if issue else []
            detected += failing_nodes(ref, inventory.nodes(ref), window, now, node_auto_scaling_group(nodegroup))
        # One node group's failure (its cluster's API, its role, its access entry) must not stop
        # the check of the others.
        except Exception as exc:  # noqa: BLE001
            details = exc.details if isinstance(exc, RecoveryError) else {"code": type(exc).__name__}
            logger.error("node group not checked", nodegroup=ref.key(""), error=str(exc), **details)
            metrics.add_metric(name="EksCheckErrors", unit="Count", value=1)
            failed.append({"nodegroup": f"{ref.cluster}/{ref.nodegroup}", "error": str(exc)})
    reason = f"checked {len(refs) - len(failed)} of {len(refs)} EKS node groups"
    return Findings(detected, [], reason if detected else f"{reason}: all healthy"), failed


# --- the handler ----------------------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: Any, context: Any, inventory: Inventory | None = None, publisher: Any = None) -> dict[str, Any]:
    """Entry point of the schedule. Input other than a scheduled event is logged and counted,
    never raised; CheckFailed when no node group could be checked (what was found is published
    first). `inventory` is for tests."""
    aws.know_identity(getattr(context, "invoked_function_arn", None))
    parsed, stop = parse_schedule(event)
    if stop is not None:
        return stop
    settings = load_settings("event_bus_name")
    refs = parse_nodegroups(settings.eks_nodegroups)
    findings, failed = check(
        inventory or AwsInventory(), refs, parsed.time, settings.sweep_window_seconds, clock.utc_now()
    )
    result = publish(findings, publisher, settings.event_bus_name)
    if refs and len(failed) == len(refs):
        raise CheckFailed(f"no EKS node group could be checked: {failed[0]['error']}", nodegroups_failed=failed)
    return {**result, "nodegroups": len(refs), "nodegroups_failed": failed}
