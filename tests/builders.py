"""Builders shared by the test tiers: impairments, events, small fakes, and workloads in moto.

Everything here is plain functions and classes (no fixtures), so any tier can import it. The
moto builders expect to be called inside `mock_aws()`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.contract import (
    DETECTED,
    EVENT_SOURCE,
    AffectedResource,
    ImpairmentDetected,
    ImpairmentType,
    Severity,
    Signal,
    make_impairment_id,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
TABLE_NAME = "recovery-test"
BUS_NAME = "recovery-test-bus"
WORKLOAD = "web-api"
MANAGED_TAG = ("recovery:managed", "true")
SIGNAL_TIME = datetime(2026, 11, 20, 9, 14, 31, 104000, tzinfo=UTC)
ALARM_ARN = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:web-api-unhealthy-hosts"
TRIVIAL_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


# --- impairments and bus events -------------------------------------------------------------


def impairment(
    *,
    workload: str = WORKLOAD,
    impairment_type: ImpairmentType = ImpairmentType.INSTANCE_FAILURE,
    severity: Severity = Severity.HIGH,
    instances: list[str] | None = None,
    resources: list[tuple[str, str]] | None = None,
    signal_id: str = ALARM_ARN,
    signal_time: datetime = SIGNAL_TIME,
    detected_after: float = 5.0,
    detected_at: datetime | None = None,
    scope: dict[str, str] | None = None,
) -> ImpairmentDetected:
    """A valid impairment; by default one failed instance of the web-api workload."""
    if resources is None:
        resources = [("ec2:instance", i) for i in (instances or ["i-0abc123def4567890"])]
    return ImpairmentDetected(
        impairment_id=make_impairment_id(workload, "aws.cloudwatch", signal_id, signal_time),
        impairment_type=impairment_type,
        severity=severity,
        workload=workload,
        affected_resources=[AffectedResource(resource_type=t, resource_id=r) for t, r in resources],
        signal=Signal(source="aws.cloudwatch", id=signal_id, signal_time=signal_time, name="test-alarm"),
        detected_at=detected_at or signal_time + timedelta(seconds=detected_after),
        description="built by tests",
        scope=scope or {},
    )


def bus_event(detail: dict[str, Any], detail_type: str = DETECTED, source: str = EVENT_SOURCE) -> dict[str, Any]:
    """The EventBridge envelope a bus rule delivers to its target."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2026-11-20T09:14:36Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


