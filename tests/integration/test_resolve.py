"""Resolving resources to protected workloads over the real APIs (moto): groups, instances, zones."""

from __future__ import annotations

from collections import Counter

import boto3
import pytest

from core.errors import PermanentError
from detectors.resolve import AwsResolver
from tests.builders import MANAGED_TAG, REGION, WORKLOAD, build_workload


def counted(service: str) -> tuple[object, Counter]:
    """A client of `service` that counts the API calls made through it."""
    client = boto3.client(service, region_name=REGION)
    calls: Counter = Counter()
    client.meta.events.register(f"before-call.{service}", lambda model, **_: calls.update([model.name]))
    return client, calls


def run_instance(**tags: str) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    return ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][0][
        "InstanceId"
    ]


def test_an_instance_of_a_protected_group_resolves_to_its_workload_and_group(mocked_aws):
    workload = build_workload()
    instance_id = workload.instance_ids()[0]

    owner = AwsResolver(MANAGED_TAG).instances([instance_id])[instance_id]

    assert owner.owner.workload == WORKLOAD
    assert owner.group == workload.group_name
    assert owner.lifecycle_state == "InService"
    assert owner.health_status == "Healthy"
    assert owner.owner.scope == {
        "auto_scaling_group": workload.group_name,
        "target_group_arn": workload.target_group_arn,
    }


def test_instances_of_an_unmanaged_group_unknown_or_untagged_instances_resolve_to_nothing(mocked_aws):
    unmanaged = build_workload("legacy", managed=False)
    loose = run_instance(team="payments")
    unknown = "i-0fedcba9876543210"

    found = AwsResolver(MANAGED_TAG).instances([unmanaged.instance_ids()[0], loose, unknown])

    assert found == {}


def test_a_managed_instance_of_no_group_resolves_by_its_own_tags(mocked_aws):
    standalone = run_instance(**{"recovery:managed": "true", "recovery:workload": "batch"})
    named = run_instance(**{"recovery:managed": "true", "Name": "reporting"})

    found = AwsResolver(MANAGED_TAG).instances([standalone, named])

    assert found[standalone].owner.workload == "batch"
    assert found[standalone].group is None
    assert found[named].owner.workload == "reporting"


def test_an_instance_its_group_let_go_of_resolves_through_its_group_tag(mocked_aws):
    # Given an instance Auto Scaling launched for the protected group (its aws:autoscaling:groupName
    # tag) that the group no longer lists, e.g. terminated a moment ago
    workload = build_workload()
    gone = run_instance(**{"aws:autoscaling:groupName": workload.group_name})
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[gone])

    owner = AwsResolver(MANAGED_TAG).instances([gone])[gone]

    # Then it still belongs to the group's workload, with no lifecycle state in it
    assert owner.group == workload.group_name
    assert owner.owner.workload == WORKLOAD
    assert owner.lifecycle_state is None


def test_instances_are_looked_up_in_batches_of_50(mocked_aws):
    workload = build_workload(min_size=0, max_size=60, desired=55)
    autoscaling, calls = counted("autoscaling")

    found = AwsResolver(MANAGED_TAG, autoscaling=autoscaling).instances(workload.instance_ids())

    assert len(found) == 55
    assert calls["DescribeAutoScalingInstances"] == 2
    assert calls["DescribeAutoScalingGroups"] == 1  # one group, looked up once for all its instances


def test_a_group_without_a_workload_tag_takes_its_configured_workload_or_its_name(mocked_aws):
    workload = build_workload()
    boto3.client("autoscaling", region_name=REGION).delete_tags(
        Tags=[
            {
                "ResourceId": workload.group_name,
                "ResourceType": "auto-scaling-group",
                "Key": "recovery:workload",
                "Value": WORKLOAD,
            }
        ]
    )
    (group,) = AwsResolver(MANAGED_TAG, {workload.group_name: "storefront"}).protected_groups()
    assert group.workload == "storefront"
    (group,) = AwsResolver(MANAGED_TAG).protected_groups()
    assert group.workload == workload.group_name


def test_protected_groups_are_listed_by_their_tag_in_pages(mocked_aws):
    # Given 105 managed groups and an unmanaged one
    autoscaling_api = boto3.client("autoscaling", region_name=REGION)
    build_workload()  # the launch template, and a managed group
    build_workload("legacy", managed=False)
    for n in range(104):
        autoscaling_api.create_auto_scaling_group(
            AutoScalingGroupName=f"fleet-{n:03d}",
            LaunchTemplate={"LaunchTemplateName": WORKLOAD, "Version": "$Latest"},
            MinSize=0,
            MaxSize=1,
            DesiredCapacity=0,
            AvailabilityZones=[f"{REGION}a"],
            Tags=[{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1], "PropagateAtLaunch": False}],
        )
    autoscaling, calls = counted("autoscaling")

    groups = AwsResolver(MANAGED_TAG, autoscaling=autoscaling).protected_groups()

    assert len(groups) == 105
    assert "legacy-asg" not in {g.name for g in groups}
    assert calls == Counter({"DescribeAutoScalingGroups": 2})  # pages of 100


def test_availability_zones_resolve_by_id_or_name(mocked_aws):
    resolver = AwsResolver(MANAGED_TAG)
    name, zone_id = resolver.availability_zone(f"{REGION}a")
    assert name == f"{REGION}a"
    assert resolver.availability_zone(zone_id) == (name, zone_id)
    assert resolver.availability_zone("use1-az99") is None


def test_errors_are_classified(mocked_aws):
    with pytest.raises(PermanentError) as raised:
        AwsResolver(MANAGED_TAG).target_health(
            f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/gone/0123456789abcdef"
        )
    assert raised.value.details["operation"] == "elasticloadbalancing:DescribeTargetHealth"


def test_a_group_read_once_answers_for_its_instances_and_an_absent_group_is_not_asked_twice(mocked_aws):
    # Given a protected group, and a resolver whose Auto Scaling client counts its calls
    workload = build_workload()
    instance_id = workload.instance_ids()[0]
    client, calls = counted("autoscaling")
    resolver = AwsResolver(MANAGED_TAG, autoscaling=client)

    # When it reads the group (as the alarm detector does to find its impaired instances), then
    # resolves one of its instances and the group, and twice looks up a group that does not exist
    resolver.describe_groups([workload.group_name])
    owner = resolver.instances([instance_id])[instance_id]
    groups = resolver.groups([workload.group_name, "gone-asg"])
    resolver.groups(["gone-asg"])

    # Then the instance resolves as DescribeAutoScalingInstances would have said, from the group's
    # listing: two DescribeAutoScalingGroups in all (the group, the absent one), no other call
    assert (owner.group, owner.lifecycle_state, owner.health_status) == (workload.group_name, "InService", "Healthy")
    assert owner.availability_zone == f"{REGION}a"
    assert list(groups) == [workload.group_name]
    assert calls == Counter({"DescribeAutoScalingGroups": 2})


def test_an_instance_no_read_group_lists_is_still_looked_up(mocked_aws):
    # Given two protected groups, one of them already read by the resolver
    first, second = build_workload("web-api"), build_workload("orders")
    client, calls = counted("autoscaling")
    resolver = AwsResolver(MANAGED_TAG, autoscaling=client)
    resolver.describe_groups([first.group_name])

    # When an instance of the other group is resolved
    other = second.instance_ids()[0]
    owner = resolver.instances([other])[other]

    # Then it is asked for (DescribeAutoScalingInstances) and resolves to its own group
    assert owner.group == second.group_name and owner.owner.workload == "orders"
    assert calls["DescribeAutoScalingInstances"] == 1
