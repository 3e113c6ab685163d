"""An EKS managed node group under moto, with what moto lacks: its Auto Scaling group (moto
names one in DescribeNodegroup and creates none) and its nodes, on the local Kubernetes API
server (recoveryctl/emulator/kube_server.py) the cluster's endpoint is pointed at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recoveryctl.emulator.kube_server import KubeServer
from tests.builders import MANAGED_TAG, REGION

CLUSTER, NODEGROUP = "prod", "workers"


@dataclass
class NodeGroup:
    server: KubeServer
    group_name: str
    nodegroup_arn: str

    def instances(self) -> list[str]:
        return [i["InstanceId"] for i in self.group()["Instances"]]

    def group(self) -> dict[str, Any]:
        import boto3

        client = boto3.client("autoscaling", region_name=REGION)
        return client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group_name])["AutoScalingGroups"][0]

    def node_of(self, instance_id: str) -> str:
        return f"ip-{instance_id[-8:]}"

    def desired_size(self) -> int:
        import boto3

        eks = boto3.client("eks", region_name=REGION)
        return eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=NODEGROUP)["nodegroup"]["scalingConfig"][
            "desiredSize"
        ]


def build_nodegroup(server: KubeServer, *, desired: int = 3, min_size: int = 2, max_size: int = 5, managed=True):
    """A cluster, a node group of `desired` instances in its Auto Scaling group, one Ready node each."""
    import boto3

    from core import kube

    eks = boto3.client("eks", region_name=REGION)
    eks.create_cluster(
        name=CLUSTER, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": ["subnet-1"]}
    )
    nodegroup = eks.create_nodegroup(
        clusterName=CLUSTER,
        nodegroupName=NODEGROUP,
        nodeRole="arn:aws:iam::123456789012:role/node",
        subnets=["subnet-1"],
        scalingConfig={"minSize": min_size, "maxSize": max_size, "desiredSize": desired},
        tags={MANAGED_TAG[0]: MANAGED_TAG[1]} if managed else {},
    )["nodegroup"]
    group_name = nodegroup["resources"]["autoScalingGroups"][0]["name"]
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(
        LaunchTemplateName=group_name, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    boto3.client("autoscaling", region_name=REGION).create_auto_scaling_group(
        AutoScalingGroupName=group_name,
        LaunchTemplate={"LaunchTemplateName": group_name, "Version": "$Latest"},
        MinSize=min_size,
        MaxSize=max_size,
        DesiredCapacity=desired,
        VPCZoneIdentifier=subnet,
    )
    built = NodeGroup(server, group_name, nodegroup["nodegroupArn"])
    for instance in built.instances():
        server.state.add_node(built.node_of(instance), instance, nodegroup=NODEGROUP)
    kube.use_endpoint(CLUSTER, server.url)
    return built
