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
    emulator: Emulator,
    workload: dict[str, Any],
    shape: WorkloadShape,
    managed_tag: tuple[str, str],
    account: str | None = None,
    second: WorkloadShape | None = None,
) -> dict[str, Any]:
    """Create every part the workload declares, in `account` (default: the workload's own
    account_id, else the central account); returns their identifiers. `second`: a second group
    of that shape shares the workload's target group (see second_group_name)."""
    with emulator.as_account(account or workload.get("account_id")):
        return _build(emulator, workload, shape, managed_tag, second)


def network(emulator: Emulator, prefix: str, zones: str) -> tuple[str, list[str]]:
    """A VPC `<prefix>.0.0/16` and a /24 subnet in each of the region's `zones` (letters)."""
    ec2 = emulator.client("ec2")
    vpc = ec2.create_vpc(CidrBlock=f"{prefix}.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"{prefix}.{i}.0/24", AvailabilityZone=f"{emulator.region}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate(zones)
    ]
    return vpc, subnets


def second_group_name(workload: dict[str, Any]) -> str:
    """The second group of a blue/green pair: the workload's group, green."""
    return f"{workload['auto_scaling_group']}-green"


def _build(
    emulator: Emulator,
    workload: dict[str, Any],
    shape: WorkloadShape,
    managed_tag: tuple[str, str],
    second: WorkloadShape | None = None,
) -> dict[str, Any]:
    built: dict[str, Any] = {}
    if workload.get("auto_scaling_group"):
        built.update(_build_group(emulator, workload, shape, managed_tag, second))
    if workload.get("ecs_service"):
        built["ecs_service"] = _build_service(emulator, workload, managed_tag)
    if workload.get("database"):
        built["database"] = _build_database(emulator, workload, managed_tag)
    if workload.get("dns"):
        built["dns"] = _build_dns(emulator, workload, managed_tag)
    if workload.get("eks"):  # the node group's Auto Scaling group takes the scenario's group shape
        from recoveryctl.emulator import eks

        built["eks"] = eks.build(emulator, workload, shape, managed_tag).group
    return built


def _tags(workload: dict[str, Any], managed_tag: tuple[str, str], key: str = "Key", value: str = "Value") -> list:
    return [{key: managed_tag[0], value: managed_tag[1]}, {key: "recovery:workload", value: workload["name"]}]


def _build_group(
    emulator: Emulator,
    workload: dict[str, Any],
    shape: WorkloadShape,
    managed_tag: tuple[str, str],
    second: WorkloadShape | None = None,
) -> dict[str, Any]:
    """The group behind its load balancer's target group and, with `second`, a second group on
    the same target group (a blue/green pair): same launch template, subnets and tags, ELB health
    checks, so its instances register and are judged by the load balancer as the first's are and
    an unhealthy-hosts alarm of the target group names instances of both."""
    ec2 = emulator.client("ec2")
    elbv2 = emulator.client("elbv2")
    autoscaling = emulator.client("autoscaling")
    name = workload["name"]

    vpc, subnets = network(emulator, "10.42", "ab")
    image = "ami-0123456789abcdef0"  # any id: moto launches it without looking it up
    ec2.create_launch_template(
        LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"}
    )

    target_group_arn = workload.get("target_group_arn")
    if target_group_arn:
        tg_name = target_group_arn.split("/")[-2]
        lb_name = workload["load_balancer_arn"].split("/")[-2] if workload.get("load_balancer_arn") else f"{tg_name}-lb"
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
        lb_arn = workload.get("load_balancer_arn") or lb["LoadBalancerArn"]
        _adopt_arns(emulator, {lb["LoadBalancerArn"]: lb_arn, tg["TargetGroupArn"]: target_group_arn})
        # The load balancer and target group opted in, as the user's own resources would.
        elbv2.add_tags(ResourceArns=[lb_arn, target_group_arn], Tags=_tags(workload, managed_tag))
        elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group_arn}],
        )

    group = workload["auto_scaling_group"]
    _create_group(autoscaling, group, f"{name}-lt", name, shape, subnets, target_group_arn, managed_tag)
    built: dict[str, Any] = {
        "group": group,
        "target_group_arn": target_group_arn,
        "instances": in_service(emulator, group),
    }
    if second is not None:
        if not target_group_arn:
            raise ValueError(f"workload {name} has no target group for a second group to share")
        green = second_group_name(workload)
        _create_group(autoscaling, green, f"{name}-lt", name, second, subnets, target_group_arn, managed_tag)
        built["second_group"] = {"group": green, "instances": in_service(emulator, green)}
    return built


