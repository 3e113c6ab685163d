"""Recovery actions by name: the one place that declares each action (actions/specs.py says what
a declaration holds). A plan names actions from here; the infra builds one Lambda per action
phase, each with the IAM its action declares, and the workflow's roles from what Verify and
ReturnCapacity do after it; the guardrails, Verify, Finalize and ReturnCapacity read what is
special about an action here. Its code is its own module, actions/<name>.py (ACTION: its
parameters, apply and rollback), imported only by what runs it.

Adding an action: its module, and its ActionSpec below (docs/actions.md).
"""

from __future__ import annotations

from actions.specs import ActionSpec, HandBack, IamGrant, StepParams, Verification

# --- helpers of the declarations: pure functions of a step's params, as the plan gives them (the
# defaults are the parameters' own: tests/unit/test_action_specs.py compares them) ---


def _return_after(params: StepParams) -> int | None:
    """Emergency capacity goes back after return_after_seconds (default 3600), unless the plan keeps it."""
    return None if params.get("keep") else int(params.get("return_after_seconds") or 3600)


def _expires_in(params: StepParams) -> int | None:
    """A weights shift's expires_in (default 1h), in seconds; other kinds hand nothing back (a
    zonal shift expires in ARC by itself)."""
    if params.get("kind") != "shift_weights":
        return None
    expires = params.get("expires_in") or "1h"
    return int(expires[:-1]) * (3600 if expires.endswith("h") else 60)


def _deregisters_targets(params: StepParams) -> bool:
    return params.get("kind", "deregister_targets") == "deregister_targets"


# Verify reads the group's capacity after a capacity action.
_GROUP_CAPACITY = ("autoscaling:DescribeAutoScalingGroups",)
# This account's routing controls: they cannot carry the managed tag; a plan naming them opts them in.
ROUTING_CONTROLS_ARN = (
    "arn:${AWS::Partition}:route53-recovery-control::${AWS::AccountId}:controlpanel/*/routingcontrol/*"
)
_ROUTING_CONTROL_STATE = "route53-recovery-cluster:GetRoutingControlState"
SSM_DOCUMENT = "AWS-RunShellScript"

