"""Auto Scaling as the actions and the verification see it: which group an impairment is about,
its healthy capacity, putting its desired capacity back (the reads: core.reads.groups)."""

from __future__ import annotations

from typing import Any

from core import aws, capacity
from core.contract import ImpairmentDetected
from core.errors import PermanentError
from core.reads import groups


def groups_of_instances(client: Any, instance_ids: list[str]) -> dict[str, str]:
    """instance id -> Auto Scaling group name, for the instances that belong to one."""
    return {i: m["AutoScalingGroupName"] for i, m in groups.memberships(client, instance_ids).items()}


def impaired_instances(impairment: ImpairmentDetected) -> list[str]:
    return [r.resource_id for r in impairment.affected_resources if r.resource_type == "ec2:instance"]


def group_name(client: Any, impairment: ImpairmentDetected) -> str:
    """The Auto Scaling group an impairment is about: named in its scope or resources, else the
    group of its instances."""
    if impairment.scope.get("auto_scaling_group"):
        return impairment.scope["auto_scaling_group"]
    for resource in impairment.affected_resources:
        if resource.resource_type == "autoscaling:group":
            return resource.resource_id
    groups = set(groups_of_instances(client, impaired_instances(impairment)).values())
    if len(groups) != 1:
        raise PermanentError(f"cannot tell the Auto Scaling group of impairment {impairment.impairment_id}")
    return groups.pop()


def healthy_in_service(group: dict[str, Any], excluding: set[str] = frozenset()) -> list[str]:
    return [
        i["InstanceId"]
        for i in group.get("Instances", [])
        if i.get("LifecycleState") == "InService"
        and i.get("HealthStatus") == "Healthy"
        and i["InstanceId"] not in excluding
    ]


def raise_desired_capacity(
    client: Any, ledger: Any, name: str, key: str, target: int, grant: dict[str, Any]
) -> tuple[int, int]:
    """Raise a group's desired capacity to `target` (never lower it), recording what it adds as
    this step's grant (`key`) in the capacity ledger (core/capacity.py) before setting it, so that
    it is given back as this step's, whatever other recoveries add. Returns (the desired capacity
    the raise was decided from, the desired capacity now)."""
    _require_ledger(ledger)
    group, read = _reader(client, name)
    decided: list[int] = []

    def decide(_: Any) -> dict[str, Any] | None:
        found = read()["DesiredCapacity"]
        if found >= target:
            return None
        decided.append(found)
        return {"kind": "grant", "found": found, "to": target, "delta": target - found, "grant": grant}

    change = ledger.begin(group["AutoScalingGroupARN"], key, decide)
    if change is None:
        current = read()["DesiredCapacity"]
        return current, current
    now = _make(client, name, change, fresh=bool(decided))
    ledger.finish(group["AutoScalingGroupARN"], key)
    return int(change["found"]), now


def give_back_desired_capacity(client: Any, ledger: Any, name: str, key: str) -> tuple[int, int, str]:
    """Give back this step's grant (`key`): lower the group's CURRENT desired capacity by what the
    step added, less what someone else already took away, never below MinSize (the rule:
    core.capacity.give_back). Returns (the capacity found, the capacity now, what happened)."""
    _require_ledger(ledger)
    group, read = _reader(client, name)
    arn = group["AutoScalingGroupARN"]
    decided: list[int] = []

    def decide(ledger_now: Any) -> dict[str, Any] | None:
        mine = ledger_now.grants.get(key)
        if mine is None:
            return None
        found = read()
        to, given, taken = capacity.give_back(
            found["DesiredCapacity"], int(mine["delta"]), found["MinSize"], ledger_now
        )
        message = _explain(found, to, given, taken, key, ledger_now)
        decided.append(to)
        return {"kind": "return", "found": found["DesiredCapacity"], "to": to, "delta": given, "message": message}

    for _ in range(2):
        change = ledger.begin(arn, key, decide)
        if change is None:
            current = read()["DesiredCapacity"]
            return current, current, "no capacity added by this step is left in the ledger: nothing to give back"
        if change["kind"] == "return":
            now = _make(client, name, change, fresh=bool(decided))
            ledger.finish(arn, key)
            return int(change["found"]), now, change["message"]
        # This step's own raise, decided and never finished (its apply failed there): the grant
        # stands as recorded; if the raise never landed, the rule finds it already taken away.
        ledger.finish(arn, key)
    raise PermanentError(f"the capacity ledger of group {name} keeps a change of this step under way", group=name)


def _require_ledger(ledger: Any) -> None:
    if ledger is None:
        raise PermanentError("no capacity ledger: this action changes a desired capacity only through the ledger")


def _reader(client: Any, name: str) -> tuple[dict[str, Any], Any]:
    """The group as read now, and a reader that returns it once, then reads it afresh (a ledger
    decision taken again after a lost race reads the group again)."""
    group = groups.describe(client, name)
    fresh = [group]

    def read() -> dict[str, Any]:
        return fresh.pop() if fresh else groups.describe(client, name)

    return group, read


def _make(client: Any, name: str, change: dict[str, Any], fresh: bool) -> int:
    """Make a change decided under the ledger: set its desired capacity. A change resumed (`fresh`
    False: decided by an earlier attempt) is made only if the group is still where it was decided
    from; at neither end, someone else changed the group since, and the change is considered
    made (the ledger never changes a group twice for one decision)."""
    found, to = int(change["found"]), int(change["to"])
    current = found if fresh else groups.describe(client, name)["DesiredCapacity"]
    if current != found or current == to:
        return current
    aws.call(client, "set_desired_capacity", AutoScalingGroupName=name, DesiredCapacity=to, HonorCooldown=False)
    return to


def _explain(group: dict[str, Any], to: int, given: int, taken: int, key: str, ledger: Any) -> str:
    """A give-back in words: how much of what the recoveries added, and why not more."""
    current, mine = group["DesiredCapacity"], int(ledger.grants[key]["delta"])
    added = {}
    for grant_key, grant in ledger.grants.items():
        recovery = grant.get("impairment_id", grant_key)
        added[recovery] = added.get(recovery, 0) + int(grant["delta"])
    own = ledger.grants[key].get("impairment_id", key)
    text = f"desired capacity {current} -> {to}: gave back {given} of the {sum(added.values())} added by "
    text += "recovery " + own if len(added) == 1 else "recoveries " + " and ".join(sorted(added))
    others = {r: n for r, n in added.items() if r != own}
    if others:
        stays = ", ".join(f"{r}'s {n}" for r, n in sorted(others.items()))
        text += f" (this one's {mine}; {stays} stays until it is given back)"
    if taken:
        text += f"; {taken} of this recovery's had already been taken away by someone else"
        text += f" (the recoveries' capacity would have the group at {ledger.expected()})"
    if given < mine - taken:
        text += f"; not below MinSize {group['MinSize']}"
    return text
