"""A workload's EKS managed node group in the emulator, backed as EKS backs it. moto's EKS keeps
clusters and node groups but no nodes, no Auto Scaling group and no API server: the emulator
creates the group EKS would (named as DescribeNodegroup names it, eks-<nodegroup>-<id>), runs the
local Kubernetes API server (kube_server.py) with one Ready node per in-service instance, points
DescribeCluster's endpoint at it (plain http on 127.0.0.1: core/kube.py reads a CA only for
https, so production TLS is untouched), and keeps the nodes in step with the group whenever the
clock is about to move: a terminated instance's node goes, a stopped one's goes NotReady, a
launched one's node joins Ready.

Design: docs/emulator.md#eks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recoveryctl.emulator import workload as workload_parts
from recoveryctl.emulator.kube_server import KubeServer

NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
APP_PODS_PER_NODE = 2


@dataclass
class NodeGroup:
    """One backed node group: its moto account and region, its Auto Scaling group, its server."""

    account: str
    region: str
    cluster: str
    nodegroup: str
    group: str
    namespace: str
    server: KubeServer
    nodes_of: dict[str, str] = field(default_factory=dict)  # instance id -> node name

    def _moto_group(self) -> Any:
        from moto.autoscaling.models import autoscaling_backends

        return autoscaling_backends[self.account][self.region].autoscaling_groups[self.group]

    def _moto_nodegroup(self) -> Any:
        from moto.eks.models import eks_backends

        return eks_backends[self.account][self.region].clusters[self.cluster].nodegroups[self.nodegroup]

    def sync(self, initial: bool = False) -> None:
        """EKS's part: the group follows the node group's desired size (UpdateNodegroupConfig),
        and the nodes follow the group's instances (read from moto, not through the API, so no
        injected fault or regional outage of a drill touches the emulator's own bookkeeping)."""
        group = self._moto_group()
        desired = self._moto_nodegroup().scaling_config.get("desiredSize")
        if desired is not None and desired != group.desired_capacity:
            group.set_desired_capacity(desired)
        serving = {
            s.instance.id: s.instance
            for s in group.instance_states
            if s.lifecycle_state == "InService" and s.instance.state not in ("shutting-down", "terminated")
        }
        for instance_id, node in list(self.nodes_of.items()):
            if instance_id not in serving:
                self._remove(instance_id, node)
            elif serving[instance_id].state != "running":
                self._stopped(node)
        for instance_id, instance in sorted(serving.items()):
            if instance_id not in self.nodes_of and instance.state == "running":
                self._join(instance, app_pods=APP_PODS_PER_NODE if initial else 0)

    def _stopped(self, node: str) -> None:
        """A stopped instance's node stays registered, NotReady: its kubelet posts no status."""
        from core import clock

        ready = next(c for c in self.server.state.nodes[node]["status"]["conditions"] if c["type"] == "Ready")
        if ready["status"] == "True":
            self.server.state.set_condition(node, "Ready", "Unknown", at=clock.utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"))

    def _join(self, instance: Any, app_pods: int) -> None:
        """A node for the instance, Ready, named by its private DNS name as EKS's nodes are; the
        DaemonSet's pod on it, and at the start the workload's own pods."""
        name = f"ip-{instance.private_ip.replace('.', '-')}.{self.region}.compute.internal"
        state = self.server.state
        state.add_node(name, instance.id, zone=instance.availability_zone, nodegroup=self.nodegroup)
        state.add_pod("kube-system", f"aws-node-{instance.id[-5:]}", name, owner_kind="DaemonSet")
        for number in range(app_pods):
            state.add_pod(self.namespace, f"{self.namespace}-{instance.id[-5:]}-{number}", name)
        self.nodes_of[instance.id] = name

    def _remove(self, instance_id: str, node: str) -> None:
        """The instance is gone: its node deregisters, and the pods bound to it go with it."""
        state = self.server.state
        with state.lock:
            state.nodes.pop(node, None)
            for key in [k for k, pod in state.pods.items() if pod["spec"]["nodeName"] == node]:
                del state.pods[key]
        del self.nodes_of[instance_id]

    def fail(self, count: int, refusals: int) -> list[str]:
        """The first `count` nodes go NotReady (Ready: Unknown, as when the kubelet stops posting
        status); each one's first workload pod is guarded by a disruption budget that refuses
        `refusals` evictions (-1: all). Returns their instances."""
        from core import clock

        now = clock.utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
        victims = sorted(self.nodes_of.items())[:count]
        state = self.server.state
        for _, node in victims:
            state.set_condition(node, "Ready", "Unknown", at=now)
            guarded = sorted(
                k for k, p in state.pods.items() if p["spec"]["nodeName"] == node and k[0] != "kube-system"
            )
            if guarded and refusals:
                with state.lock:
                    state.refusals[guarded[0]] = refusals
        return [instance for instance, _ in victims]

    def state(self) -> dict[str, Any]:
        """The node group as a user would look at it: kubectl get nodes, and the node group's size."""
        with self.server.state.lock:
            nodes = {
                name: {
                    "instance": node["spec"]["providerID"].rsplit("/", 1)[-1],
                    "ready": any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]),
                    "cordoned": bool(node["spec"].get("unschedulable")),
                }
                for name, node in sorted(self.server.state.nodes.items())
            }
        group = self._moto_group()
        return {
            "cluster": self.cluster,
            "nodegroup": self.nodegroup,
            "group": self.group,
            "desired_size": self._moto_nodegroup().scaling_config.get("desiredSize"),
            "in_service": sorted(s.instance.id for s in group.instance_states if s.lifecycle_state == "InService"),
            "nodes": nodes,
        }


