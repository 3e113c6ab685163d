"""Every detector, declared (detectors/declaration.py says what each field means). The stack
builds the detectors from DETECTORS, the member stacks their forwarding rules and reads, and the
operations construct their alarms: a new detector is its module and one entry here.
"""

from __future__ import annotations

import json

from detectors.declaration import Declaration, Deployment, Events, MetricAlarm, Reads, Retry, Schedule
from detectors.signals import EC2_IMPAIRING_STATES, ECS_FAILURE_STOP_CODES, RDS_IMPAIRING_CATEGORIES

# Where a resource's tags say whether it opted in; only in the detector's own account and region.
_ALARM_ARNS = ("arn:{partition}:cloudwatch:{region}:{account}:alarm:*",)
_SERVICE_ARNS = ("arn:{partition}:ecs:{region}:{account}:service/*",)
_EKS_ARNS = (
    "arn:{partition}:eks:{region}:{account}:cluster/*",
    "arn:{partition}:eks:{region}:{account}:nodegroup/*",
)
_DATABASE_ARNS = ("arn:{partition}:rds:{region}:{account}:db:*", "arn:{partition}:rds:{region}:{account}:cluster:*")


def _alarm_prefixes(deployment: Deployment) -> dict:
    # By name, "<workload>-...": a user onboards an alarm of their own by naming it so and tagging it.
    return {"alarmName": [{"prefix": f"{name}-"} for name in sorted(deployment.workload_names)]}


def _declared_resources(deployment: Deployment) -> dict[str, str]:
    # The alarm detector checks an alarm's workload tag against what its resources belong to.
    declared = {name: sorted(keys) for name, keys in sorted(deployment.workload_resources.items())}
    return {"WORKLOAD_RESOURCES": json.dumps(declared, separators=(",", ":"))}


def _eks_minutes(deployment: Deployment) -> int:
    # As often as the sweep; every 5 minutes when the sweep is off (0).
    return deployment.sweep_interval_minutes or 5


def _sweep_window(deployment: Deployment) -> int:
    # A sweep older than its interval is superseded by the next one; the ids of one window are
    # stable, so the window is at least 5 minutes and at least one interval.
    return max(300, deployment.sweep_interval_minutes * 60)


ALARM = Declaration(
    name="AlarmDetector",
    handler="detectors.alarm.handler",
    description="CloudWatch alarm state changes of protected workloads -> impairment events",
    trigger=Events(
        "AlarmStateChanges",
        "State changes of the alarms of protected workloads",
        source="aws.cloudwatch",
        detail_types=("CloudWatch Alarm State Change",),
        detail=_alarm_prefixes,
        when=lambda d: bool(d.workload_names),  # nothing protected yet: no names, no pattern
    ),
    error_alarm="alarm-detector-errors",
    reads=(
        Reads(("cloudwatch:ListTagsForResource",), _ALARM_ARNS),
        # The workload an alarm's resources belong to: an ECS service's or a database's tags.
        Reads(("ecs:ListTagsForResource", "rds:ListTagsForResource"), _SERVICE_ARNS + _DATABASE_ARNS),
        # An instance's group and tags say which workload it belongs to.
        Reads(
            (
                "elasticloadbalancing:DescribeTargetHealth",
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingInstances",
                "ec2:DescribeInstanceStatus",
                "ec2:DescribeTags",
            )
        ),
    ),
    environment=_declared_resources,
    forward="Alarms",
)

EC2_STATE = Declaration(
    name="Ec2StateDetector",
    handler="detectors.ec2_state.handler",
    description="EC2 instances of protected groups stopping or terminating unasked -> impairment events",
    trigger=Events(
        "Ec2StateChanges",
        "EC2 instances stopping or terminating (the detector keeps those of protected groups)",
        source="aws.ec2",
        detail_types=("EC2 Instance State-change Notification",),
        detail={"state": list(EC2_IMPAIRING_STATES)},
    ),
    error_alarm="ec2-state-detector-errors",
    reads=(
        Reads(
            (
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeScalingActivities",
                "ec2:DescribeTags",
            )
        ),
    ),
    forward="Ec2State",
)

HEALTH = Declaration(
    name="HealthDetector",
    handler="detectors.health.handler",
    description="AWS Health events about protected workloads or their zones -> impairment events",
    trigger=Events(
        "HealthEvents",
        "AWS Health events (issues, scheduled changes, account notifications)",
        source="aws.health",
        detail_types=("AWS Health Event",),
        detail={"eventTypeCategory": ["issue", "scheduledChange", "accountNotification"]},
    ),
    error_alarm="health-detector-errors",
    reads=(
        Reads(
            (
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingInstances",
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeTags",
            )
        ),
    ),
    forward="Health",
)

