"""Starts the recovery of a detected impairment: the target of the bus rule.

The execution is named after the impairment id, so a user finds the execution of an impairment
by its id, and Step Functions itself refuses a second execution of the same impairment (a
repeated signal, an at-least-once redelivery). Before that, signals about a resource that an
open impairment is already about (within the correlation window) are linked to it instead of
starting another recovery; MTTD then counts from the earliest. "Impairment Cleared" events are
recorded.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import ValidationError

from core import aws
from core import settings as settings_module
from core.contract import CLEARED, DETECTED, ImpairmentCleared, ImpairmentDetected
from core.entry import lambda_entry
from core.errors import classify_client_error
from core.observability import logger, metrics
from core.store import RecoveryStore


@lambda_entry
def handler(event: Any, context: Any, sfn: Any = None, store: Any = None) -> dict[str, Any]:
    try:
        envelope = EventBridgeModel.model_validate(event)
        if envelope.detail_type == DETECTED:
            impairment: ImpairmentDetected | ImpairmentCleared = ImpairmentDetected.model_validate(envelope.detail)
        elif envelope.detail_type == CLEARED:
            impairment = ImpairmentCleared.model_validate(envelope.detail)
        else:
            raise ValueError(f"unexpected detail-type {envelope.detail_type!r}")
    except (ValidationError, ValueError) as exc:
        errors = exc.errors(include_url=False, include_input=False) if isinstance(exc, ValidationError) else str(exc)
        logger.error(
            "rejected an event that is not a valid impairment event",
            errors=errors,
            event_id=event.get("id") if isinstance(event, dict) else None,
        )
        metrics.add_metric(name="ImpairmentEventsRejected", unit="Count", value=1)
        return {"status": "rejected"}

    settings = settings_module.load("state_machine_arn", "table_name")
    logger.set_correlation_id(impairment.impairment_id)
    if isinstance(impairment, ImpairmentCleared):
        store = store or RecoveryStore(settings.table_name)
        if store.get_impairment(impairment.impairment_id) is None:
            logger.info("cleared an impairment with no recovery record")
            return {"status": "cleared", "recorded": False}
        store.update_impairment(impairment.impairment_id, cleared_at=impairment.cleared_at.isoformat())
        return {"status": "cleared", "recorded": True}

    store = store or RecoveryStore(settings.table_name)
    record = impairment.model_dump(mode="json")
    store.put_impairment(record, status="detected", mttd_seconds=impairment.mttd_seconds)
    keys = [r.key for r in impairment.affected_resources]
    primary = store.correlate(
        impairment.impairment_id, keys, settings.correlation_window_seconds, impairment.signal.signal_time
    )
    if primary is not None:
        # Another open impairment is about the same resource: one fault, one recovery.
        store.link_signal(
            primary,
            {
                "impairment_id": impairment.impairment_id,
                "impairment_type": impairment.impairment_type.value,
                "severity": impairment.severity.value,
                "signal": record["signal"],
                "detected_at": record["detected_at"],
                "resources": keys,
            },
        )
        store.update_impairment(impairment.impairment_id, status="correlated", outcome="correlated", linked_to=primary)
        metrics.add_metric(name="SignalsCorrelated", unit="Count", value=1)
        logger.info("correlated with an open impairment; no new recovery", primary=primary)
        return {"status": "correlated", "impairment_id": primary}

    client = sfn or aws.client("stepfunctions")
    try:
        response = client.start_execution(
            stateMachineArn=settings.state_machine_arn,
            name=impairment.impairment_id,
            input=json.dumps({"impairment": impairment.model_dump(mode="json")}),
        )
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code == "ExecutionAlreadyExists":
            logger.info("this impairment already has an execution; not starting another")
            metrics.add_metric(name="DuplicateImpairments", unit="Count", value=1)
            return {"status": "duplicate", "impairment_id": impairment.impairment_id}
        raise classify_client_error(exc, "states:StartExecution") from exc
    metrics.add_metric(name="RecoveriesStarted", unit="Count", value=1)
    logger.info("recovery started", execution_arn=response["executionArn"])
    return {"status": "started", "execution_arn": response["executionArn"]}
