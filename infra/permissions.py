"""Least privilege from declarations: the one place that turns what an action declares
(actions/registry.py) into IAM statements, used for the central stack's functions
(constructs/workflow.py: each action's own, Verify's and ReturnCapacity's) and for the role the
central account assumes in each member account (member_stack.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from aws_cdk import Fn
from aws_cdk import aws_iam as iam

from actions.specs import ActionSpec, IamGrant

if TYPE_CHECKING:
    from core.plans import Plan
    from infra.workload_config import Workload

_READ_PREFIXES = ("Describe", "List", "Get")
# Mutating calls of a service with no resource-tag condition key whose resources the configuration
# names: granted on those (the hosted zones of the workloads' `dns` and of the plans' steps), and
# not at all when it names none; never on "*".
ZONE_SCOPED = frozenset({"route53:ChangeResourceRecordSets"})


def hosted_zones(workloads: Iterable[Workload], plans: Iterable[Plan]) -> list[str]:
    """The hosted zone ids a deployment may change records in: each workload's `dns` zone (a
    failover without a zone in its params takes it from there) and each plan step's
    `hosted_zone_id`, whichever action the step is (a DNS failover by any name)."""
    zones = [w.dns.hosted_zone_id for w in workloads if w.dns]
    zones += [str(s.params["hosted_zone_id"]) for p in plans for s in p.steps if s.params.get("hosted_zone_id")]
    return list(dict.fromkeys(z.removeprefix("/hostedzone/") for z in zones))


def plan_grants(plans: Iterable[Plan]) -> dict[str, tuple[IamGrant, ...]]:
    """By action: the IAM on what the plans' steps name (an action's param_grants: a user's
    function, a runbook), the resources of grants alike merged into one grant."""
    from actions.registry import ACTIONS

    merged: dict[str, dict[tuple[tuple[str, ...], str | None], list[str]]] = {}
    for plan in plans:
        for step in plan.steps:
            spec = ACTIONS.get(step.action)
            for grant in spec.param_grants(step.params) if spec and spec.param_grants else ():
                resources = merged.setdefault(step.action, {}).setdefault((grant.actions, grant.tag_condition_key), [])
                resources += [r for r in grant.resources if r not in resources]
    return {
        action: tuple(IamGrant(actions, tuple(resources), key) for (actions, key), resources in grants.items())
        for action, grants in merged.items()
    }


def _zone_arns(zones: Sequence[str]) -> list[str]:
    return [Fn.sub(f"arn:${{AWS::Partition}}:route53:::hostedzone/{zone}") for zone in zones]


def _add(grantee: iam.IGrantable, statement: iam.PolicyStatement) -> None:
    grantee.grant_principal.add_to_principal_policy(statement)


def allow(
    grantee: iam.IGrantable,
    actions: list[str],
    managed_tag: tuple[str, str],
    untagged: list[str] | None = None,
    *,
    hosted_zones: Sequence[str] = (),
) -> None:
    """Grant what an action declares: read calls on any resource (they support no resource-level
    permissions); mutating calls only on resources carrying the managed tag, but for those whose
    service has no tag condition (the action checks the tag itself): on the hosted zones named
    (ZONE_SCOPED), else on "*"."""
    untagged = sorted(set(untagged or []))
    scoped = [a for a in untagged if a in ZONE_SCOPED]
    if scoped and hosted_zones:
        _add(grantee, iam.PolicyStatement(actions=scoped, resources=_zone_arns(hosted_zones)))
    if unscoped := [a for a in untagged if a not in ZONE_SCOPED]:
        _add(grantee, iam.PolicyStatement(actions=unscoped, resources=["*"]))
    read = sorted(a for a in actions if a.split(":", 1)[1].startswith(_READ_PREFIXES) and a not in untagged)
    write = sorted(a for a in actions if a not in read and a not in untagged)
    if read:
        _add(grantee, iam.PolicyStatement(actions=read, resources=["*"]))
    if write:
        _add(
            grantee,
            iam.PolicyStatement(
                actions=write,
                resources=["*"],
                conditions={"StringEquals": {f"aws:ResourceTag/{managed_tag[0]}": managed_tag[1]}},
            ),
        )


def allow_grants(grantee: iam.IGrantable, grants: Iterable[IamGrant], managed_tag: tuple[str, str]) -> None:
    """Grant an action's IamGrants exactly as declared: their ARNs resolved in the grantee's stack
    (${AWS::AccountId} is that stack's account), tag-conditioned under the service's own key."""
    key, value = managed_tag
    for grant in grants:
        _add(
            grantee,
            iam.PolicyStatement(
                actions=list(grant.actions),
                resources=[Fn.sub(arn) if "${" in arn else arn for arn in grant.resources],
                conditions=(
                    {"StringEquals": {f"{grant.tag_condition_key}/{key}": value}} if grant.tag_condition_key else None
                ),
            ),
        )


def allow_declared(
    grantee: iam.IGrantable,
    actions: Iterable[str] = (),
    untagged: Iterable[str] = (),
    grants: Iterable[IamGrant] = (),
    *,
    managed_tag: tuple[str, str],
    hosted_zones: Sequence[str] = (),
) -> None:
    """Grant IAM as an action declares it (actions/specs.py): `actions` by the managed-tag rule
    (allow), `untagged` without it (on `hosted_zones` where ZONE_SCOPED), `grants` exactly as declared."""
    allow(grantee, sorted(set(actions)), managed_tag, sorted(set(untagged)), hosted_zones=hosted_zones)
    allow_grants(grantee, grants, managed_tag)


def allow_action(
    grantee: iam.IGrantable,
    spec: ActionSpec,
    managed_tag: tuple[str, str],
    hosted_zones: Sequence[str] = (),
    named: Sequence[IamGrant] = (),
) -> None:
    """Everything an action declares, for a role that acts and verifies on its behalf (a member
    account's): what its apply and rollback call, on what the plans name (`named`: plan_grants),
    and what Verify calls after it (a grant that one of the action's own already covers is not
    repeated)."""
    verification = spec.verification
    allow_declared(
        grantee,
        [*spec.iam_actions, *verification.iam_actions],
        spec.iam_actions_without_tag_condition,
        [*spec.iam_grants, *named, *(g for g in verification.iam_grants if not _covered(g, spec.iam_grants))],
        managed_tag=managed_tag,
        hosted_zones=hosted_zones,
    )


def _covered(grant: IamGrant, by: Iterable[IamGrant]) -> bool:
    return any(
        set(grant.actions) <= set(other.actions)
        and grant.resources == other.resources
        and grant.tag_condition_key == other.tag_condition_key
        for other in by
    )


def allow_verification(
    grantee: iam.IGrantable, reads: Iterable[str], specs: Iterable[ActionSpec], managed_tag: tuple[str, str]
) -> None:
    """Verify: its own reads, and what it calls to check what each action did (its Verification)."""
    verifications = [spec.verification for spec in specs]
    allow_declared(
        grantee,
        [*reads, *(a for v in verifications for a in v.iam_actions)],
        grants=[g for v in verifications for g in v.iam_grants],
        managed_tag=managed_tag,
    )


def allow_hand_backs(
    grantee: iam.IGrantable,
    reads: Iterable[str],
    specs: Iterable[ActionSpec],
    managed_tag: tuple[str, str],
    hosted_zones: Sequence[str] = (),
) -> None:
    """ReturnCapacity: the rollback of every action that declares a hand-back, and Verify's checks
    of that action when the hand-back waits for health; `reads`, for Verify's own checks it runs."""
    actions, untagged, grants = set(reads), set(), []
    for spec in (s for s in specs if s.hand_back is not None):
        actions |= {*spec.iam_actions, *(spec.verification.iam_actions if spec.hand_back.only_if_healthy else ())}
        untagged |= set(spec.iam_actions_without_tag_condition)
        grants += [*spec.iam_grants, *(spec.verification.iam_grants if spec.hand_back.only_if_healthy else ())]
    allow_declared(grantee, actions, untagged, grants, managed_tag=managed_tag, hosted_zones=hosted_zones)