SWEEPS = Declaration(
    name="HealthSweep",
    handler="detectors.sweeps.handler",
    description="Scheduled sweep: Auto Scaling and target health of every protected group",
    trigger=Schedule(
        "SweepSchedule",
        lambda d: f"Backstop health sweep of the protected groups every {d.sweep_interval_minutes} minute(s)",
        minutes=lambda d: d.sweep_interval_minutes,
    ),
    error_alarm="health-sweep-errors",
    reads=(Reads(("autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth")),),
    environment=lambda d: {"SWEEP_WINDOW_SECONDS": str(_sweep_window(d))},
    alarms=(
        MetricAlarm(
            "SweepAccountsFailed",
            "sweep-accounts-failed",
            "SweepAccountFailed",
            "The health sweep could not look in an account (its own or a member's): AssumeRole refused, "
            "throttling or an API error. Impairments there are found only by their alarms and events until it "
            "can. What to do: read the sweep's logs ('account not swept' names the account and the error); a "
            "refused AssumeRole usually means the member stack is not deployed or its trust does not name "
            "this stack's roles (docs/accounts.md).",
        ),
    ),
    deployed=lambda d: d.sweep_interval_minutes > 0,  # 0: the event-driven detectors alone
    timeout_seconds=60,
    invoke_retry=lambda d: Retry(1, _sweep_window(d)),
    target_retry=lambda d: Retry(1, max(60, d.sweep_interval_minutes * 60)),
)

REGION_PROBE = Declaration(
    name="RegionProbe",
    handler="detectors.region_probe.handler",
    description="Probes the regions of the workloads this region stands by for -> region impairments",
    trigger=Schedule(
        "RegionProbeSchedule",
        lambda d: f"Probe of the regions of {d.region_probes} workload(s) this region stands by for, every minute",
        minutes=1,
    ),
    error_alarm="region-probe-errors",
    reads=(Reads(("autoscaling:DescribeAutoScalingGroups",)),),
    alarms=(
        MetricAlarm(
            "RegionProbeRefused",
            "region-probe-refused",
            "RegionProbeRefused",
            "The region probe's calls are refused (AccessDenied, of the describe call or of the member role, a "
            "validation error, throttling): the region answers, but this stack cannot watch it, so an outage of "
            "that region would not be detected from here. What to do: read the probe's logs ('region probe "
            "refused' names the workload, region and error), then fix the role (a member's: its stack and "
            "trust, docs/accounts.md) or the workload's standby configuration (docs/regions.md).",
        ),
        MetricAlarm(
            "RegionProbeIncomplete",
            "region-probe-incomplete",
            "RegionProbeErrors",
            "The region probe could not do its work for a workload, though the function itself may have "
            "succeeded: the workload's group is not in its region (which answers), a call failed on this side "
            "(no credentials, a proxy, an unexpected error), a result could not be recorded or published (the "
            "recovery table or the bus failed), or the probe configuration does not validate (no probe runs; "
            "the region-probe-errors alarm fires too). Until then an outage of that region is detected late or "
            "not at all. What to do: read the probe's error logs (each names the workload, region and error), "
            "then fix the workload's auto_scaling_group or standby configuration, or the failing table, bus or "
            "credentials (docs/regions.md).",
        ),
    ),
    # Only in a stack that probes other regions: a standby region's, for the workloads it stands by for.
    deployed=lambda d: d.region_probes > 0,
    # Probes run in parallel, each at most 8 s (3 s to connect, 5 s to read) in an outage.
    timeout_seconds=60,
    # A run that failed is superseded by the next tick, a minute later.
    invoke_retry=Retry(0, 60),
    target_retry=Retry(1, 60),
    uses_table=True,  # counts failures in the recovery table
)

RDS = Declaration(
    name="RdsDetector",
    handler="detectors.rds.handler",
    description="RDS and Aurora events about protected databases -> impairment events",
    trigger=Events(
        "RdsEvents",
        "RDS DB instance and cluster events that can be an impairment",
        source="aws.rds",
        detail_types=("RDS DB Instance Event", "RDS DB Cluster Event"),
        detail={"EventCategories": list(RDS_IMPAIRING_CATEGORIES)},
    ),
    error_alarm="rds-detector-errors",
    reads=(Reads(("rds:DescribeEvents",)), Reads(("rds:ListTagsForResource",), _DATABASE_ARNS)),
    forward="Rds",
)

