"""The tag rule that says which workload a resource belongs to, and what Auto Scaling does on purpose."""

from __future__ import annotations

import pytest

from detectors.resolve import group_scope, instance_id_of, out_of_service_on_purpose, owner_from_tags
from tests.builders import MANAGED_TAG

MANAGED = {"recovery:managed": "true"}


def test_a_resource_without_the_managed_tag_belongs_to_no_workload():
    assert owner_from_tags({"recovery:workload": "web-api"}, managed_tag=MANAGED_TAG, fallback_name="g") is None
    assert owner_from_tags({"recovery:managed": "false"}, managed_tag=MANAGED_TAG, fallback_name="g") is None


def test_the_workload_tag_names_the_workload():
    owner = owner_from_tags(
        {**MANAGED, "recovery:workload": "web-api"},
        managed_tag=MANAGED_TAG,
        fallback_name="web-api-asg",
        scope={"auto_scaling_group": "web-api-asg"},
        configured={"web-api-asg": "configured-name"},
    )
    assert owner is not None
    assert owner.workload == "web-api"
    assert owner.scope == {"auto_scaling_group": "web-api-asg"}


def test_without_the_workload_tag_the_configured_workload_then_the_resource_name_names_it():
    configured = owner_from_tags(
        MANAGED, managed_tag=MANAGED_TAG, fallback_name="web-api-asg", configured={"web-api-asg": "web-api"}
    )
    assert configured is not None and configured.workload == "web-api"
    named = owner_from_tags(MANAGED, managed_tag=MANAGED_TAG, fallback_name="web-api-asg")
    assert named is not None and named.workload == "web-api-asg"


def test_a_custom_managed_tag_is_honoured():
    tags = {"team:autoheal": "yes"}
    assert owner_from_tags(tags, managed_tag=("team:autoheal", "yes"), fallback_name="g") is not None
    assert owner_from_tags(MANAGED, managed_tag=("team:autoheal", "yes"), fallback_name="g") is None


def test_a_workload_name_longer_than_the_contract_allows_is_cut():
    owner = owner_from_tags(MANAGED, managed_tag=MANAGED_TAG, fallback_name="g" * 255)
    assert owner is not None and len(owner.workload) == 128


def test_group_scope_names_its_target_group_only_when_there_is_one():
    one = {"AutoScalingGroupName": "g", "TargetGroupARNs": ["arn:tg/1"]}
    two = {"AutoScalingGroupName": "g", "TargetGroupARNs": ["arn:tg/1", "arn:tg/2"]}
    assert group_scope(one) == {"auto_scaling_group": "g", "target_group_arn": "arn:tg/1"}
    assert group_scope(two) == {"auto_scaling_group": "g"}


@pytest.mark.parametrize(
    ("state", "on_purpose"),
    [
        ("InService", False),
        ("Pending", False),
        ("Pending:Wait", False),
        (None, False),
        ("Terminating", True),
        ("Terminating:Wait", True),
        ("Terminating:Proceed", True),
        ("Detaching", True),
        ("EnteringStandby", True),
        ("Standby", True),
        ("Warmed:Stopped", True),
        ("Warmed:Hibernated", True),
    ],
)
def test_lifecycle_states_in_which_the_group_takes_an_instance_out_itself(state, on_purpose):
    assert out_of_service_on_purpose(state) is on_purpose


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("i-0abc123def4567890", "i-0abc123def4567890"),
        ("i-12345678", "i-12345678"),
        ("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc123def4567890", "i-0abc123def4567890"),
        ("vol-0abc123def4567890", None),
        ("arn:aws:ec2:us-east-1:123456789012:volume/vol-0abc123def4567890", None),
        ("i-notahexid", None),
        ("", None),
    ],
)
def test_instance_ids_are_read_from_ids_and_arns(value, expected):
    assert instance_id_of(value) == expected


def test_the_group_of_an_eks_node_group_names_its_cluster_arn_and_node_group():
    # EKS tags a managed node group's Auto Scaling group with its cluster and node group: an
    # impairment of its instances can then be replaced through EKS and shifted by the cluster's ARN
    group = {
        "AutoScalingGroupName": "eks-workers-1ac6",
        "AutoScalingGroupARN": "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:uuid:"
        "autoScalingGroupName/eks-workers-1ac6",
        "Tags": [
            {"Key": "eks:cluster-name", "Value": "prod"},
            {"Key": "eks:nodegroup-name", "Value": "workers"},
        ],
    }
    assert group_scope(group) == {
        "auto_scaling_group": "eks-workers-1ac6",
        "eks_cluster": "prod",
        "eks_nodegroup": "workers",
        "eks_cluster_arn": "arn:aws:eks:eu-west-1:123456789012:cluster/prod",
    }
    # Without both tags (a plain group tagged by hand with one), nothing of EKS is assumed
    assert group_scope({**group, "Tags": group["Tags"][:1]}) == {"auto_scaling_group": "eks-workers-1ac6"}
