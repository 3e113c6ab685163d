"""The shared reads (functions/core/reads/): real API shapes answered by botocore's Stubber, every
page followed, errors classified the same way for every caller."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from core.errors import ActionRefused, PermanentError, TransientError
from core.reads import ecs, groups, instance_status, rds, tags, target_health, zones

TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/73e2d6bc24d8a067"


def _client(service: str):
    return boto3.client(service, region_name="us-east-1")


def _group(name: str, *instances: str) -> dict:
    return {
        "AutoScalingGroupName": name,
        "MinSize": 1,
        "MaxSize": 4,
        "DesiredCapacity": len(instances),
        "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"],
        "HealthCheckType": "ELB",
        "CreatedTime": "2024-05-01T00:00:00Z",
        "Instances": [
            {
                "InstanceId": i,
                "AvailabilityZone": "us-east-1a",
                "LifecycleState": "InService",
                "HealthStatus": "Healthy",
                "ProtectedFromScaleIn": False,
            }
            for i in instances
        ],
    }


def _membership(instance_id: str, group: str) -> dict:
    return {
        "InstanceId": instance_id,
        "AutoScalingGroupName": group,
        "AvailabilityZone": "us-east-1a",
        "LifecycleState": "InService",
        "HealthStatus": "HEALTHY",
        "ProtectedFromScaleIn": False,
    }


# --- target health ----------------------------------------------------------------------------


def test_target_health_is_one_call_for_the_whole_group():
    client = _client("elbv2")
    described = [
        {"Target": {"Id": "i-0a", "Port": 80}, "TargetHealth": {"State": "healthy"}},
        {
            "Target": {"Id": "i-0b", "Port": 80},
            "TargetHealth": {"State": "draining", "Reason": "Target.DeregistrationInProgress"},
        },
    ]
    with Stubber(client) as stubber:
        stubber.add_response("describe_target_health", {"TargetHealthDescriptions": described}, {"TargetGroupArn": TG})

        found = target_health.describe(client, TG)

    assert found == described
    assert [d["Target"]["Id"] for d in target_health.registered(found)] == ["i-0a"]


def test_target_health_unavailable_is_transient_for_detectors_and_actions_alike():
    # HealthUnavailable (HTTP 500 in the API reference) is elasticloadbalancing's own transient code
    client = _client("elbv2")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_target_health", "HealthUnavailable", http_status_code=400)

        with pytest.raises(TransientError) as caught:
            target_health.describe(client, TG)

    assert caught.value.details == {
        "operation": "elasticloadbalancing:DescribeTargetHealth",
        "code": "HealthUnavailable",
    }


def test_a_target_group_that_is_gone_is_permanent():
    client = _client("elbv2")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_target_health", "TargetGroupNotFound", http_status_code=400)

        with pytest.raises(PermanentError) as caught:
            target_health.describe(client, TG)

    assert not isinstance(caught.value, TransientError)
    assert caught.value.details["code"] == "TargetGroupNotFound"


@pytest.mark.parametrize(
    ("health", "impaired", "failing"),
    [
        ({"State": "unhealthy", "Reason": "Target.FailedHealthChecks"}, True, True),
        ({"State": "unavailable"}, True, True),
        ({"State": "unused", "Reason": "Target.InvalidState"}, True, True),  # a stopped instance
        # in a zone the load balancer no longer uses: serves nothing, but no detector's signal
        ({"State": "unused", "Reason": "Target.NotInUse"}, False, True),
        ({"State": "healthy"}, False, False),
        ({"State": "initial", "Reason": "Elb.RegistrationInProgress"}, False, False),
        ({"State": "draining"}, False, False),
    ],
)
def test_what_a_targets_state_means_to_detectors_and_to_the_guardrails(health, impaired, failing):
    assert target_health.impaired(health) is impaired
    assert (health["State"] in target_health.FAILING_STATES) is failing


# --- Auto Scaling groups ----------------------------------------------------------------------


def test_tagged_groups_follow_every_page():
    client = _client("autoscaling")
    tag_filter = [{"Name": "tag:recovery:managed", "Values": ["true"]}]
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_auto_scaling_groups",
            {"AutoScalingGroups": [_group("web", "i-0a")], "NextToken": "page-2"},
            {"Filters": tag_filter, "MaxRecords": 100},
        )
        stubber.add_response(
            "describe_auto_scaling_groups",
            {"AutoScalingGroups": [_group("api", "i-0b")]},
            {"Filters": tag_filter, "MaxRecords": 100, "NextToken": "page-2"},
        )

        found = groups.tagged(client, "recovery:managed", "true")

    assert [g["AutoScalingGroupName"] for g in found] == ["web", "api"]


def test_many_names_are_asked_fifty_at_a_time_and_absent_ones_left_out():
    # Given 120 names, of which only two exist
    names = [f"group-{n:03d}" for n in range(120)]
    client = _client("autoscaling")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_auto_scaling_groups",
            {"AutoScalingGroups": [_group("group-000")]},
            {"AutoScalingGroupNames": names[0:50]},
        )
        stubber.add_response(
            "describe_auto_scaling_groups", {"AutoScalingGroups": []}, {"AutoScalingGroupNames": names[50:100]}
        )
        stubber.add_response(
            "describe_auto_scaling_groups",
            {"AutoScalingGroups": [_group("group-119")]},
            {"AutoScalingGroupNames": names[100:120]},
        )

        found = groups.describe_many(client, reversed(names))

    assert [g["AutoScalingGroupName"] for g in found] == ["group-000", "group-119"]


def test_no_names_asks_nothing():
    # DescribeAutoScalingGroups without names would list every group of the account
    client = _client("autoscaling")
    with Stubber(client):  # any call would fail: nothing is queued
        assert groups.describe_many(client, []) == []


def test_a_group_that_does_not_exist_is_permanent_and_named():
    client = _client("autoscaling")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_auto_scaling_groups", {"AutoScalingGroups": []}, {"AutoScalingGroupNames": ["gone"]}
        )

        with pytest.raises(PermanentError) as caught:
            groups.describe(client, "gone")

    assert caught.value.details == {"group": "gone"}


def test_a_throttled_group_read_is_transient_even_on_a_later_page():
    client = _client("autoscaling")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_auto_scaling_groups", {"AutoScalingGroups": [_group("web")], "NextToken": "page-2"}
        )
        stubber.add_client_error("describe_auto_scaling_groups", "Throttling", http_status_code=400)

        with pytest.raises(TransientError) as caught:
            groups.tagged(client, "recovery:managed", "true")

    assert caught.value.details == {"operation": "autoscaling:DescribeAutoScalingGroups", "code": "Throttling"}


def test_memberships_follow_pages_and_leave_out_instances_of_no_group():
    client = _client("autoscaling")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_auto_scaling_instances",
            {"AutoScalingInstances": [_membership("i-0a", "web")], "NextToken": "page-2"},
            {"InstanceIds": ["i-0a", "i-0b", "i-0c"]},
        )
        stubber.add_response(
            "describe_auto_scaling_instances",
            {"AutoScalingInstances": [_membership("i-0c", "api")]},
            {"InstanceIds": ["i-0a", "i-0b", "i-0c"], "NextToken": "page-2"},
        )

        found = groups.memberships(client, ["i-0c", "i-0a", "i-0b", "i-0a", ""])

    assert {i: m["AutoScalingGroupName"] for i, m in found.items()} == {"i-0a": "web", "i-0c": "api"}


# --- instance status --------------------------------------------------------------------------


def _status(instance_id: str, state: str = "running", **checks: str) -> dict:
    found = {"InstanceId": instance_id, "AvailabilityZone": "us-east-1a", "InstanceState": {"Code": 16, "Name": state}}
    for name in instance_status.CHECKS:
        found[name] = {"Status": checks.get(name, "ok")}
    return found


def test_instance_status_asks_a_hundred_ids_at_a_time_with_stopped_ones_included():
    ids = [f"i-{n:017x}" for n in range(150)]
    client = _client("ec2")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_instance_status",
            {"InstanceStatuses": [_status(ids[0])]},
            {"InstanceIds": ids[:100], "IncludeAllInstances": True},
        )
        stubber.add_response(
            "describe_instance_status",
            {"InstanceStatuses": [_status(ids[149], "stopped")]},
            {"InstanceIds": ids[100:], "IncludeAllInstances": True},
        )

        found = instance_status.describe(client, ids)

    assert [s["InstanceId"] for s in found] == [ids[0], ids[149]]


def test_an_unknown_instance_is_permanent_with_its_code():
    client = _client("ec2")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_instance_status", "InvalidInstanceID.NotFound", http_status_code=400)

        with pytest.raises(PermanentError) as caught:
            instance_status.describe(client, ["i-0123456789abcdef0"])

    assert caught.value.details["code"] == "InvalidInstanceID.NotFound"


def test_ec2_throttling_is_transient():
    client = _client("ec2")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_instance_status", "RequestLimitExceeded", http_status_code=503)

        with pytest.raises(TransientError):
            instance_status.describe(client, ["i-0123456789abcdef0"])


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (_status("i-0a"), None),
        (_status("i-0a", "pending"), None),
        (_status("i-0a", "stopped"), "EC2 state stopped"),
        (_status("i-0a", SystemStatus="impaired"), "status check impaired: SystemStatus"),
        # an attached EBS volume that stopped answering: the detectors count it as the guardrails do
        (_status("i-0a", AttachedEbsStatus="impaired"), "status check impaired: AttachedEbsStatus"),
        ({"InstanceId": "i-0a", "InstanceState": {"Name": "running"}}, None),  # checks not reported yet
    ],
)
def test_why_an_instance_fails(status, reason):
    assert instance_status.failing(status) == reason


# --- tags and the managed check ---------------------------------------------------------------


def test_tags_of_every_casing_read_alike():
    assert tags.as_dict([{"Key": "a", "Value": "1"}, {"key": "b", "value": "2"}, {"Key": "c"}]) == {
        "a": "1",
        "b": "2",
        "c": "",
    }
    assert tags.as_dict(None) == {}


def test_require_managed_refuses_a_wrong_value_and_names_the_resource():
    # Given the managed key with another value (someone opted out without removing the tag)
    with pytest.raises(ActionRefused) as caught:
        tags.require_managed(
            [{"Key": "recovery:managed", "Value": "false"}],
            ("recovery:managed", "true"),
            "instance",
            "i-0a",
            instance="i-0a",
        )

    assert str(caught.value) == "instance i-0a is not managed: tag recovery:managed=true is missing"
    assert caught.value.details == {"instance": "i-0a"}


def test_require_managed_accepts_the_tag_as_a_dict_or_a_list():
    managed = ("recovery:managed", "true")
    tags.require_managed({"recovery:managed": "true"}, managed, "hosted zone", "Z1")
    tags.require_managed([{"Key": "recovery:managed", "Value": "true"}], managed, "Auto Scaling group", "web")
    with pytest.raises(ActionRefused) as caught:
        tags.require_managed(None, managed, "hosted zone", "Z1")
    assert caught.value.details == {"resource": "Z1"}


def test_load_balancing_tags_are_those_of_the_resource_asked_for():
    client = _client("elbv2")
    other = TG.replace("web", "api")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_tags",
            {
                "TagDescriptions": [
                    {"ResourceArn": other, "Tags": [{"Key": "recovery:managed", "Value": "true"}]},
                    {"ResourceArn": TG, "Tags": [{"Key": "team", "Value": "web"}]},
                ]
            },
            {"ResourceArns": [TG]},
        )

        assert tags.of_load_balancing(client, TG) == {"team": "web"}


# --- Availability Zones, ECS services, RDS databases ------------------------------------------


@pytest.mark.parametrize("given", ["us-east-1a", "use1-az6"])
def test_a_zone_is_found_by_its_name_or_its_id(given):
    client = _client("ec2")
    zone = {"ZoneName": "us-east-1a", "ZoneId": "use1-az6", "State": "available", "RegionName": "us-east-1"}
    key = "ZoneIds" if given.startswith("use1") else "ZoneNames"
    with Stubber(client) as stubber:
        stubber.add_response("describe_availability_zones", {"AvailabilityZones": [zone]}, {key: [given]})
        assert zones.find(client, given) == {"name": "us-east-1a", "id": "use1-az6"}


def test_a_zone_ec2_does_not_know_is_none_and_a_throttled_read_is_transient():
    client = _client("ec2")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_availability_zones", "InvalidParameterValue", http_status_code=400)
        stubber.add_client_error("describe_availability_zones", "RequestLimitExceeded", http_status_code=503)
        assert zones.find(client, "us-east-1z") is None
        with pytest.raises(TransientError):
            zones.find(client, "us-east-1a")


def test_an_ecs_service_ecs_lists_under_failures_is_none_with_its_reason():
    client = _client("ecs")
    arn = "arn:aws:ecs:us-east-1:123456789012:service/shop/gone"
    with Stubber(client) as stubber:
        stubber.add_response("describe_services", {"services": [], "failures": [{"arn": arn, "reason": "MISSING"}]})
        assert ecs.service(client, "shop", "gone") == (None, "MISSING")


def test_a_db_instance_rds_does_not_know_is_permanent():
    client = _client("rds")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_db_instances", "DBInstanceNotFound", http_status_code=404)
        with pytest.raises(PermanentError):
            rds.db_instance(client, "orders")