def action_event(
    impairment_model: ImpairmentDetected,
    action: str,
    *,
    index: int = 0,
    params: dict[str, Any] | None = None,
    applied: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The input the state machine gives an action task."""
    event: dict[str, Any] = {
        "impairment": impairment_model.model_dump(mode="json"),
        "step": {"index": index, "action": action, "params": params or {}},
        "plan": "test-plan",
    }
    if applied is not None:
        event["applied"] = applied
    return event


def run_step(phase: str, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run an action task as the state machine runs a plan's step: a step naming an alias (say
    failover with kind dns) runs as its kind's action (actions/plans.py resolves it at parsing)."""
    import importlib

    from actions.plans import resolve_step
    from core.errors import InvalidInput

    step = event["step"]
    action, params, problems = resolve_step(step["action"], step["params"], f"step {step['index']}")
    if problems:
        raise InvalidInput("; ".join(str(p) for p in problems))
    module = importlib.import_module(f"actions.{action}")
    resolved = {**event, "step": {**step, "action": action, "params": params}}
    return getattr(module, f"{phase}_handler")(resolved, context)


# --- CloudWatch alarm events ----------------------------------------------------------------


def with_state(
    event: dict[str, Any],
    value: str,
    *,
    timestamp: str | None = None,
    previous: str | None = None,
    previous_timestamp: str | None = None,
) -> dict[str, Any]:
    """A copy of an alarm state change event with its state (and previous state) replaced."""
    changed = copy.deepcopy(event)
    state = changed["detail"]["state"]
    state["value"] = value
    if timestamp is not None:
        state["timestamp"] = timestamp
    if previous is not None:
        changed["detail"]["previousState"]["value"] = previous
    if previous_timestamp is not None:
        changed["detail"]["previousState"]["timestamp"] = previous_timestamp
    return changed


def alarm_tags(workload: str = WORKLOAD, **extra: str) -> dict[str, str]:
    """Tags of a managed alarm; extra keys are recovery:<key with - for _>."""
    tags = {"recovery:managed": "true", "recovery:workload": workload}
    tags.update({f"recovery:{k.replace('_', '-')}": v for k, v in extra.items()})
    return tags


def target(target_id: str, state: str, reason: str | None = None) -> dict[str, Any]:
    """One DescribeTargetHealth entry."""
    health: dict[str, Any] = {"State": state}
    if reason:
        health["Reason"] = reason
    return {"Target": {"Id": target_id, "Port": 80}, "TargetHealth": health}


@dataclass
class FakeInventory:
    """In-memory Inventory for the alarm detector: what the detector would look up in AWS."""

    tags: dict[str, dict[str, str] | None] = field(default_factory=dict)
    targets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    # resource id -> the workload its group or tags name; absent: `default_owner` (None: no workload)
    owners: dict[str, str] = field(default_factory=dict)
    default_owner: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)

    def alarm_tags(self, alarm_arn: str) -> dict[str, str] | None:
        self.calls.append(("alarm_tags", alarm_arn))
        return self.tags.get(alarm_arn)

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]:
        self.calls.append(("target_health", target_group_arn))
        if target_group_arn not in self.targets:
            raise AssertionError(f"unexpected target group {target_group_arn}")
        return self.targets[target_group_arn]

    def group_instances(self, group_name: str) -> list[str]:
        self.calls.append(("group_instances", group_name))
        return self.groups.get(group_name, [])

    def instance_statuses(self, instance_ids: list[str]) -> list[dict[str, Any]]:
        self.calls.append(("instance_statuses", ",".join(instance_ids)))
        return [self.statuses[i] for i in instance_ids if i in self.statuses]

    def workloads_of(self, resources: list[Any]) -> dict[Any, str | None]:
        self.calls.append(("workloads_of", ",".join(r.key for r in resources)))
        return {r: self.owners.get(r.resource_id, self.default_owner) for r in resources}


class RecordingPublisher:
    """Stands in for EventPublisher: remembers what would have been put on the bus."""

    def __init__(self) -> None:
        self.published: list[tuple[str, list[Any]]] = []

    def publish(self, detail_type: str, details: list[Any]) -> int:
        self.published.append((detail_type, list(details)))
        return len(details)


# --- moto: storage, bus, topics, workflow ---------------------------------------------------


def create_table(name: str = TABLE_NAME) -> str:
    """The recovery table as the stack defines it: pk/sk, GSI gsi1 on gsi1pk/gsi1sk."""
    import boto3

    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi1pk", "gsi1sk")],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def get_item(pk: str, sk: str, table: str = TABLE_NAME) -> dict[str, Any] | None:
    """A raw item of the recovery table, read back without going through the store."""
    import boto3

    item = boto3.resource("dynamodb", region_name=REGION).Table(table).get_item(Key={"pk": pk, "sk": sk}).get("Item")
    return item


def _queue(name: str) -> tuple[str, str]:
    import boto3

    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def capture_bus(bus_name: str = BUS_NAME, source: str = EVENT_SOURCE) -> str:
    """Create the bus (if needed) and a rule sending its events of `source` to a fresh queue."""
    import boto3

    events = boto3.client("events", region_name=REGION)
    if bus_name not in {b["Name"] for b in events.list_event_buses()["EventBuses"]}:
        events.create_event_bus(Name=bus_name)
    url, arn = _queue(f"{bus_name}-capture")
    events.put_rule(Name="capture", EventBusName=bus_name, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule="capture", EventBusName=bus_name, Targets=[{"Id": "queue", "Arn": arn}])
    return url


def capture_topic(topic_name: str = "recovery-escalations") -> tuple[str, str]:
    """An SNS topic with a queue subscribed to it: (topic ARN, queue URL)."""
    import boto3

    sns = boto3.client("sns", region_name=REGION)
    topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
    url, arn = _queue(f"{topic_name}-capture")
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return topic_arn, url


def received(queue_url: str) -> list[dict[str, Any]]:
    """Every message waiting in the queue, parsed from JSON."""
    import boto3

    sqs = boto3.client("sqs", region_name=REGION)
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def create_state_machine(name: str = "recovery") -> str:
    import boto3

    return boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name=name, definition=TRIVIAL_DEFINITION, roleArn=f"arn:aws:iam::{ACCOUNT}:role/recovery-workflow"
    )["stateMachineArn"]