ECS = Declaration(
    name="EcsDetector",
    handler="detectors.ecs.handler",
    description="Failed tasks of protected ECS services -> impairment events",
    # Tasks that a person stopped or that AWS reclaimed (Spot, retirement) never reach the detector.
    trigger=Events(
        "EcsTaskStops",
        "Tasks of ECS services stopped by an exit, a failed start or the service scheduler",
        source="aws.ecs",
        detail_types=("ECS Task State Change",),
        detail={
            "lastStatus": ["STOPPED"],
            "group": [{"prefix": "service:"}],
            "stopCode": list(ECS_FAILURE_STOP_CODES),
        },
    ),
    error_alarm="ecs-detector-errors",
    reads=(Reads(("ecs:ListTagsForResource",), _SERVICE_ARNS),),
    forward="Ecs",
)

SPOT = Declaration(
    name="SpotDetector",
    handler="detectors.spot.handler",
    description="Spot instances of protected groups at risk of interruption or interrupted -> impairment events",
    trigger=Events(
        "SpotInterruptions",
        "EC2 Spot rebalance recommendations and interruption warnings (the detector keeps those of protected groups)",
        source="aws.ec2",
        detail_types=("EC2 Instance Rebalance Recommendation", "EC2 Spot Instance Interruption Warning"),
    ),
    error_alarm="spot-detector-errors",
    # The instance's group (or its own tags) say which workload it belongs to.
    reads=(
        Reads(
            (
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingInstances",
                "ec2:DescribeTags",
            )
        ),
    ),
    forward="Spot",
)

EKS_CHECK = Declaration(
    name="EksCheck",
    handler="detectors.eks.handler",
    description="Scheduled EKS check: node group health issues and failing nodes of the declared node groups",
    trigger=Schedule(
        "EksCheckSchedule",
        lambda d: f"Check of {len(d.eks_nodegroups)} EKS node group(s) every {_eks_minutes(d)} minute(s)",
        minutes=lambda d: _eks_minutes(d),
    ),
    error_alarm="eks-check-errors",
    # DescribeCluster: the endpoint and certificate authority of the Kubernetes API (core/kube.py),
    # which the check reaches through the stack's access entry (infra/eks_access.py).
    reads=(Reads(("eks:DescribeNodegroup", "eks:DescribeCluster"), _EKS_ARNS),),
    environment=lambda d: {
        "EKS_NODEGROUPS": json.dumps([dict(n) for n in d.eks_nodegroups], separators=(",", ":")),
        "SWEEP_WINDOW_SECONDS": str(_sweep_window(d)),
    },
    alarms=(
        MetricAlarm(
            "EksCheckIncomplete",
            "eks-check-incomplete",
            "EksCheckErrors",
            "The EKS check could not read a node group: DescribeNodegroup failed, or the cluster's Kubernetes "
            "API refused the check (no access entry, no RBAC binding: a 403) or did not answer. Its failing nodes "
            "are found only by their alarms until it can. What to do: read the check's logs ('node group not "
            "checked' names it and the error), then fix the access (docs/eks.md).",
        ),
    ),
    deployed=lambda d: bool(d.eks_nodegroups),  # only for workloads that declare `eks`
    timeout_seconds=60,
    invoke_retry=lambda d: Retry(0, _sweep_window(d)),  # superseded by the next tick
    target_retry=lambda d: Retry(1, 60 * _eks_minutes(d)),
)

# In the order the stack builds them (the recovery bus's policy lists their roles in this order).
READINESS = Declaration(
    name="Readiness",
    handler="readiness.handler.handler",
    description="Scheduled readiness check: can each plan act now (capacity, DNS, ARC endpoints, permissions)?",
    trigger=Schedule(
        "ReadinessSchedule",
        lambda d: f"Readiness check of every enabled plan every {d.readiness_interval_minutes} minute(s)",
        minutes=lambda d: d.readiness_interval_minutes,
    ),
    error_alarm="readiness-errors",
    reads=(
        Reads(
            (
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeWarmPool",
                "route53:ListResourceRecordSets",
                "route53:GetHealthCheck",
            )
        ),
        # Whether each ARC cluster endpoint answers: this account's routing controls (a member's
        # through its member role, which holds the failover's own grant).
        Reads(
            ("route53-recovery-cluster:GetRoutingControlState",),
            ("arn:{partition}:route53-recovery-control::{account}:controlpanel/*/routingcontrol/*",),
        ),
    ),
    deployed=lambda d: d.readiness_interval_minutes > 0,  # 0: no readiness check
    timeout_seconds=120,
    # A run that failed is superseded by the next one.
    invoke_retry=Retry(0, 600),
    target_retry=Retry(1, 600),
    uses_table=True,  # records each plan's result
    publishes=False,  # never puts an impairment on the bus
)

DETECTORS: tuple[Declaration, ...] = (
    ALARM,
    EC2_STATE,
    HEALTH,
    SWEEPS,
    REGION_PROBE,
    RDS,
    ECS,
    SPOT,
    READINESS,
    EKS_CHECK,
)