def _create_group(
    autoscaling: Any,
    group: str,
    launch_template: str,
    workload_name: str,
    shape: WorkloadShape,
    subnets: list[str],
    target_group_arn: str | None,
    managed_tag: tuple[str, str],
) -> None:
    """An opted-in group (its tags propagate to its instances, as a user's own group's do)
    registered on the target group, if any, with ELB health checks."""
    tags = {managed_tag[0]: managed_tag[1], "Name": workload_name, "recovery:workload": workload_name}
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": launch_template, "Version": "$Latest"},
        MinSize=shape.min_size,
        MaxSize=shape.max_size,
        DesiredCapacity=shape.desired,
        VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[target_group_arn] if target_group_arn else [],
        HealthCheckType="ELB" if target_group_arn else "EC2",
        HealthCheckGracePeriod=60,
        Tags=[
            {
                "Key": key,
                "Value": value,
                "PropagateAtLaunch": True,
                "ResourceId": group,
                "ResourceType": "auto-scaling-group",
            }
            for key, value in tags.items()
        ],
    )


def build_standby(
    emulator: Emulator, workload: dict[str, Any], standby: dict[str, Any], managed_tag: tuple[str, str]
) -> dict[str, Any]:
    """The workload's standby in its standby region (`emulator` is that region's), opted in and
    empty (pilot light): its group, with room for the capacity a failover asks of it, and its ECS
    service at 0 tasks."""
    built: dict[str, Any] = {}
    with emulator.as_account(workload.get("account_id")):
        if standby.get("auto_scaling_group"):
            shape = WorkloadShape(min_size=0, max_size=max(4, 2 * int(standby["desired_capacity"])), desired=0)
            part = {
                "name": f"{workload['name']}-standby",
                "auto_scaling_group": standby["auto_scaling_group"],
                "target_group_arn": standby.get("target_group_arn"),
            }
            built.update(_build_group(emulator, part, shape, managed_tag))
        if standby.get("ecs_service"):
            part = {"name": workload["name"], "ecs_service": standby["ecs_service"]}
            built["ecs_service"] = _build_service(emulator, part, managed_tag, desired=0)
    return built


def build_global_database(
    primary: Emulator, standby: Emulator, workload: dict[str, Any], managed_tag: tuple[str, str]
) -> None:
    """The standby's Aurora global database (standby.global_database): its primary cluster, the
    writer, in the workload's region (`primary`), and its secondary at the configured ARN in the
    standby region, both opted in."""
    ref = workload["standby"]["global_database"]
    identifier, secondary = ref["global_cluster_identifier"], ref["db_cluster_arn"].rsplit(":", 1)[-1]
    login = {"Engine": "aurora-postgresql", "MasterUsername": "admin", "MasterUserPassword": "not-a-secret-1"}
    tags = _tags(workload, managed_tag)
    with primary.as_account(workload.get("account_id")):
        rds = primary.client("rds")
        rds.create_global_cluster(GlobalClusterIdentifier=identifier, Engine=login["Engine"])
        rds.create_db_cluster(
            DBClusterIdentifier=f"{identifier}-primary", GlobalClusterIdentifier=identifier, Tags=tags, **login
        )
    with standby.as_account(workload.get("account_id")):
        standby.client("rds").create_db_cluster(
            DBClusterIdentifier=secondary, GlobalClusterIdentifier=identifier, Tags=tags, **login
        )


def global_database_state(emulator: Emulator, workload: dict[str, Any]) -> dict[str, Any]:
    """The global database's writer (its region) and status, as the standby region reads it."""
    ref = workload["standby"]["global_database"]
    found = emulator.client("rds").describe_global_clusters(GlobalClusterIdentifier=ref["global_cluster_identifier"])
    cluster = found["GlobalClusters"][0]
    writer = next((m["DBClusterArn"] for m in cluster["GlobalClusterMembers"] if m["IsWriter"]), None)
    return {"writer": writer, "writer_region": writer.split(":")[3] if writer else None, "status": cluster["Status"]}


