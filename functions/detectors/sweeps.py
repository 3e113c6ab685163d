"""Scheduled backstop sweeps: what the event-driven detectors can miss, found by looking.

Every minute, in this account and every member account: Auto Scaling groups with unhealthy
instances still in service, and target groups with unhealthy targets. The calls grow with
accounts, groups and target groups, never with instances, and an impairment keeps one id per
time window so that seeing it every minute starts one recovery.

Design: docs/detectors.md#health-sweep
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from msgspec import Struct, field

from core import aws, clock
from core.contract import AffectedResource, ImpairmentDetected, ImpairmentType, Severity, Signal, make_impairment_id
from core.errors import PermanentError, RecoveryError
from core.observability import logger, metrics
from core.reads import target_health
from detectors.common import Findings, load_settings, parse_schedule, publish
from detectors.resolve import ProtectedGroup, out_of_service_on_purpose

ASG_SOURCE = "aws.autoscaling"
ELB_SOURCE = "aws.elasticloadbalancing"
# A member account is not started with less than this left of the invocation (its look-ups, with
# botocore's retries, can take that long): what was found is published, the rest waits a minute.
SWEEP_TIME_MARGIN_MS = 10_000


class SweepFailed(RecoveryError):
    """No account could be swept: the invocation fails, so the detector's errors alarm fires."""


# --- what the sweep needs to know about the world ----------------------------------------------


class Inventory(Protocol):
    def protected_groups(self) -> list[ProtectedGroup]: ...

    def target_health(self, target_group_arn: str) -> list[dict[str, Any]]: ...


# --- classification (pure but for the inventory) ----------------------------------------------


def window_start(at: datetime, window_seconds: int) -> datetime:
    """The start of the window of `window_seconds` (aligned on the epoch) that contains `at`."""
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, UTC)


def _severity(impaired: int, fleet: int) -> tuple[Severity, bool]:
    """Critical, and failing open, when more than half of the fleet is impaired at once."""
    fail_open = impaired * 2 > fleet
    return (Severity.CRITICAL if fail_open else Severity.HIGH), fail_open


def _fail_open_note(fail_open: bool) -> str:
    # The detector only says what it sees; CheckGuardrails decides (a small group is recovered).
    return " Most of the fleet at once: likely a shared cause (fail open decides per group)." if fail_open else ""


def _in_account(signal_key: str, account_id: str | None) -> str:
    """What an id is derived from: a member's account leads it, so that same-named groups (or an
    ARN-less group) in two accounts never share an id; this account's ids stay as they were."""
    return f"{account_id}/{signal_key}" if account_id else signal_key


def unhealthy_instances(
    group: ProtectedGroup, window: datetime, now: datetime, account_id: str | None = None
) -> ImpairmentDetected | None:
    """instance_failure of the group's in-service instances that Auto Scaling reports Unhealthy
    (account_id: the member account the group is in; None: this account)."""
    fleet = [i for i in group.instances if not out_of_service_on_purpose(i.get("LifecycleState"))]
    unhealthy = sorted(str(i["InstanceId"]) for i in fleet if i.get("HealthStatus") == "Unhealthy")
    if not unhealthy:
        return None
    severity, fail_open = _severity(len(unhealthy), len(fleet))
    return ImpairmentDetected(
        impairment_id=make_impairment_id(
            group.workload, ASG_SOURCE, _in_account(f"{group.arn}#health", account_id), window
        ),
        impairment_type=ImpairmentType.INSTANCE_FAILURE,
        severity=severity,
        workload=group.workload,
        affected_resources=[AffectedResource(resource_type="ec2:instance", resource_id=i) for i in unhealthy[:100]],
        signal=Signal(source=ASG_SOURCE, id=group.arn, signal_time=window, name=f"{group.name} health sweep"),
        detected_at=max(now, window),
        description=(
            f"{len(unhealthy)} of {len(fleet)} in-service instances of {group.name} are Unhealthy."
            + _fail_open_note(fail_open)
        ),
        metrics={
            "unhealthy_instances": float(len(unhealthy)),
            "instances": float(len(fleet)),
            "fail_open": 1.0 if fail_open else 0.0,
        },
        scope=dict(group.owner.scope),
        account_id=account_id,
    )