# --- moto: a protected workload -------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """An Auto Scaling group behind an ALB target group, built in moto."""

    group_name: str
    target_group_arn: str
    vpc_id: str

    def group(self) -> dict[str, Any]:
        import boto3

        return boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group_name]
        )["AutoScalingGroups"][0]

    def instance_ids(self) -> list[str]:
        return sorted(i["InstanceId"] for i in self.group()["Instances"])

    def desired_capacity(self) -> int:
        return self.group()["DesiredCapacity"]

    def set_desired_capacity(self, desired: int) -> None:
        import boto3

        boto3.client("autoscaling", region_name=REGION).set_desired_capacity(
            AutoScalingGroupName=self.group_name, DesiredCapacity=desired
        )

    def impairment_of(self, *instance_ids: str, **kwargs: Any) -> ImpairmentDetected:
        """An impairment of these instances (default: the group itself), scoped to this workload."""
        resources = [("ec2:instance", i) for i in instance_ids] or [("autoscaling:group", self.group_name)]
        return impairment(
            resources=resources,
            scope={"auto_scaling_group": self.group_name, "target_group_arn": self.target_group_arn},
            **kwargs,
        )


def instance_state(instance_id: str) -> str:
    import boto3

    reservations = boto3.client("ec2", region_name=REGION).describe_instances(InstanceIds=[instance_id])
    return reservations["Reservations"][0]["Instances"][0]["State"]["Name"]