def build_read_replica(
    primary: Emulator, standby: Emulator, workload: dict[str, Any], managed_tag: tuple[str, str]
) -> None:
    """The standby's cross-region read replica (standby.read_replica) in the standby region, of a
    DB instance in the workload's region (`primary`): the workload's own database instance if it
    declares one, else `<name>-db`, created here. Both opted in."""
    identifier = workload["standby"]["read_replica"]["db_instance_identifier"]
    source = read_replica_source(workload)
    tags = _tags(workload, managed_tag)
    with primary.as_account(workload.get("account_id")):
        rds = primary.client("rds")
        if not (workload.get("database") or {}).get("db_instance_identifier"):
            rds.create_db_instance(
                DBInstanceIdentifier=source,
                Engine="postgres",
                DBInstanceClass="db.t3.micro",
                AllocatedStorage=20,
                MasterUsername="admin",
                MasterUserPassword="not-a-secret-1",
                BackupRetentionPeriod=7,
                AvailabilityZone=f"{primary.region}a",
                Tags=tags,
            )
        arn = rds.describe_db_instances(DBInstanceIdentifier=source)["DBInstances"][0]["DBInstanceArn"]
    with standby.as_account(workload.get("account_id")):
        standby.client("rds").create_db_instance_read_replica(
            DBInstanceIdentifier=identifier,
            SourceDBInstanceIdentifier=arn,
            AvailabilityZone=f"{standby.region}a",
            Tags=tags,
        )


def read_replica_source(workload: dict[str, Any]) -> str:
    """The DB instance the standby's read replica replicates, in the workload's region."""
    return (workload.get("database") or {}).get("db_instance_identifier") or f"{workload['name']}-db"


def read_replica_state(primary: Emulator, standby: Emulator, workload: dict[str, Any]) -> dict[str, Any]:
    """The standby's read replica as DescribeDBInstances shows it in the standby region (still a
    replica: its source), and whether its source, in the workload's region, still lists it."""
    identifier = workload["standby"]["read_replica"]["db_instance_identifier"]
    db = standby.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    found = primary.client("rds").describe_db_instances(DBInstanceIdentifier=read_replica_source(workload))
    listed = db["DBInstanceArn"] in found["DBInstances"][0].get("ReadReplicaDBInstanceIdentifiers", [])
    return {
        "db_instance": identifier,
        "region": standby.region,
        "status": db["DBInstanceStatus"],
        "source": db.get("ReadReplicaSourceDBInstanceIdentifier"),
        "listed_by_source": listed,
        "backup_retention": db.get("BackupRetentionPeriod"),
    }


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

    backend = elbv2_backends[emulator.acting_account][emulator.region]
    for old, new in renames.items():
        for registry in (backend.load_balancers, backend.target_groups):
            if old in registry:
                resource = registry.pop(old)
                resource.arn = new
                registry[new] = resource
    for target_group in backend.target_groups.values():
        target_group.load_balancer_arns = [renames.get(a, a) for a in target_group.load_balancer_arns]


def _build_service(
    emulator: Emulator, workload: dict[str, Any], managed_tag: tuple[str, str], desired: int = 2
) -> dict[str, Any]:
    """An ECS service on Fargate running its desired count (moto runs no tasks by itself)."""
    import os
    from unittest import mock

    ecs = emulator.client("ecs")
    ref = workload["ecs_service"]
    ecs.create_cluster(clusterName=ref["cluster"], tags=_tags(workload, managed_tag, "key", "value"))
    ecs.register_task_definition(
        family=ref["service"],
        containerDefinitions=[
            {"name": "app", "image": "public.ecr.aws/docker/library/nginx:1", "memory": 512, "essential": True}
        ],
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
    )
    with mock.patch.dict(os.environ, {"MOTO_ECS_SERVICE_RUNNING": str(desired)}):
        service = ecs.create_service(
            cluster=ref["cluster"],
            serviceName=ref["service"],
            taskDefinition=ref["service"],
            desiredCount=desired,
            launchType="FARGATE",
            tags=_tags(workload, managed_tag, "key", "value"),
            propagateTags="SERVICE",
        )["service"]
    return {"cluster": ref["cluster"], "service": ref["service"], "arn": service["serviceArn"]}


def crash_tasks(emulator: Emulator, workload: dict[str, Any], count: int) -> None:
    """Tasks of the service crash: it runs fewer than desired until it is redeployed."""
    from moto.ecs.models import ecs_backends

    ref = workload["ecs_service"]
    service = ecs_backends[emulator.acting_account][emulator.region].services[f"{ref['cluster']}:{ref['service']}"]
    service.running_count = max(0, service.desired_count - count)
    for deployment in service.deployments:
        deployment["runningCount"] = service.running_count


def service_state(emulator: Emulator, workload: dict[str, Any]) -> dict[str, Any]:
    """The workload's ECS service as ECS describes it (or the `ecs_service` a standby names)."""
    ref = workload["ecs_service"]
    service = emulator.client("ecs").describe_services(cluster=ref["cluster"], services=[ref["service"]])["services"][0]
    return {
        "running": service["runningCount"],
        "desired": service["desiredCount"],
        "deployments": [d["id"] for d in service.get("deployments", [])],
    }


