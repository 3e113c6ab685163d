"""Recovery actions by name: the one place that declares each action (actions/specs.py says what
a declaration holds). A plan names actions from here; the infra builds one Lambda per action
phase, each with the IAM its action declares, and the workflow's roles from what Verify and
ReturnCapacity do after it; the guardrails, Verify, Finalize and ReturnCapacity read what is
special about an action here. Its code is its own module, actions/<name>.py (ACTION: its
parameters, apply and rollback), imported only by what runs it.

Adding an action: its module, and its ActionSpec below (docs/actions.md). An action that does
one thing several ways is several actions, each with only the IAM its way needs; ALIASES keeps
the older names that chose the way by a `kind` param.
"""

from __future__ import annotations

import re

from actions.specs import ActionSpec, Alias, HandBack, IamGrant, StepParams, Verification

# --- helpers of the declarations: pure functions of a step's params, as the plan gives them (the
# defaults are the parameters' own: tests/unit/test_action_specs.py compares them) ---


def _return_after(params: StepParams) -> int | None:
    """Emergency capacity goes back after return_after_seconds (default 3600), unless the plan keeps it."""
    return None if params.get("keep") else int(params.get("return_after_seconds") or 3600)


def _expires_in(params: StepParams) -> int | None:
    """A weights shift's expires_in (default 1h), in seconds."""
    expires = params.get("expires_in") or "1h"
    return int(expires[:-1]) * (3600 if expires.endswith("h") else 60)


# A function a plan names by name is this account's, in this region.
_FUNCTION_ARN = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
# A runbook named by name: this account's or AWS's (whose ARN names no account of ours).
_RUNBOOK_ARN = "arn:${AWS::Partition}:ssm:${AWS::Region}:*:automation-definition/"
_ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/"


def _function_grants(params: StepParams) -> tuple[IamGrant, ...]:
    """invoke_function: GetFunction (its tags: the action checks the managed tag) and ListTags
    (which GetFunction of a tagged function needs) on the step's functions; InvokeFunction on them
    only while they carry the managed tag (Lambda authorizes aws:ResourceTag on a function)."""
    names = [params.get("function_name"), params.get("rollback_function")]
    arns = tuple(n if n.startswith("arn:") else _FUNCTION_ARN + n for n in names if isinstance(n, str) and n)
    if not arns:
        return ()
    return (
        IamGrant(actions=("lambda:GetFunction", "lambda:ListTags"), resources=arns),
        IamGrant(actions=("lambda:InvokeFunction",), resources=arns, tag_condition_key="aws:ResourceTag"),
    )


def _runbook_grants(params: StepParams) -> tuple[IamGrant, ...]:
    """ssm_automation: StartAutomationExecution of the step's runbooks (any version), and
    iam:PassRole of the AutomationAssumeRole its parameters give, if they give one."""
    documents = [params.get("document_name"), params.get("rollback_document")]
    arns = tuple(
        (d if d.startswith("arn:") else _RUNBOOK_ARN + d).replace(":document/", ":automation-definition/") + ":*"
        for d in documents
        if isinstance(d, str) and d
    )
    roles = tuple(
        dict.fromkeys(
            role
            for given in (params.get("parameters"), params.get("rollback_parameters"))
            if isinstance(given, dict)
            for role in _as_list(given.get("AutomationAssumeRole"))
            if re.match(_ROLE_ARN, role)
        )
    )
    grants = [IamGrant(actions=("ssm:StartAutomationExecution",), resources=arns)] if arns else []
    if roles:
        grants.append(IamGrant(actions=("iam:PassRole",), resources=roles))
    return tuple(grants)


def _as_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []


# Verify reads the group's capacity after a capacity action.
_GROUP_CAPACITY = ("autoscaling:DescribeAutoScalingGroups",)
# This account's routing controls: they cannot carry the managed tag; a plan naming them opts them in.
ROUTING_CONTROLS_ARN = (
    "arn:${AWS::Partition}:route53-recovery-control::${AWS::AccountId}:controlpanel/*/routingcontrol/*"
)
_ROUTING_CONTROL_STATE = "route53-recovery-cluster:GetRoutingControlState"
SSM_DOCUMENT = "AWS-RunShellScript"
# The Auto Scaling groups EKS makes for managed node groups, and what Verify reads of a node group
# (its nodes' status is read through the Kubernetes API: the EKS access entry, docs/eks.md).
_EKS_GROUPS = (
    "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/eks-*"
)
_EKS_READS = ("eks:DescribeCluster", "eks:DescribeNodegroup")
_GLOBAL_SWITCH = ("rds:SwitchoverGlobalCluster", "rds:FailoverGlobalCluster")
# Any region's clusters of this account (the target is in the standby region); global clusters have no region.
_DB_CLUSTERS_ARN = "arn:${AWS::Partition}:rds:*:${AWS::AccountId}:cluster:*"
_GLOBAL_CLUSTERS_ARN = "arn:${AWS::Partition}:rds::${AWS::AccountId}:global-cluster:*"

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
    # --- provision_backup: pre-warmed capacity into service, one action per where it waits ---
    ActionSpec(
        name="provision_warm_pool",
        description="Raise the group's desired capacity by what its warm pool holds warmed",
        iam_actions=(
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeWarmPool",
            "autoscaling:SetDesiredCapacity",
        ),
        verification=Verification(group_capacity=True, iam_actions=_GROUP_CAPACITY),
    ),
    ActionSpec(
        name="provision_standby_instances",
        description="Bring the group's Standby instances back into service",
        iam_actions=(
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:ExitStandby",
            "autoscaling:EnterStandby",
        ),
        verification=Verification(group_capacity=True, iam_actions=_GROUP_CAPACITY),
    ),
    ActionSpec(
        name="provision_standby_group",
        description="Scale a standby Auto Scaling group up, and wait for its capacity in service",
        iam_actions=(
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:SetDesiredCapacity",
            "elasticloadbalancing:DescribeTargetHealth",
        ),
        verification=Verification(group_capacity=True, iam_actions=_GROUP_CAPACITY),
    ),
    ActionSpec(
        name="provision_standby_ecs_service",
        description="Scale a standby region's ECS service up; wait until its tasks run and its deployment completes",
        iam_actions=(
            "ecs:DescribeServices",
            "ecs:ListTagsForResource",
            # Tag-conditioned: on the service.
            "ecs:UpdateService",
        ),
        # The standby service runs (at least) the count the step set, its deployment COMPLETED.
        verification=Verification(
            step_check="actions.provision_standby_ecs_service:verify_step", iam_actions=("ecs:DescribeServices",)
        ),
    ),
    # --- redirect_traffic: traffic away from what is impaired ---
    ActionSpec(
        name="redirect_deregister_targets",
        description="Deregister the impaired targets, or a zone's, from their target group",
        iam_actions=(
            "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInstances",
            "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTargetHealth",
            # Tag-conditioned: on the target group.
            "elasticloadbalancing:DeregisterTargets",
            "elasticloadbalancing:RegisterTargets",
        ),
        # Deregistered targets serve nothing: counted like replaced instances.
        takes_out_of_service=lambda params: True,
    ),
    ActionSpec(
        name="redirect_shift_weights",
        description="Move an ALB forward action's weight away from the impaired target group, time-boxed",
        iam_actions=(
            "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeRules",
            # Tag-conditioned: on the listener and the listener rule respectively.
            "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:ModifyRule",
        ),
        hand_back=HandBack(after=_expires_in, only_if_healthy=False),
    ),
    ActionSpec(
        name="redirect_zonal_shift",
        description="Shift a load balancer away from the impaired Availability Zone (ARC zonal shift, with an expiry)",
        iam_actions=(
            "ec2:DescribeAvailabilityZones",
            "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTargetGroups",
            "arc-zonal-shift:GetManagedResource",
            "arc-zonal-shift:ListZonalShifts",
            # An EKS cluster's tags and zonal shift configuration (resource eks_cluster).
            "eks:DescribeCluster",
            # ARC authorizes these against the load balancer and supports aws:ResourceTag on it.
            "arc-zonal-shift:StartZonalShift",
            "arc-zonal-shift:CancelZonalShift",
        ),
        # Nothing to hand back: the zonal shift expires in ARC by itself.
    ),
    # --- failover: to the standby; rollback fails back ---
    ActionSpec(
        name="failover_dns",
        description="Fail over to the standby's Route 53 record (failover or weighted routing)",
        iam_actions=(
            "route53:ListResourceRecordSets",
            "route53:ListTagsForResource",
            "route53:GetHealthCheckStatus",
        ),
        # Route 53 has no resource-tag condition key: the action checks the zone's tag itself.
        iam_actions_without_tag_condition=("route53:ChangeResourceRecordSets",),
        # The standby's record is the one in use.
        verification=Verification(
            step_check="actions.failover_dns:verify_step", iam_actions=("route53:ListResourceRecordSets",)
        ),
    ),
    ActionSpec(
        name="failover_database",
        description="Fail an RDS Multi-AZ DB instance or a DB cluster over to its standby",
        iam_actions=(
            "rds:DescribeDBInstances",
            "rds:DescribeDBClusters",
            "rds:ListTagsForResource",
            "rds:RebootDBInstance",
            "rds:FailoverDBCluster",
        ),
        # A database is verified after any plan (its status): nothing of its own.
    ),
    ActionSpec(
        name="failover_global_database",
        description="Make an Aurora global database's standby-region cluster its writer: switchover, or failover",
        iam_actions=(
            "rds:DescribeGlobalClusters",
            "rds:DescribeDBClusters",
            "rds:ListTagsForResource",
        ),
        # RDS authorizes both against the target DB cluster (tag-conditioned: it carries the
        # managed tag, which the action checks too) and against the global cluster, which a
        # workload's configuration names but need not tag.
        iam_grants=(
            IamGrant(actions=_GLOBAL_SWITCH, resources=(_DB_CLUSTERS_ARN,), tag_condition_key="aws:ResourceTag"),
            IamGrant(actions=_GLOBAL_SWITCH, resources=(_GLOBAL_CLUSTERS_ARN,)),
        ),
        # The target is the writer and available, read in the standby region.
        verification=Verification(
            step_check="actions.failover_global_database:verify_step",
            iam_actions=("rds:DescribeGlobalClusters", "rds:DescribeDBClusters"),
        ),
    ),
    ActionSpec(
        name="promote_read_replica",
        description="Promote the standby region's cross-region read replica to a standalone DB instance (irreversible)",
        iam_actions=(
            "rds:DescribeDBInstances",
            "rds:ListTagsForResource",
            # Tag-conditioned: on the DB instance.
            "rds:PromoteReadReplica",
        ),
        # A promoted replica cannot be demoted: approval unless the step opts out.
        needs_approval=lambda params: not params.get("without_approval"),
        verification=Verification(
            step_check="actions.promote_read_replica:verify_step", iam_actions=("rds:DescribeDBInstances",)
        ),
    ),
    ActionSpec(
        name="failover_routing_control",
        description="Fail over by ARC routing controls: the standby's On and the primary's Off, in one update",
        iam_actions=(),
        # ARC's cluster data plane has no tag condition key: routing controls of this account only,
        # and the action changes only the two a plan names (the opt-in). Overriding safety rules is
        # allowed (no AllowSafetyRulesOverrides condition) because a plan may list rules to override.
        iam_grants=(
            IamGrant(
                actions=(_ROUTING_CONTROL_STATE, "route53-recovery-cluster:UpdateRoutingControlStates"),
                resources=(ROUTING_CONTROLS_ARN,),
            ),
        ),
        # The standby's routing control On and the primary's Off, read from the cluster's data
        # plane, not from the impaired region.
        verification=Verification(
            step_check="actions.failover_routing_control:verify_step",
            iam_grants=(IamGrant(actions=(_ROUTING_CONTROL_STATE,), resources=(ROUTING_CONTROLS_ARN,)),),
        ),
    ),
    # --- restart_service: the impaired service, restarted ---
    ActionSpec(
        name="restart_ecs_service",
        description="Restart the impaired ECS service: a new deployment of its task definition",
        iam_actions=(
            "ecs:DescribeServices",
            "ecs:ListTagsForResource",
            # Tag-conditioned: on the service.
            "ecs:UpdateService",
        ),
    ),
    ActionSpec(
        name="restart_systemd_unit",
        description="Restart a systemd unit on the impaired instances through SSM Run Command",
        iam_actions=(
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
    # --- EKS managed node groups: the Kubernetes calls through the stack's EKS access entry ---
    ActionSpec(
        name="replace_eks_node",
        description="Cordon and drain an impaired EKS node, then replace its instance through its managed node group",
        iam_actions=(
            "eks:DescribeCluster",
            "eks:DescribeNodegroup",
            "autoscaling:DescribeAutoScalingInstances",
        ),
        # A managed node group's Auto Scaling group is EKS's (named eks-<node group>-<id>) and
        # does not carry the node group's tags: the action checks the node group's managed tag.
        iam_grants=(IamGrant(actions=("autoscaling:TerminateInstanceInAutoScalingGroup",), resources=(_EKS_GROUPS,)),),
        takes_out_of_service=lambda params: True,
        verification=Verification(step_check="actions.replace_eks_node:verify_step", iam_actions=_EKS_READS),
    ),
    ActionSpec(
        name="scale_eks_nodegroup",
        description="Add nodes to an EKS managed node group (its desired size, within its maxSize and a cap)",
        iam_actions=(
            "eks:DescribeNodegroup",
            # Tag-conditioned: on the node group.
            "eks:UpdateNodegroupConfig",
        ),
        verification=Verification(step_check="actions.scale_eks_nodegroup:verify_step", iam_actions=_EKS_READS),
        hand_back=HandBack(after=_return_after, only_if_healthy=True),
    ),
    # --- custom steps: the user's code, with our guardrails, verification, rollback and audit ---
    ActionSpec(
        name="invoke_function",
        description="Invoke the user's Lambda function for apply (and another for rollback), by a documented contract",
        iam_actions=(),
        param_grants=_function_grants,
    ),
    ActionSpec(
        name="ssm_automation",
        description="Run an SSM Automation runbook on the impaired instances and wait for it; roll back with another",
        iam_actions=(
            "ec2:DescribeInstances",
            "ssm:GetAutomationExecution",
        ),
        param_grants=_runbook_grants,
    ),
)

ACTIONS: dict[str, ActionSpec] = {spec.name: spec for spec in SPECS}

# The names that were one action with a `kind` param each: a plan may still use them.
ALIASES: dict[str, Alias] = {
    alias.name: alias
    for alias in (
        Alias(
            "provision_backup",
            {
                "warm_pool": "provision_warm_pool",
                "standby_instances": "provision_standby_instances",
                "standby_group": "provision_standby_group",
                "standby_ecs_service": "provision_standby_ecs_service",
            },
            default_kind="warm_pool",
        ),
        Alias(
            "redirect_traffic",
            {
                "deregister_targets": "redirect_deregister_targets",
                "shift_weights": "redirect_shift_weights",
                "zonal_shift": "redirect_zonal_shift",
            },
            default_kind="deregister_targets",
        ),
        Alias(
            "failover",
            {
                "dns": "failover_dns",
                "database": "failover_database",
                "routing_control": "failover_routing_control",
                "global_database": "failover_global_database",
            },
        ),
        Alias("restart_service", {"ecs": "restart_ecs_service", "systemd": "restart_systemd_unit"}),
    )
}


def get(name: str) -> ActionSpec:
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; known actions: {', '.join(sorted(ACTIONS))}") from None