def unhealthy_targets(
    group: ProtectedGroup,
    target_group_arn: str,
    health: list[dict[str, Any]],
    shared: bool,
    window: datetime,
    now: datetime,
    account_id: str | None = None,
) -> ImpairmentDetected | None:
    """service_degradation of a target group of the group. A target group shared by several
    protected groups counts, for each, only the targets that are that group's instances."""
    members = {str(i["InstanceId"]) for i in group.instances}
    fleet = [
        h
        for h in health
        if h.get("TargetHealth", {}).get("State") != "draining"  # leaving on purpose
        and (not shared or str(h.get("Target", {}).get("Id")) in members)
    ]
    unhealthy = sorted(str(h["Target"]["Id"]) for h in fleet if target_health.impaired(h.get("TargetHealth", {})))
    if not unhealthy:
        return None
    severity, fail_open = _severity(len(unhealthy), len(fleet))
    return ImpairmentDetected(
        impairment_id=make_impairment_id(
            group.workload, ELB_SOURCE, _in_account(f"{target_group_arn}#{group.name}", account_id), window
        ),
        impairment_type=ImpairmentType.SERVICE_DEGRADATION,
        severity=severity,
        workload=group.workload,
        affected_resources=[
            AffectedResource(
                resource_type="ec2:instance" if t.startswith("i-") else "elasticloadbalancing:target", resource_id=t
            )
            for t in unhealthy[:100]
        ],
        signal=Signal(
            source=ELB_SOURCE,
            id=target_group_arn,
            signal_time=window,
            name=f"{target_group_arn.rsplit(':', 1)[-1]} target health sweep",
        ),
        detected_at=max(now, window),
        description=(
            f"{len(unhealthy)} of {len(fleet)} targets of {target_group_arn} ({group.name}) are unhealthy."
            + _fail_open_note(fail_open)
        ),
        metrics={
            "unhealthy_targets": float(len(unhealthy)),
            "targets": float(len(fleet)),
            "unhealthy_ratio": round(len(unhealthy) / len(fleet), 4),
            "fail_open": 1.0 if fail_open else 0.0,
        },
        scope={**group.owner.scope, "auto_scaling_group": group.name, "target_group_arn": target_group_arn},
        account_id=account_id,
    )


def sweep(
    inventory: Inventory, swept_at: datetime, window_seconds: int, now: datetime, account_id: str | None = None
) -> tuple[Findings, dict[str, Any]]:
    """Both sweeps over every protected group of one account (the inventory's; account_id names it
    when it is a member); (findings, a summary of what was looked at)."""
    window = window_start(swept_at, window_seconds)
    groups = inventory.protected_groups()
    detected: list[ImpairmentDetected] = []
    for group in groups:
        impairment = unhealthy_instances(group, window, now, account_id)
        if impairment is not None:
            detected.append(impairment)

    users: dict[str, list[ProtectedGroup]] = {}
    for group in groups:
        for arn in dict.fromkeys(group.target_group_arns):
            users.setdefault(arn, []).append(group)
    failed: list[str] = []
    for arn, its_groups in users.items():
        try:
            health = inventory.target_health(arn)
        except PermanentError as exc:  # e.g. deleted but still attached: the other groups still count
            logger.error(
                "target group not swept", target_group_arn=arn, account=account_id, error=str(exc), **exc.details
            )
            metrics.add_metric(name="SweepErrors", unit="Count", value=1)
            failed.append(arn)
            continue
        for group in its_groups:
            impairment = unhealthy_targets(group, arn, health, len(its_groups) > 1, window, now, account_id)
            if impairment is not None:
                detected.append(impairment)

    summary = {
        "window_start": window.isoformat(),
        "groups": len(groups),
        "target_groups": len(users),
        "target_groups_failed": failed,
    }
    reason = f"swept {len(groups)} groups and {len(users)} target groups"
    return Findings(detected, [], reason if detected else f"{reason}: all healthy"), summary


# --- the handler -----------------------------------------------------------------------------


def accounts_in_order(members: list[str], swept_at: datetime) -> list[str | None]:
    """This account (None) first, then the members, starting at one that turns every minute."""
    if not members:
        return [None]
    start = int(swept_at.timestamp()) // 60 % len(members)
    return [None, *members[start:], *members[:start]]


