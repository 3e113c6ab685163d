"""What AWS does that moto does not, so that drills end in the state a user would expect.

Each piece is a botocore `before-call` hook on the default session, in the account and region the
call is made in (a member account's, through its role, as well as the central one): either a side
effect on moto's state before moto answers (a Multi-AZ reboot with failover moves the primary to
the standby's zone; a forced new ECS deployment is rolled out by the scheduler; the tasks of a
service a drill breaks keep stopping; a read replica's promotion, replicas.py), or an answer moto
lacks, with the real API's shapes (an Aurora global database's switchover and failover; ARC zonal
shift and routing controls' cluster data plane; the Auto Scaling launches the emulator recorded,
failed ones included, as DescribeScalingActivities; the instance refreshes a drill started). moto
simulates no IAM policy either: the readiness check is told so.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.awsrequest import AWSResponse

from recoveryctl.emulator import replicas

_DURATION = re.compile(r"^(\d+)([mh])$")


def _ok(parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200, "RequestId": "emulator"})
    return AWSResponse("https://emulator", 200, {}, None), parsed


def _error(code: str, message: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("https://emulator", status, {}, None), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "emulator"},
    }


@dataclass
class ZonalShifts:
    """ARC zonal shift, in memory: start (with a mandatory expiry of at most 72 hours), cancel,
    list, get managed resource."""

    account: str
    region: str
    shifts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def handle(self, operation: str, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        from core import clock

        now = clock.utc_now()
        for shift in self.shifts.values():
            if shift["status"] == "ACTIVE" and shift["expiryTime"] <= now:
                shift["status"] = "EXPIRED"
        if operation == "StartZonalShift":
            match = _DURATION.match(params.get("expiresIn", ""))
            if not match:
                return _error("ValidationException", "expiresIn must be like 30m or 2h")
            minutes = int(match.group(1)) * (60 if match.group(2) == "h" else 1)
            if not 1 <= minutes <= 72 * 60:
                return _error("ValidationException", "expiresIn must be between 1 minute and 72 hours")
            if any(
                s["status"] == "ACTIVE" and s["resourceIdentifier"] == params["resourceIdentifier"]
                for s in self.shifts.values()
            ):
                return _error("ConflictException", "the resource already has an active zonal shift", 409)
            shift = {
                "zonalShiftId": str(uuid.uuid4()),
                "resourceIdentifier": params["resourceIdentifier"],
                "awayFrom": params["awayFrom"],
                "expiryTime": now + timedelta(minutes=minutes),
                "startTime": now,
                "status": "ACTIVE",
                "comment": params.get("comment", ""),
            }
            self.shifts[shift["zonalShiftId"]] = shift
            return _ok(dict(shift))
        if operation == "CancelZonalShift":
            shift = self.shifts.get(params["zonalShiftId"])
            if shift is None:
                return _error("ResourceNotFoundException", "no such zonal shift", 404)
            if shift["status"] != "ACTIVE":
                return _error("ConflictException", f"the zonal shift is {shift['status']}", 409)
            shift["status"] = "CANCELED"
            return _ok(dict(shift))
        if operation == "ListZonalShifts":
            items = [
                {**s, "shiftType": "ZONAL_SHIFT"}
                for s in self.shifts.values()
                if params.get("status") in (None, s["status"])
                and params.get("resourceIdentifier") in (None, s["resourceIdentifier"])
            ]
            return _ok({"items": items})
        if operation == "GetManagedResource":
            arn = params["resourceIdentifier"]
            active = [s for s in self.shifts.values() if s["resourceIdentifier"] == arn and s["status"] == "ACTIVE"]
            return _ok(
                {
                    "arn": arn,
                    "name": arn.rsplit("/", 2)[-2],
                    "appliedWeights": {},
                    "zonalShifts": active,
                    "autoshifts": [],
                    "zonalAutoshiftStatus": "DISABLED",
                }
            )
        return _error("UnsupportedOperation", f"the emulator does not implement arc-zonal-shift {operation}")

    def active(self) -> list[dict[str, Any]]:
        from core import clock

        now = clock.utc_now()
        return [s for s in self.shifts.values() if s["status"] == "ACTIVE" and s["expiryTime"] > now]


@dataclass
class RoutingControls:
    """ARC routing controls, as a cluster's data plane serves them (route53-recovery-cluster):
    get a state, update one or several in one transaction, list. Every cluster endpoint answers
    from the same state (the emulator's region outage fails the endpoints of a failed region).

    `assertions` are the control panel's safety rules, as ARC's assertion rules: of each set of
    routing controls, at least `at_least` must be On after an update, else ConflictException,
    unless the call overrides that rule."""

    states: dict[str, str] = field(default_factory=dict)  # routing control ARN -> "On" / "Off"
    names: dict[str, str] = field(default_factory=dict)
    assertions: dict[str, tuple[list[str], int]] = field(default_factory=dict)  # rule ARN -> (controls, at_least)

    def add(self, arn: str, state: str, name: str | None = None) -> None:
        self.states[arn] = state
        self.names[arn] = name or arn.rsplit("/", 1)[-1]

    def handle(self, operation: str, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        if operation == "GetRoutingControlState":
            arn = params["RoutingControlArn"]
            if arn not in self.states:
                return _error("ResourceNotFoundException", f"no routing control {arn}", 404)
            return _ok(
                {
                    "RoutingControlArn": arn,
                    "RoutingControlState": self.states[arn],
                    "RoutingControlName": self.names[arn],
                }
            )
        if operation in ("UpdateRoutingControlState", "UpdateRoutingControlStates"):
            entries = params.get("UpdateRoutingControlStateEntries") or [
                {"RoutingControlArn": params["RoutingControlArn"], "RoutingControlState": params["RoutingControlState"]}
            ]
            unknown = [e["RoutingControlArn"] for e in entries if e["RoutingControlArn"] not in self.states]
            if unknown:
                return _error("ResourceNotFoundException", f"no routing control {unknown[0]}", 404)
            after = {**self.states, **{e["RoutingControlArn"]: e["RoutingControlState"] for e in entries}}
            overridden = set(params.get("SafetyRulesToOverride") or [])
            for rule, (controls, at_least) in self.assertions.items():
                if rule not in overridden and sum(after.get(c) == "On" for c in controls) < at_least:
                    response, parsed = _error(
                        "ConflictException",
                        f"the update would break safety rule {rule}: at least {at_least} of its routing controls On",
                        409,
                    )
                    parsed.update(resourceId=rule, resourceType="SafetyRule")  # the API's required fields
                    return response, parsed
            self.states = after
            return _ok({})
        if operation == "ListRoutingControls":
            controls = [
                {"RoutingControlArn": arn, "RoutingControlName": self.names[arn], "RoutingControlState": state}
                for arn, state in sorted(self.states.items())
            ]
            return _ok({"RoutingControls": controls})
        return _error("UnsupportedOperation", f"the emulator does not implement route53-recovery-cluster {operation}")


@dataclass
class GlobalDatabases:
    """An Aurora global database's SwitchoverGlobalCluster and FailoverGlobalCluster, on moto's
    global clusters (moto keeps them in its us-east-1 backend, whichever region is called): the
    call is accepted and the global cluster is `switching-over` / `failing-over` (with its
    FailoverState) for SWITCH_SECONDS of the virtual clock, then the target is the writer and the
    global cluster `available` again; a DescribeGlobalClusters after that time sees it done. A
    second call while one is under way is refused as RDS refuses it (InvalidGlobalClusterStateFault)."""

    account: str
    # The switchovers and failovers under way (the emulator's, across calls): (account, global
    # cluster) -> (the target's ARN, when it is the writer)
    pending: dict[tuple[str, str], tuple[str, Any]]
    OPERATIONS = frozenset({"SwitchoverGlobalCluster", "FailoverGlobalCluster", "DescribeGlobalClusters"})
    SWITCH_SECONDS = 60

    def handle(self, operation: str, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]] | None:
        self.settle()
        if operation == "DescribeGlobalClusters":
            return self._describe(params.get("GlobalClusterIdentifier"))
        found = self._global_cluster(params["GlobalClusterIdentifier"])
        if found is None:
            return _error("GlobalClusterNotFoundFault", f"{params['GlobalClusterIdentifier']} not found", 404)
        target = params["TargetDbClusterIdentifier"]
        if target not in [m.db_cluster_arn for m in found.members]:
            return _error("DBClusterNotFoundFault", f"{target} is not a member of the global cluster", 404)
        if found.status != "available":
            return _error("InvalidGlobalClusterStateFault", f"the global cluster is {found.status}")
        failover = operation == "FailoverGlobalCluster"
        if failover and not (params.get("AllowDataLoss") or params.get("Switchover")):
            return _error("InvalidParameterCombination", "AllowDataLoss or Switchover is required")
        from core import clock

        found.status = "failing-over" if failover else "switching-over"
        writer = next((m.db_cluster_arn for m in found.members if m.is_writer), None)
        found.failover_state = {
            "Status": "failing-over" if failover else "switching-over",
            "FromDbClusterArn": writer,
            "ToDbClusterArn": target,
            "IsDataLossAllowed": bool(params.get("AllowDataLoss")),
        }
        due = clock.utc_now() + timedelta(seconds=self.SWITCH_SECONDS)
        self.pending[(self.account, found.global_cluster_identifier)] = (target, due)
        return _ok({"GlobalCluster": _global_cluster_shape(found)})

    def settle(self) -> None:
        """Finish the switchovers and failovers whose time has come: the target is the writer."""
        from core import clock

        now = clock.utc_now()
        for (account, identifier), (target, due) in list(self.pending.items()):
            if account != self.account or due > now:
                continue
            del self.pending[(account, identifier)]
            found = self._global_cluster(identifier)
            if found is None:
                continue
            for member in found.members:
                member.is_writer = member.db_cluster_arn == target
            found.status, found.failover_state = "available", None

    def _describe(self, identifier: str | None) -> tuple[AWSResponse, dict[str, Any]]:
        from moto.rds.models import rds_backends

        clusters = rds_backends[self.account]["us-east-1"].global_clusters.values()
        shown = [_global_cluster_shape(g) for g in clusters if identifier in (None, g.global_cluster_identifier)]
        if identifier and not shown:
            return _error("GlobalClusterNotFoundFault", f"{identifier} not found", 404)
        return _ok({"GlobalClusters": shown})

    def _global_cluster(self, identifier: str) -> Any:
        from moto.rds.models import rds_backends

        return rds_backends[self.account]["us-east-1"].global_clusters.get(identifier)


def _global_cluster_shape(found: Any) -> dict[str, Any]:
    """A moto global cluster as DescribeGlobalClusters answers it (with its FailoverState)."""
    shape = {
        "GlobalClusterIdentifier": found.global_cluster_identifier,
        "GlobalClusterResourceId": found.global_cluster_resource_id,
        "GlobalClusterArn": found.global_cluster_arn,
        "Status": found.status,
        "Engine": found.engine,
        "EngineVersion": found.engine_version,
        "StorageEncrypted": bool(found.storage_encrypted),
        "DeletionProtection": bool(found.deletion_protection),
        "GlobalClusterMembers": [
            {"DBClusterArn": m.db_cluster_arn, "IsWriter": bool(m.is_writer), "Readers": []} for m in found.members
        ],
    }
    if getattr(found, "failover_state", None):
        shape["FailoverState"] = dict(found.failover_state)
    return shape


def _health_check_status(emulator: Any, health_check_id: str) -> tuple[AWSResponse, dict[str, Any]] | None:
    """A Route 53 health check of an endpoint the emulator knows (emulator.health_check_targets:
    id -> (region, target group)): healthy while the target group has a healthy target and its
    region is up, as Route 53's checkers would see the endpoint. None: moto answers."""
    from recoveryctl.emulator.hooks import outage_exempt

    watched = emulator.health_check_targets.get(health_check_id)
    if watched is None:
        return None
    region, target_group = watched
    healthy = False
    if region not in emulator.failed_regions:
        account = target_group.split(":")[4]  # the target group's account (a member's, say)
        with outage_exempt():
            elbv2 = emulator.peer(region).client("elbv2", account=account)
            health = elbv2.describe_target_health(TargetGroupArn=target_group)
        healthy = any(t["TargetHealth"]["State"] == "healthy" for t in health["TargetHealthDescriptions"])
    report = {"Status": "Success: HTTP Status Code 200" if healthy else "Failure: Connection timed out."}
    observations = [
        {
            "Region": checker,
            "IPAddress": "15.177.0.1",
            "StatusReport": {**report, "CheckedTime": "2026-01-01T00:00:00Z"},
        }
        for checker in ("us-east-1", "us-west-1", "eu-west-1")
    ]
    return _ok({"HealthCheckObservations": observations})


def install(emulator: Any) -> ZonalShifts:
    """Register the hooks on the default boto3 session; returns the zonal shift state."""
    import boto3

    session = boto3._get_default_session()
    shifts = ZonalShifts(emulator.account, emulator.region)
    emulator.routing_controls = RoutingControls()
    global_switches: dict[tuple[str, str], tuple[str, Any]] = {}
    promotions = replicas.ReadReplicaPromotions({})
    # (region, cluster, service) of the services whose tasks keep stopping: a drill's broken standby
    emulator.world.stopping_services = set()

    def remember_params(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        # before-call sees the serialized request; keep the API parameters for it.
        context["emulator_api_params"] = dict(params)

    def before_call(model: Any, context: dict[str, Any], request_signer: Any = None, **kwargs: Any) -> Any:
        params = context.get("emulator_api_params", {})
        service = model.service_model.service_id.hyphenize()
        if service == "arc-zonal-shift":
            return shifts.handle(model.name, params)
        if service == "route53-recovery-cluster":
            if model.name.startswith("UpdateRoutingControlState"):
                emulator.traffic_moved()
            return emulator.routing_controls.handle(model.name, params)
        if service == "route-53" and model.name == "GetHealthCheckStatus":
            return _health_check_status(emulator, params["HealthCheckId"])
        if service == "route-53" and model.name == "ChangeResourceRecordSets":
            emulator.traffic_moved()
        if service == "rds" and model.name == "PromoteReadReplica":
            return promotions.promote(*_where(emulator, request_signer), params)
        if service == "rds":
            promotions.settle()
        if service == "rds" and model.name in GlobalDatabases.OPERATIONS:
            account, _ = _where(emulator, request_signer)
            return GlobalDatabases(account, global_switches).handle(model.name, params)
        if service == "rds" and model.name == "RebootDBInstance" and params.get("ForceFailover"):
            account, region = _where(emulator, request_signer)
            _fail_over_instance(account, region, params["DBInstanceIdentifier"])
        if service == "ecs" and model.name == "UpdateService" and params.get("forceNewDeployment"):
            account, region = _where(emulator, request_signer)
            _roll_out(account, region, params.get("cluster", "default"), params["service"])
        if service == "ecs" and model.name == "DescribeServices" and emulator.world.stopping_services:
            account, region = _where(emulator, request_signer)
            _stop_tasks(emulator.world.stopping_services, account, region, params)
        if service == "auto-scaling" and model.name == "DescribeScalingActivities":
            account, region = _where(emulator, request_signer)
            return _scaling_activities(emulator, account, region, params)
        if service == "auto-scaling" and model.name == "DescribeInstanceRefreshes":
            account, region = _where(emulator, request_signer)
            return _instance_refreshes(emulator, account, region, params)
        return None

    # moto simulates no IAM policy: the readiness check says its permissions are not checked
    # locally rather than judge them on an answer AWS would not give.
    from readiness import world as readiness_world

    readiness_world.no_simulation("locally, the emulator simulates no IAM policy")
    emulator.on_exit(readiness_world.no_simulation, None)
    session.events.register("before-parameter-build.*.*", remember_params, unique_id="recovery-emulator-params")
    session.events.register("before-call.*.*", before_call, unique_id="recovery-emulator-behaviour")
    emulator.on_exit(session.events.unregister, "before-call.*.*", unique_id="recovery-emulator-behaviour")
    emulator.on_exit(session.events.unregister, "before-parameter-build.*.*", unique_id="recovery-emulator-params")
    return shifts


def _where(emulator: Any, request_signer: Any) -> tuple[str, str]:
    """The account (from the call's credentials) and region a call is made in."""
    region = getattr(request_signer, "region_name", None) or emulator.region
    return emulator.account_of(request_signer), region


def _scaling_activities(
    emulator: Any, account: str, region: str, params: dict[str, Any]
) -> tuple[AWSResponse, dict[str, Any]]:
    """The group's launches the emulator recorded, newest first (moto answers none)."""
    group = params.get("AutoScalingGroupName")
    wanted = set(params.get("ActivityIds") or [])
    found = [
        activity
        for (in_account, in_region, name), activities in emulator.scaling_activities.items()
        if (in_account, in_region) == (account, region) and group in (None, name)
        for activity in activities
        if not wanted or activity["ActivityId"] in wanted
    ]
    found.sort(key=lambda a: a["StartTime"], reverse=True)
    return _ok({"Activities": [dict(a) for a in found]})


def _instance_refreshes(
    emulator: Any, account: str, region: str, params: dict[str, Any]
) -> tuple[AWSResponse, dict[str, Any]]:
    """The group's instance refreshes a drill started (moto has none), newest first, each as
    DescribeInstanceRefreshes shows it: its status turns to how it ends at its end time."""
    from core import clock

    now = clock.utc_now()
    found = []
    for refresh in emulator.instance_refreshes.get((account, region, params.get("AutoScalingGroupName")), []):
        ends_at = refresh.get("ends_at")
        over = ends_at is not None and now >= ends_at
        shown = {k: v for k, v in refresh.items() if k not in ("ends_at", "ends_as")}
        if over:
            shown.update(Status=refresh["ends_as"], EndTime=ends_at, PercentageComplete=100)
        found.append(shown)
    return _ok({"InstanceRefreshes": found})


def _fail_over_instance(account: str, region: str, identifier: str) -> None:
    """A Multi-AZ instance's standby becomes primary: the instance changes zone."""
    from moto.rds.models import rds_backends

    database = rds_backends[account][region].databases.get(identifier)
    if database is None or not getattr(database, "multi_az", False):
        return
    zones = [f"{region}{z}" for z in "abc"]
    current = database.availability_zone
    database.availability_zone = next(z for z in zones if z != current)


def _roll_out(account: str, region: str, cluster: str, service: str) -> None:
    """The ECS scheduler replaces the service's tasks: it runs its desired count again."""
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[account][region]
    cluster_name = cluster.split("/")[-1]
    found = backend.services.get(f"{cluster_name}:{service.split('/')[-1]}")
    if found is None:
        return
    found.running_count = found.desired_count
    found.pending_count = 0
    for deployment in found.deployments:
        deployment.update({"runningCount": found.desired_count, "pendingCount": 0, "rolloutState": "COMPLETED"})


def _stop_tasks(stopping: set[tuple[str, str, str]], account: str, region: str, params: dict[str, Any]) -> None:
    """The tasks of a broken service stop as soon as they start (moto runs a new desired count at
    once): it runs none, its deployment stays IN_PROGRESS, its failed tasks counted, as ECS shows a
    service whose essential container keeps exiting."""
    from moto.ecs.models import ecs_backends

    cluster = params.get("cluster", "default").split("/")[-1]
    for name in params.get("services", []):
        if (region, cluster, name.split("/")[-1]) not in stopping:
            continue
        found = ecs_backends[account][region].services.get(f"{cluster}:{name.split('/')[-1]}")
        if found is None:
            continue
        found.running_count = 0
        found.pending_count = found.desired_count
        for deployment in found.deployments:
            failed = deployment.get("failedTasks", 0) + deployment.get("runningCount", 0)
            deployment.update(
                {
                    "runningCount": 0,
                    "pendingCount": found.desired_count,
                    "failedTasks": failed,
                    "rolloutState": "IN_PROGRESS",
                }
            )