def build_workload(
    name: str = WORKLOAD, *, min_size: int = 2, max_size: int = 6, desired: int = 3, managed: bool = True
) -> Workload:
    """A VPC, launch template, target group and an Auto Scaling group registered with it; the
    group carries the managed tag unless managed=False."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"][
        "SubnetId"
    ]
    ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    target_group_arn = boto3.client("elbv2", region_name=REGION).create_target_group(
        Name=name, Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    tags = [{"Key": "recovery:workload", "Value": name, "PropagateAtLaunch": False}]
    if managed:
        tags.append({"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1], "PropagateAtLaunch": False})
    group_name = f"{name}-asg"
    boto3.client("autoscaling", region_name=REGION).create_auto_scaling_group(
        AutoScalingGroupName=group_name,
        LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
        MinSize=min_size,
        MaxSize=max_size,
        DesiredCapacity=desired,
        VPCZoneIdentifier=subnet_id,
        TargetGroupARNs=[target_group_arn],
        Tags=tags,
    )
    return Workload(group_name=group_name, target_group_arn=target_group_arn, vpc_id=vpc_id)


# --- detectors of AWS events and sweeps: resolution by tags -----------------------------------


def asg_instance(
    instance_id: str, health: str = "Healthy", lifecycle: str = "InService", zone: str = f"{REGION}a"
) -> dict[str, Any]:
    """One Instances[] entry of DescribeAutoScalingGroups."""
    return {
        "InstanceId": instance_id,
        "HealthStatus": health,
        "LifecycleState": lifecycle,
        "AvailabilityZone": zone,
    }


def protected_group(
    name: str = f"{WORKLOAD}-asg",
    *,
    workload: str | None = WORKLOAD,
    instances: list[dict[str, Any]] | None = None,
    target_group_arns: list[str] | None = None,
    zones: list[str] | None = None,
) -> Any:
    """A detectors.resolve.ProtectedGroup, built from a DescribeAutoScalingGroups item as AWS
    returns it (so the real tag rule decides its workload and scope)."""
    from detectors.resolve import protected_group as from_item

    tags = [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}]
    if workload:
        tags.append({"Key": "recovery:workload", "Value": workload})
    item = {
        "AutoScalingGroupName": name,
        "AutoScalingGroupARN": f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:0f0e:autoScalingGroupName/"
        + name,
        "Instances": instances if instances is not None else [],
        "TargetGroupARNs": target_group_arns or [],
        "AvailabilityZones": zones or [f"{REGION}a", f"{REGION}b"],
        "Tags": tags,
    }
    group = from_item(item, MANAGED_TAG)
    assert group is not None
    return group


def member(
    instance_id: str,
    group: Any,
    lifecycle: str | None = "InService",
    health: str | None = "Healthy",
    zone: str | None = f"{REGION}a",
) -> Any:
    """A detectors.resolve.InstanceOwner: the instance as listed by a protected group (lifecycle
    None: the group no longer lists it)."""
    from detectors.resolve import InstanceOwner

    return InstanceOwner(
        instance_id=instance_id,
        owner=group.owner,
        group=group.name,
        lifecycle_state=lifecycle,
        health_status=health if lifecycle else None,
        availability_zone=zone if lifecycle else None,
    )


def scaling_activity(instance_id: str, started: datetime, *, description: str | None = None, cause: str = "") -> dict:
    """One DescribeScalingActivities entry (by default the termination of the instance)."""
    return {
        "ActivityId": f"act-{instance_id[-6:]}-{int(started.timestamp())}",
        "AutoScalingGroupName": f"{WORKLOAD}-asg",
        "Description": description or f"Terminating EC2 instance: {instance_id}",
        "Cause": cause,
        "StartTime": started,
        "StatusCode": "Successful",
    }


@dataclass
class FakeResolver:
    """In-memory stand-in for detectors.resolve.AwsResolver: what a detector would look up."""

    owners: dict[str, Any] = field(default_factory=dict)
    groups: list[Any] = field(default_factory=list)
    activities: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)  # ARN -> DescribeTargetHealth list, or an exception
    zones: dict[str, tuple[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def instances(self, instance_ids: list[str]) -> dict[str, Any]:
        self.calls.append(("instances", tuple(instance_ids)))
        return {i: self.owners[i] for i in instance_ids if i in self.owners}

    def protected_groups(self) -> list[Any]:
        self.calls.append(("protected_groups", None))
        return list(self.groups)

    def scaling_activities(self, group_name: str, since: datetime) -> list[dict[str, Any]]:
        self.calls.append(("scaling_activities", group_name))
        found = [a for a in self.activities.get(group_name, []) if a["StartTime"] >= since]
        return sorted(found, key=lambda a: a["StartTime"], reverse=True)

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]:
        self.calls.append(("target_health", target_group_arn))
        answer = self.targets[target_group_arn]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def availability_zone(self, zone: str) -> tuple[str, str] | None:
        self.calls.append(("availability_zone", zone))
        return self.zones.get(zone)


def scheduled_event(time: str = "2026-11-22T20:07:00Z") -> dict[str, Any]:
    """The event an EventBridge schedule rule delivers."""
    return {
        "version": "0",
        "id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/sweep"],
        "detail": {},
    }


def aws_event(event: dict[str, Any], **detail: Any) -> dict[str, Any]:
    """A copy of an AWS event with detail keys replaced (a key given None is removed)."""
    changed = copy.deepcopy(event)
    for key, value in detail.items():
        key = key.replace("__", "-")
        if value is None:
            changed["detail"].pop(key, None)
        else:
            changed["detail"][key] = value
    return changed


def use_runtime_config(
    monkeypatch: Any,
    folder: Any,
    plans: list[dict[str, Any]] | None = None,
    guardrails: dict[str, Any] | None = None,
    maintenance: dict[str, Any] | None = None,
    rto_seconds: dict[str, int] | None = None,
    readiness: list[dict[str, Any]] | None = None,
) -> Any:
    """Write the functions' recovery configuration (core/runtime_config.py) into `folder` and
    point RECOVERY_CONFIG at it, as the deployed code asset would carry it."""
    from core import runtime_config

    config = runtime_config.build(
        plans or [], guardrails or {}, maintenance or {}, rto_seconds=rto_seconds, readiness=readiness
    )
    path = folder / runtime_config.FILE_NAME
    path.write_text(config.to_json())
    monkeypatch.setenv(runtime_config.ENV, str(path))
    return config


# --- accounts -------------------------------------------------------------------------------


@contextmanager
def in_account(account: str, monkeypatch: Any) -> Iterator[None]:
    """Run the set-up as `account` (its workload is built there)."""
    import boto3

    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/set-up", RoleSessionName="set-up"
    )["Credentials"]
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
        patch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
        patch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])
        # boto3's default session keeps the credentials it first resolved: a fresh one reads these
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        yield