SPECS: tuple[ActionSpec, ...] = (
    ActionSpec(
        name="replace_instance",
        description="Replace impaired instances through their Auto Scaling group; reboot or stop and start others",
        iam_actions=(
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:TerminateInstanceInAutoScalingGroup",
            "autoscaling:SetInstanceHealth",
            "autoscaling:SetDesiredCapacity",
            "elasticloadbalancing:DescribeTargetHealth",
            "ec2:DescribeInstanceStatus",
            "ec2:DescribeInstances",
            "ec2:RebootInstances",
            "ec2:StopInstances",
            "ec2:StartInstances",
        ),
        takes_out_of_service=lambda params: True,
        verification=Verification(group_capacity=True, impaired_out_of_service=True, iam_actions=_GROUP_CAPACITY),
    ),
    ActionSpec(
        name="scale_out",
        description="Add capacity to the impaired workload's Auto Scaling group",
        iam_actions=(
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:SetDesiredCapacity",
        ),
        verification=Verification(group_capacity=True, iam_actions=_GROUP_CAPACITY),
        hand_back=HandBack(after=_return_after, only_if_healthy=True),
    ),
    ActionSpec(
        name="provision_backup",
        description="Bring pre-warmed capacity into service: warm pool, standby instances or a standby group",
        iam_actions=(
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeWarmPool",
            "autoscaling:SetDesiredCapacity",
            "autoscaling:ExitStandby",
            "autoscaling:EnterStandby",
            "elasticloadbalancing:DescribeTargetHealth",
        ),
        verification=Verification(group_capacity=True, iam_actions=_GROUP_CAPACITY),
    ),
    ActionSpec(
        name="redirect_traffic",
        description="Redirect traffic away from impaired targets, target groups or Availability Zones",
        iam_actions=(
            "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInstances",
            "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTargetHealth",
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeRules",
            # Tag-conditioned: on the target group, the listener and the listener rule respectively.
            "elasticloadbalancing:DeregisterTargets",
            "elasticloadbalancing:RegisterTargets",
            "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:ModifyRule",
            "arc-zonal-shift:GetManagedResource",
            "arc-zonal-shift:ListZonalShifts",
            # ARC authorizes these against the load balancer and supports aws:ResourceTag on it.
            "arc-zonal-shift:StartZonalShift",
            "arc-zonal-shift:CancelZonalShift",
        ),
        # Deregistered targets serve nothing: counted like replaced instances.
        takes_out_of_service=_deregisters_targets,
        hand_back=HandBack(after=_expires_in, only_if_healthy=False),
    ),
    ActionSpec(
        name="failover",
        description=(
            "Fail over to the standby: Route 53 records, ARC routing controls, an RDS Multi-AZ instance or a DB cluster"
        ),
        iam_actions=(
            "route53:ListResourceRecordSets",
            "route53:ListTagsForResource",
            "route53:GetHealthCheckStatus",
            "rds:DescribeDBInstances",
            "rds:DescribeDBClusters",
            "rds:ListTagsForResource",
            "rds:RebootDBInstance",
            "rds:FailoverDBCluster",
        ),
        # Route 53 has no resource-tag condition key: the action checks the zone's tag itself.
        iam_actions_without_tag_condition=("route53:ChangeResourceRecordSets",),
        # ARC's cluster data plane has no tag condition key either: routing controls of this account
        # only, and the action changes only the two a plan names (the opt-in). Overriding safety rules
        # is allowed (no AllowSafetyRulesOverrides condition) because a plan may list rules to override.
        iam_grants=(
            IamGrant(
                actions=(_ROUTING_CONTROL_STATE, "route53-recovery-cluster:UpdateRoutingControlStates"),
                resources=(ROUTING_CONTROLS_ARN,),
            ),
        ),
        # The standby is the one in use: its DNS record, or its routing control On and the primary's
        # Off (read from the cluster's data plane, not from the impaired region). A database is
        # verified after any plan.
        verification=Verification(
            step_check="actions.failover:verify_step",
            iam_actions=("route53:ListResourceRecordSets",),
            iam_grants=(IamGrant(actions=(_ROUTING_CONTROL_STATE,), resources=(ROUTING_CONTROLS_ARN,)),),
        ),
    ),
    ActionSpec(
        name="restart_service",
        description="Restart the impaired service: a new ECS deployment, or a systemd unit through SSM Run Command",
        iam_actions=(
            "ecs:DescribeServices",
            "ecs:ListTagsForResource",
            "ecs:UpdateService",
            "ec2:DescribeInstances",
            "ssm:GetCommandInvocation",
            "ssm:ListCommands",
        ),
        # ssm:SendCommand is authorized against the document and against each instance: the document
        # (AWS-owned, untaggable) is named, and instances are limited by SSM's own tag condition key.
        iam_grants=(
            IamGrant(
                actions=("ssm:SendCommand",),
                resources=(f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}::document/{SSM_DOCUMENT}",),
            ),
            IamGrant(
                actions=("ssm:SendCommand",),
                resources=("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*",),
                tag_condition_key="ssm:resourceTag",
            ),
        ),
    ),
    ActionSpec(
        name="scale_ecs_service",
        description="Add tasks to the impaired workload's ECS service",
        iam_actions=(
            "ecs:DescribeServices",
            "ecs:ListTagsForResource",
            # Tag-conditioned: on the service.
            "ecs:UpdateService",
        ),
        verification=Verification(
            step_check="actions.scale_ecs_service:verify_step", iam_actions=("ecs:DescribeServices",)
        ),
        hand_back=HandBack(after=_return_after, only_if_healthy=True),
    ),
)

ACTIONS: dict[str, ActionSpec] = {spec.name: spec for spec in SPECS}


def get(name: str) -> ActionSpec:
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; known actions: {', '.join(sorted(ACTIONS))}") from None