def build(emulator: Any, workload: dict[str, Any], shape: Any, managed_tag: tuple[str, str]) -> NodeGroup:
    """The workload's cluster, managed node group (opted in), its Auto Scaling group of `shape`
    and its nodes; stopped with the emulator."""
    from moto.eks.models import eks_backends

    ref, name = workload["eks"], workload["name"]
    eks = emulator.client("eks")
    _, subnets = workload_parts.network(emulator, "10.60", "abc")
    eks.create_cluster(
        name=ref["cluster"],
        roleArn=f"arn:aws:iam::{emulator.acting_account}:role/{name}-eks-cluster",
        resourcesVpcConfig={"subnetIds": subnets},
    )
    tags = {managed_tag[0]: managed_tag[1], "recovery:workload": name}
    eks.create_nodegroup(
        clusterName=ref["cluster"],
        nodegroupName=ref["nodegroup"],
        nodeRole=f"arn:aws:iam::{emulator.acting_account}:role/{name}-eks-node",
        subnets=subnets,
        scalingConfig={"minSize": shape.min_size, "maxSize": shape.max_size, "desiredSize": shape.desired},
        tags=tags,
    )
    cluster = eks_backends[emulator.acting_account][emulator.region].clusters[ref["cluster"]]
    moto_nodegroup = cluster.nodegroups[ref["nodegroup"]]
    # EKS names the group after the node group (moto: eks-<uuid>); the IAM policy's eks-* holds either way.
    group = f"eks-{ref['nodegroup']}-{moto_nodegroup.uuid}"
    moto_nodegroup.resources["autoScalingGroups"] = [{"name": group}]
    _create_group(emulator, group, ref, shape, subnets)
    server = KubeServer().start()
    emulator.on_exit(server.stop)
    cluster.endpoint = server.url  # DescribeCluster answers the local server
    backed = NodeGroup(emulator.acting_account, emulator.region, ref["cluster"], ref["nodegroup"], group, name, server)
    backed.sync(initial=True)
    emulator.idle_hooks.append(backed.sync)
    emulator.eks_nodegroups = {**getattr(emulator, "eks_nodegroups", {}), name: backed}
    return backed


def _create_group(emulator: Any, group: str, ref: dict[str, str], shape: Any, subnets: list[str]) -> None:
    """The group EKS creates: its own launch template, EKS's tags (not the managed tag: EKS does
    not copy the node group's tags to it), EC2 health checks."""
    emulator.client("ec2").create_launch_template(
        LaunchTemplateName=group, LaunchTemplateData={"ImageId": "ami-0eks0000000000000", "InstanceType": "m5.large"}
    )
    eks_tags = {"eks:cluster-name": ref["cluster"], "eks:nodegroup-name": ref["nodegroup"]}
    emulator.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": group, "Version": "$Latest"},
        MinSize=shape.min_size,
        MaxSize=shape.max_size,
        DesiredCapacity=shape.desired,
        VPCZoneIdentifier=",".join(subnets),
        HealthCheckType="EC2",
        Tags=[
            {"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": group, "ResourceType": "auto-scaling-group"}
            for k, v in eks_tags.items()
        ],
    )


def of(emulator: Any, workload: dict[str, Any]) -> NodeGroup | None:
    """The workload's backed node group, if the emulator built one."""
    return getattr(emulator, "eks_nodegroups", {}).get(workload["name"])
