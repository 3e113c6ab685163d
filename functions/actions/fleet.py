"""The health of an Auto Scaling group's instances, read once, as the guardrails, replace_instance
and verification judge it.

An instance is failing when any of these says so: its group (HealthStatus Unhealthy), one of the
group's target groups (unhealthy, unavailable, or unused: a stopped instance is
Target.InvalidState), or EC2 (not running, or an instance, system or attached EBS status check
impaired). Healthy capacity is the group's InService instances that nothing says are failing:
replacing an instance that is already failing never lowers it.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

from actions import autoscaling as asg
from actions import ec2
from core import aws
from core.errors import PermanentError
from core.reads import groups, instance_status, target_health

_GONE = ("Terminat", "Detach")  # lifecycle states of instances leaving the group


class Fleet(Struct, frozen=True):
    """One Auto Scaling group as it is now: the group (DescribeAutoScalingGroups' entry) and which
    of its instances are failing, with why."""

    group: dict[str, Any]
    failing: dict[str, str] = field(default_factory=dict)
    # DescribeTargetHealth's descriptions of each target group read, every target (members or
    # not): what a caller needs of them is not asked again (CheckGuardrails' failing elsewhere)
    targets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.group["AutoScalingGroupName"])

    @property
    def members(self) -> set[str]:
        """The group's instances, but those leaving it (terminating, detaching)."""
        return {
            i["InstanceId"]
            for i in self.group.get("Instances", [])
            if not i.get("LifecycleState", "").startswith(_GONE)
        }

    @property
    def healthy(self) -> set[str]:
        """The healthy capacity: InService, Healthy in the group, and failing nothing else."""
        return set(asg.healthy_in_service(self.group)) - set(self.failing)


def read(
    client: Any,
    group_name: str,
    account: str | None = None,
    target_group_arns: tuple[str, ...] = (),
    group: dict[str, Any] | None = None,
) -> Fleet:
    """The group (`group`: as the caller just read it) and its instances' health: the group's
    own, its target groups' (its attached ones and `target_group_arns`) and EC2's."""
    group = group if group is not None else groups.describe(client, group_name)
    failing: dict[str, str] = {
        i["InstanceId"]: f"group health {i.get('HealthStatus')}"
        for i in group.get("Instances", [])
        if i.get("HealthStatus") not in (None, "Healthy")
    }
    members = {i["InstanceId"] for i in group.get("Instances", []) if not i.get("LifecycleState", "").startswith(_GONE)}
    arns = dict.fromkeys([*group.get("TargetGroupARNs", []), *target_group_arns])
    described: dict[str, list[dict[str, Any]]] = {}
    for arn in arns:
        described[arn] = target_health.describe(aws.client("elbv2", max_attempts=1, account=account), arn)
        for description in described[arn]:
            target = description["Target"]["Id"]
            health = description.get("TargetHealth", {})
            if target in members and health.get("State") in target_health.FAILING_STATES:
                failing.setdefault(target, f"target {health.get('State')} ({health.get('Reason', 'no reason')})")
    failing.update({k: v for k, v in _ec2_failing(sorted(members), account).items() if k not in failing})
    return Fleet(group, failing, described)


def carried(group: dict[str, Any], failing: dict[str, str]) -> Fleet:
    """The group as just read, with the target-health and EC2 findings of an earlier read of it
    (CheckGuardrails', passed through the execution state): the group's own health is today's,
    and a finding counts only for an instance the group still holds."""
    members = Fleet(group).members
    own = {
        i["InstanceId"]: f"group health {i.get('HealthStatus')}"
        for i in group.get("Instances", [])
        if i.get("HealthStatus") not in (None, "Healthy")
    }
    return Fleet(group, {**{i: why for i, why in failing.items() if i in members}, **own})


def _ec2_failing(instance_ids: list[str], account: str | None) -> dict[str, str]:
    """Instances EC2 says are not running or fail a status check."""
    if not instance_ids:
        return {}
    client = aws.client("ec2", max_attempts=1, account=account)
    failing: dict[str, str] = {}
    for start in range(0, len(instance_ids), instance_status.IDS_PER_CALL):
        batch = instance_ids[start : start + instance_status.IDS_PER_CALL]
        try:
            statuses = instance_status.describe(client, batch)
        except PermanentError as exc:
            if exc.details.get("code") != "InvalidInstanceID.NotFound":
                raise
            # One of them is gone already: their states, without the status checks.
            found = ec2.describe_instances(client, batch)
            statuses = [{"InstanceId": i, "InstanceState": found[i]["State"]} for i in found]
            failing.update({i: "EC2 instance gone" for i in batch if i not in found})
        for status in statuses:
            reason = instance_status.failing(status)
            if reason:
                failing[status["InstanceId"]] = reason
    return failing