def _build_database(emulator: Emulator, workload: dict[str, Any], managed_tag: tuple[str, str]) -> dict[str, Any]:
    """A Multi-AZ DB instance, or an Aurora cluster with a writer and a reader."""
    rds = emulator.client("rds")
    ref = workload["database"]
    tags = _tags(workload, managed_tag)
    if ref.get("db_instance_identifier"):
        rds.create_db_instance(
            DBInstanceIdentifier=ref["db_instance_identifier"],
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            AllocatedStorage=20,
            MasterUsername="admin",
            MasterUserPassword="not-a-secret-1",
            MultiAZ=True,
            AvailabilityZone=f"{emulator.region}a",
            Tags=tags,
        )
        return {"db_instance": ref["db_instance_identifier"]}
    cluster = ref["db_cluster_identifier"]
    rds.create_db_cluster(
        DBClusterIdentifier=cluster,
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        Tags=tags,
    )
    for index, zone in enumerate("ab"):
        rds.create_db_instance(
            DBInstanceIdentifier=f"{cluster}-{index + 1}",
            DBClusterIdentifier=cluster,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
            AvailabilityZone=f"{emulator.region}{zone}",
            Tags=tags,
        )
    return {"db_cluster": cluster}


def database_state(emulator: Emulator, workload: dict[str, Any]) -> dict[str, Any]:
    rds = emulator.client("rds")
    ref = workload["database"]
    if ref.get("db_instance_identifier"):
        db = rds.describe_db_instances(DBInstanceIdentifier=ref["db_instance_identifier"])["DBInstances"][0]
        return {"status": db["DBInstanceStatus"], "availability_zone": db.get("AvailabilityZone")}
    cluster = rds.describe_db_clusters(DBClusterIdentifier=ref["db_cluster_identifier"])["DBClusters"][0]
    writer = next((m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"] if m["IsClusterWriter"]), None)
    return {"status": cluster["Status"], "writer": writer}


def _build_dns(emulator: Emulator, workload: dict[str, Any], managed_tag: tuple[str, str]) -> dict[str, Any]:
    """The hosted zone (at the declared id), a health check per endpoint, and failover records."""
    from moto.route53.models import route53_backends

    route53 = emulator.client("route53")
    ref = workload["dns"]
    zone_name = ref["record_name"].split(".", 1)[1] if ref["record_name"].count(".") > 1 else ref["record_name"]
    zone = route53.create_hosted_zone(Name=zone_name, CallerReference=f"drill-{workload['name']}")["HostedZone"]
    backend = route53_backends[emulator.acting_account]["global"]
    created_id = zone["Id"].split("/")[-1]
    declared_id = ref["hosted_zone_id"]
    fake = backend.zones.pop(created_id)
    fake.resource_id = declared_id
    backend.zones[declared_id] = fake
    route53.change_tags_for_resource(
        ResourceType="hostedzone", ResourceId=declared_id, AddTags=_tags(workload, managed_tag)
    )
    checks = {}
    for role, address in (("primary", "192.0.2.10"), ("secondary", "198.51.100.10")):
        checks[role] = route53.create_health_check(
            CallerReference=f"drill-{workload['name']}-{role}",
            HealthCheckConfig={
                "IPAddress": address,
                "Port": 443,
                "Type": "HTTPS",
                "ResourcePath": "/health",
                "RequestInterval": 10,
                "FailureThreshold": 2,
            },
        )["HealthCheck"]["Id"]
    if ref.get("health_check_id"):  # the primary's check at the declared id (its alarm watches that one)
        check = backend.health_checks.pop(checks["primary"])
        check.id = ref["health_check_id"]
        backend.health_checks[check.id] = check
        checks["primary"] = check.id
    # UPSERT: moto refuses to re-create later a record set first made with CREATE.
    changes = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": ref["record_name"],
                "Type": ref.get("record_type", "A"),
                "TTL": 60,
                "SetIdentifier": ref[f"{role}_set_identifier"],
                "Failover": role.upper(),
                "HealthCheckId": checks[role],
                "ResourceRecords": [{"Value": address}],
            },
        }
        for role, address in (("primary", "192.0.2.10"), ("secondary", "198.51.100.10"))
    ]
    route53.change_resource_record_sets(HostedZoneId=declared_id, ChangeBatch={"Changes": changes})
    return {"hosted_zone_id": declared_id, "health_checks": checks}


def dns_state(emulator: Emulator, workload: dict[str, Any]) -> list[dict[str, Any]]:
    ref = workload["dns"]
    records = emulator.client("route53").list_resource_record_sets(HostedZoneId=ref["hosted_zone_id"])
    return [r for r in records["ResourceRecordSets"] if r["Name"].rstrip(".") == ref["record_name"].rstrip(".")]
