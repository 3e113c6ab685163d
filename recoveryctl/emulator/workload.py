"""Builds a protected workload in moto, as the stack's configuration declares it: an Auto
Scaling group of tagged instances behind an ALB target group, at the ARNs the alarms watch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recoveryctl.emulator.runtime import Emulator


@dataclass
class WorkloadShape:
    min_size: int = 2
    max_size: int = 6
    desired: int = 3


def build(
    emulator: Emulator, workload: dict[str, Any], shape: WorkloadShape, managed_tag: tuple[str, str]
) -> dict[str, Any]:
    """Create the workload; returns its identifiers (group name, instance ids, ARNs)."""
    ec2 = emulator.client("ec2")
    elbv2 = emulator.client("elbv2")
    autoscaling = emulator.client("autoscaling")
    name = workload["name"]

    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"{emulator.region}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"}
    )

    target_group_arn = workload.get("target_group_arn")
    if target_group_arn:
        lb_name = workload["load_balancer_arn"].split("/")[-2]
        tg_name = target_group_arn.split("/")[-2]
        lb = elbv2.create_load_balancer(Name=lb_name, Subnets=subnets, Type="application")["LoadBalancers"][0]
        tg = elbv2.create_target_group(
            Name=tg_name,
            Protocol="HTTP",
            Port=80,
            VpcId=vpc,
            TargetType="instance",
            HealthCheckIntervalSeconds=5,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
        )["TargetGroups"][0]
        _adopt_arns(
            emulator, {lb["LoadBalancerArn"]: workload["load_balancer_arn"], tg["TargetGroupArn"]: target_group_arn}
        )
        elbv2.create_listener(
            LoadBalancerArn=workload["load_balancer_arn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group_arn}],
        )

    group = workload["auto_scaling_group"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"},
        MinSize=shape.min_size,
        MaxSize=shape.max_size,
        DesiredCapacity=shape.desired,
        VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[target_group_arn] if target_group_arn else [],
        HealthCheckType="ELB" if target_group_arn else "EC2",
        HealthCheckGracePeriod=60,
        Tags=[
            {
                "Key": managed_tag[0],
                "Value": managed_tag[1],
                "PropagateAtLaunch": True,
                "ResourceId": group,
                "ResourceType": "auto-scaling-group",
            },
            {
                "Key": "Name",
                "Value": name,
                "PropagateAtLaunch": True,
                "ResourceId": group,
                "ResourceType": "auto-scaling-group",
            },
        ],
    )
    return {"group": group, "target_group_arn": target_group_arn, "instances": in_service(emulator, group)}


def in_service(emulator: Emulator, group: str) -> list[str]:
    groups = emulator.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return sorted(
        i["InstanceId"] for i in groups["AutoScalingGroups"][0]["Instances"] if i["LifecycleState"] == "InService"
    )


def group_state(emulator: Emulator, group: str) -> dict[str, Any]:
    found = emulator.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    g = found["AutoScalingGroups"][0]
    return {
        "desired_capacity": g["DesiredCapacity"],
        "min_size": g["MinSize"],
        "max_size": g["MaxSize"],
        "in_service": sorted(i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"),
    }


def _adopt_arns(emulator: Emulator, renames: dict[str, str]) -> None:
    """Give moto's load balancer and target group the ARNs the configuration declares (moto
    picks random ids; the synthesized alarms watch the declared ones). Emulator only."""
    from moto.elbv2.models import elbv2_backends

    backend = elbv2_backends[emulator.account][emulator.region]
    for old, new in renames.items():
        for registry in (backend.load_balancers, backend.target_groups):
            if old in registry:
                resource = registry.pop(old)
                resource.arn = new
                registry[new] = resource
    for target_group in backend.target_groups.values():
        target_group.load_balancer_arns = [renames.get(a, a) for a in target_group.load_balancer_arns]
