"""What every detector's handler does the same way: read its settings, parse the EventBridge
envelope, reject bad input and ignore irrelevant input (a structured log line and a metric,
never an exception: an event that can never be processed must not be retried forever), and
publish what it found.

The envelope is core/envelope.py's (why not Powertools' model: it says).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

from core import settings as settings_module
from core.contract import CLEARED, DETECTED, ImpairmentCleared, ImpairmentDetected
from core.envelope import Envelope
from core.errors import InvalidInput
from core.model import Model, ValidationError
from core.observability import emit, logger, metrics
from core.settings import Settings
from detectors.resolve import Configured


class DetectorSettings(Settings, kw_only=True, frozen=True):
    """The detectors' environment: the common settings and what only detectors read."""

    # JSON object: Auto Scaling group name -> the workload the configuration declares for it
    workload_groups: str = field(default="{}", name="WORKLOAD_GROUPS")
    # JSON object: workload -> the resource keys (detectors.resolve.resource_key) it declares
    workload_resources: str = field(default="{}", name="WORKLOAD_RESOURCES")
    sweep_window_seconds: Annotated[int, Meta(ge=60, le=86400)] = field(default=300, name="SWEEP_WINDOW_SECONDS")
    # JSON list: each declared EKS node group (workload, cluster, nodegroup, account_id)
    eks_nodegroups: str = field(default="[]", name="EKS_NODEGROUPS")

    def configured_workloads(self) -> dict[str, str]:
        try:
            value = json.loads(self.workload_groups)
        except ValueError as exc:
            raise InvalidInput(f"WORKLOAD_GROUPS is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise InvalidInput("WORKLOAD_GROUPS is not a JSON object")
        return {str(k): str(v) for k, v in value.items()}

    def configured(self) -> Configured:
        """The configured workloads and the resources they declare (the alarm detector's)."""
        try:
            value = json.loads(self.workload_resources)
        except ValueError as exc:
            raise InvalidInput(f"WORKLOAD_RESOURCES is not JSON: {exc}") from exc
        if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
            raise InvalidInput("WORKLOAD_RESOURCES is not a JSON object of lists")
        return Configured.from_declared({str(k): [str(r) for r in v] for k, v in value.items()})

    @property
    def managed_tag(self) -> tuple[str, str]:
        return (self.managed_tag_key, self.managed_tag_value)


def load_settings(*required: str) -> DetectorSettings:
    """The detector's environment; a missing required setting is a deployment error, said plainly."""
    return settings_module.load(*required, model=DetectorSettings)


class ScheduledEvent(Envelope, kw_only=True):
    """What an EventBridge schedule delivers (the sweeps' and the region probe's tick)."""

    source: Literal["aws.events"]  # type: ignore[assignment]
    detail_type: Literal["Scheduled Event"] = field(name="detail-type")  # type: ignore[assignment]


class Findings(Struct, frozen=True):
    """What a classification found: events to publish, or the reason there are none."""

    detected: list[ImpairmentDetected]
    cleared: list[ImpairmentCleared]
    reason: str

    @classmethod
    def nothing(cls, reason: str) -> Findings:
        return cls([], [], reason)


def event_id(event: Any) -> str | None:
    return event.get("id") if isinstance(event, dict) else None


def reject(event: Any, exc: ValidationError | ValueError, what: str) -> dict[str, Any]:
    """Bad input: logged as a structured error and counted; never raised (a retry cannot fix it)."""
    errors = exc.errors(include_url=False, include_input=False) if isinstance(exc, ValidationError) else str(exc)
    logger.error(f"rejected an event that is not a valid {what}", errors=errors, event_id=event_id(event))
    metrics.add_metric(name="SignalsRejected", unit="Count", value=1)
    return {"status": "rejected", "reason": f"invalid {what}"}


def parse(
    event: Any, model: type[Model], source: str, detail_types: tuple[str, ...], what: str
) -> tuple[Any, str | None, dict[str, Any] | None]:
    """The event as `model` and the member account it comes from (None: this account), or
    (None, None, the rejection or refusal): input that is not one is logged and counted here, an
    event of an account that is neither this one nor a member refused; never raised."""
    parsed, stop = _validate(event, model, source, detail_types, what)
    if stop is not None:
        return None, None, stop
    account, refused = source_account(parsed.account)  # type: ignore[attr-defined]
    if refused is not None:
        return None, None, refused
    return parsed, account, None


def parse_schedule(event: Any) -> tuple[ScheduledEvent | None, dict[str, Any] | None]:
    """A schedule's tick, or (None, its rejection): as parse(), but a tick is always this
    account's own (no member account check, no look-up of this account)."""
    return _validate(event, ScheduledEvent, "aws.events", ("Scheduled Event",), "scheduled event")


def _validate(
    event: Any, model: type[Model], source: str, detail_types: tuple[str, ...], what: str
) -> tuple[Any, dict[str, Any] | None]:
    try:
        parsed = model.model_validate(event)
        if parsed.source != source or parsed.detail_type not in detail_types:  # type: ignore[attr-defined]
            raise ValueError(f"not {what}: {parsed.source} / {parsed.detail_type}")  # type: ignore[attr-defined]
    except (ValidationError, ValueError) as exc:
        return None, reject(event, exc, what)
    return parsed, None


def ignore(reason: str, **context: Any) -> dict[str, Any]:
    """Irrelevant input (not ours, not an impairment): logged and counted, nothing emitted."""
    logger.info("no impairment", reason=reason, **context)
    metrics.add_metric(name="SignalsIgnored", unit="Count", value=1)
    return {"status": "ignored", "reason": reason}


def source_account(account: str) -> tuple[str | None, dict[str, Any] | None]:
    """The member account a signal comes from (None: this deployment's own account), or the
    refusal of an event from an account that is neither (logged and counted, nothing emitted).
    Without member accounts configured every event is this account's, as before."""
    from core import aws

    members = aws.member_accounts()
    if members is None:
        return None, None
    if account in members:
        return account, None
    if account and account == aws.own_account():
        return None, None
    logger.warning("refused an event from an account that is neither this one nor a member", account=account)
    metrics.add_metric(name="SignalsRefused", unit="Count", value=1)
    return None, {"status": "refused", "reason": f"account {account or '(none)'} is not a member account"}


def in_account(impairment: ImpairmentDetected, account_id: str | None) -> ImpairmentDetected:
    """The impairment, marked with the member account it is in (None: this account)."""
    return impairment.model_copy(update={"account_id": account_id}) if account_id else impairment


def publish(findings: Findings, publisher: Any, bus_name: str, account_id: str | None = None) -> dict[str, Any]:
    """Put what was found on the recovery bus (a refusal raises, so Lambda retries it)."""
    if not findings.detected and not findings.cleared:
        return ignore(findings.reason)
    if account_id:
        findings = Findings([in_account(i, account_id) for i in findings.detected], findings.cleared, findings.reason)
    from core.publisher import EventPublisher

    publisher = publisher or EventPublisher(bus_name)
    if findings.detected:
        publisher.publish(DETECTED, findings.detected)
    if findings.cleared:
        publisher.publish(CLEARED, findings.cleared)
    ids = [i.impairment_id for i in findings.detected] + [c.impairment_id for c in findings.cleared]
    if len(ids) == 1:
        logger.set_correlation_id(ids[0])
    for impairment in findings.detected:
        count_detected(impairment)
        logger.info(
            "impairment detected",
            impairment_id=impairment.impairment_id,
            impairment=impairment.model_dump(mode="json"),
        )
    for cleared in findings.cleared:
        metrics.add_metric(name="ImpairmentsCleared", unit="Count", value=1)
        logger.info("impairment cleared", impairment_id=cleared.impairment_id, workload=cleared.workload)
    return {
        "status": "published",
        "detected": [i.impairment_id for i in findings.detected],
        "cleared": [c.impairment_id for c in findings.cleared],
        "reason": findings.reason,
    }


def count_detected(impairment: ImpairmentDetected) -> None:
    """The detection metrics of one impairment: counted in total and by type and severity, with its
    MTTD. A practice drill is counted apart (DrillsDetected, DrillMTTD), so drills never skew the
    numbers of real impairments."""
    if impairment.drill:
        metrics.add_metric(name="DrillsDetected", unit="Count", value=1)
        metrics.add_metric(name="DrillMTTD", unit="Seconds", value=impairment.mttd_seconds)
        return
    metrics.add_metric(name="ImpairmentsDetected", unit="Count", value=1)
    metrics.add_metric(name="MTTD", unit="Seconds", value=impairment.mttd_seconds)
    emit(
        "ImpairmentsDetected",
        "Count",
        1,
        impairment_type=impairment.impairment_type.value,
        severity=impairment.severity.value,
    )