def _remaining_ms(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return float(remaining()) if callable(remaining) else float("inf")


def _account_failed(account: str | None, reason: str, **details: Any) -> dict[str, Any]:
    """One account that was not swept: logged with the account, counted, and said in the summary."""
    label = account or "central"
    logger.error("account not swept", account=label, error=reason, **details)
    metrics.add_metric(name="SweepAccountFailed", unit="Count", value=1)
    return {"account": label, "error": reason}


class Sweeping(Struct):
    """One invocation's sweep of its accounts: what was swept, what could not be, what was published."""

    publisher: Any
    bus_name: str
    window_seconds: int
    swept: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    detected: list[str] = field(default_factory=list)

    def account(self, account: str | None, inventory_of: Callable[[str | None], Inventory], swept_at: datetime) -> None:
        try:
            findings, summary = sweep(inventory_of(account), swept_at, self.window_seconds, clock.utc_now(), account)
        # Whatever fails in one account (its role, its throttling, its data) must not stop the
        # sweep of the others; if every account fails, SweepFailed (result) still fails the invocation.
        except Exception as exc:  # noqa: BLE001
            details = exc.details if isinstance(exc, RecoveryError) else {"code": type(exc).__name__}
            self.failed.append(_account_failed(account, str(exc), **details))
            self.errors.append(exc)
            return
        self.swept.append(summary)
        if findings.detected:  # published now: a later account's failure or timeout cannot lose it
            self.detected.extend(publish(findings, self.publisher, self.bus_name)["detected"])

    def result(self, swept_at: datetime) -> dict[str, Any]:
        """The invocation's summary (logged, and SweptGroups counted); SweepFailed when no account
        could be swept."""
        summary = {
            "window_start": window_start(swept_at, self.window_seconds).isoformat(),
            "accounts": len(self.swept),
            "accounts_failed": self.failed,
            "groups": sum(s["groups"] for s in self.swept),
            "target_groups": sum(s["target_groups"] for s in self.swept),
            "target_groups_failed": [arn for s in self.swept for arn in s["target_groups_failed"]],
        }
        metrics.add_metric(name="SweptGroups", unit="Count", value=summary["groups"])
        logger.info("sweep", **summary, impairments=len(self.detected))
        if not self.swept:
            said = "; ".join(f"{f['account']}: {f['error']}" for f in self.failed)
            raise SweepFailed(f"no account could be swept: {said}", accounts_failed=self.failed) from (
                self.errors[0] if self.errors else None
            )
        reason = (
            f"swept {summary['accounts']} account(s), {summary['groups']} groups"
            f" and {summary['target_groups']} target groups"
        )
        if not self.detected:
            return {"status": "healthy", "reason": f"{reason}: all healthy", **summary}
        return {"status": "published", "detected": self.detected, "reason": reason, **summary}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(
    event: Any,
    context: Any,
    inventory: Inventory | None = None,
    publisher: Any = None,
    member_inventory: Callable[[str], Inventory] | None = None,
) -> dict[str, Any]:
    """Entry point of the schedule: sweeps this account, then every member account. Input other
    than a scheduled event is logged and counted, never raised. An account that cannot be swept
    is logged, counted and skipped; when none could be, SweepFailed is raised (the asynchronous
    retry runs the sweep again, and gives the same ids within the window). `inventory` (this
    account's) and `member_inventory` (a member's, by account) are for tests."""
    aws.know_identity(getattr(context, "invoked_function_arn", None))
    parsed, stop = parse_schedule(event)
    if stop is not None:
        return stop

    settings = load_settings("event_bus_name")

    def inventory_of(account: str | None) -> Inventory:
        if account is None and inventory is not None:
            return inventory
        if account is not None and member_inventory is not None:
            return member_inventory(account)
        from detectors.resolve import AwsResolver

        return AwsResolver(settings.managed_tag, settings.configured_workloads(), account=account)

    sweeping = Sweeping(publisher, settings.event_bus_name, settings.sweep_window_seconds)
    for account in accounts_in_order(aws.member_accounts() or [], parsed.time):
        if account is not None and _remaining_ms(context) < SWEEP_TIME_MARGIN_MS:
            sweeping.failed.append(_account_failed(account, "not started: too little time left in this invocation"))
            continue
        sweeping.account(account, inventory_of, parsed.time)
    return sweeping.result(parsed.time)
