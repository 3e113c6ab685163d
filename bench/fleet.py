"""Fleets of protected Auto Scaling groups built in the emulator's moto, for the idle and storm
benchmarks: G groups of P instances, each group spread over the zones of a VPC and behind its own
target group, every group tagged managed and with its own workload name (as a user onboards
groups with tags, outside the deployment's configuration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ZONES = "abc"


@dataclass
class Fleet:
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> its instances at build time
    target_groups: dict[str, str] = field(default_factory=dict)  # group -> target group ARN

    @property
    def instances(self) -> int:
        return sum(len(v) for v in self.groups.values())


def managed_tag(emulator: Any) -> tuple[str, str]:
    env = next(iter(emulator.functions.values())).environment
    return env.get("MANAGED_TAG_KEY", "recovery:managed"), env.get("MANAGED_TAG_VALUE", "true")


def build(emulator: Any, groups: int, per_group: int, prefix: str = "bench", min_fraction: float = 0.5) -> Fleet:
    """Create `groups` managed groups of `per_group` instances each, spread over three zones."""
    ec2 = emulator.client("ec2")
    elbv2 = emulator.client("elbv2")
    autoscaling = emulator.client("autoscaling")
    key, value = managed_tag(emulator)
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.60.{i * 16}.0/20", AvailabilityZone=f"{emulator.region}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate(ZONES)
    ]
    image = _any_image(emulator)
    template = f"{prefix}-lt"
    ec2.create_launch_template(
        LaunchTemplateName=template, LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"}
    )
    fleet = Fleet()
    for index in range(groups):
        name = f"{prefix}-g{index:03d}"
        target_group = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance")[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        elbv2.add_tags(
            ResourceArns=[target_group],
            Tags=[{"Key": key, "Value": value}, {"Key": "recovery:workload", "Value": name}],
        )
        tags = [
            {"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": name, "ResourceType": "auto-scaling-group"}
            for k, v in ((key, value), ("recovery:workload", name), ("Name", name))
        ]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
            MinSize=int(per_group * min_fraction),
            MaxSize=per_group * 2,
            DesiredCapacity=per_group,
            VPCZoneIdentifier=",".join(subnets),
            TargetGroupARNs=[target_group],
            HealthCheckType="ELB",
            HealthCheckGracePeriod=60,
            Tags=tags,
        )
        fleet.target_groups[name] = target_group
    for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        AutoScalingGroupNames=list(fleet.target_groups)
    ):
        for group in page["AutoScalingGroups"]:
            fleet.groups[group["AutoScalingGroupName"]] = sorted(i["InstanceId"] for i in group["Instances"])
    return fleet


def _any_image(emulator: Any) -> str:
    """The emulator does not load moto's public AMIs; moto launches any image id."""
    return "ami-0123456789abcdef0"


def zone_of_instances(emulator: Any, instance_ids: list[str]) -> dict[str, str]:
    """Instance -> its Availability Zone."""
    ec2 = emulator.client("ec2")
    zones: dict[str, str] = {}
    for start in range(0, len(instance_ids), 500):
        pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=instance_ids[start : start + 500])
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    zones[instance["InstanceId"]] = instance["Placement"]["AvailabilityZone"]
    return zones
