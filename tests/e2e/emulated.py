"""Small stacks for testing the emulator itself: a template built in the test (functions whose
handlers are below, rules, state machines), and the handlers, which record what they saw."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import boto3

from core import clock
from core.entry import lambda_entry
from core.observability import logger, metrics

# What the handlers saw, in the order they saw it (only one runs at a time: no lock needed).
SEEN: list[dict[str, Any]] = []


def probe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reads its function's PROBE_VALUE around each of `calls` AWS calls (each a point where the
    emulator may switch to another handler), and sleeps `sleep` seconds if asked."""
    asked = event.get("detail", event)
    sqs = boto3.client("sqs")
    for call in range(int(asked.get("calls", 3))):
        SEEN.append(
            {
                "function": context.function_name,
                "call": call,
                "value": os.environ.get("PROBE_VALUE"),
                "getenv": os.getenv("PROBE_VALUE"),
                "listed": dict(os.environ).get("PROBE_VALUE"),
                "region": os.environ.get("AWS_REGION"),
                "at": clock.utc_now().isoformat(),
            }
        )
        sqs.list_queues()
    if asked.get("sleep"):
        time.sleep(float(asked["sleep"]))
    return {"function": context.function_name, "value": os.environ.get("PROBE_VALUE")}


@lambda_entry
def measured(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Adds its own metric value and log key, with AWS calls in between (where others run)."""
    value = event["detail"]["value"]
    metrics.add_metric(name="ProbeValue", unit="Count", value=float(value))
    logger.info("probing", probe=value)
    sqs = boto3.client("sqs")
    for _ in range(3):
        sqs.list_queues()
    logger.info("probed", probe=value)
    return {"value": value}


def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Records the event it was given (a rule's target)."""
    SEEN.append({"function": context.function_name, "event": event})
    return {"recorded": event.get("detail-type")}


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("the task failed on purpose")


def function(name: str, handler: str, **environment: str) -> dict[str, Any]:
    """An AWS::Lambda::Function resource running one of this module's handlers."""
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": name,
            "Handler": f"tests.e2e.emulated.{handler}",
            "Runtime": "python3.13",
            "Environment": {"Variables": environment},
        },
    }


def rule(name: str, pattern: dict[str, Any], target_function: str, account: str = "123456789012") -> dict[str, Any]:
    """An AWS::Events::Rule on the default bus sending what matches to a function."""
    arn = f"arn:aws:lambda:us-east-1:{account}:function:{target_function}"
    return {
        "Type": "AWS::Events::Rule",
        "Properties": {"Name": name, "EventPattern": pattern, "Targets": [{"Arn": arn, "Id": "target"}]},
    }


def state_machine(name: str, definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "StateMachineName": name,
            "DefinitionString": json.dumps(definition),
            "RoleArn": "arn:aws:iam::123456789012:role/emulated",
        },
    }


def template(folder: Path, resources: dict[str, dict[str, Any]]) -> Path:
    """A template file with these resources."""
    path = folder / "Emulated.template.json"
    path.write_text(json.dumps({"Resources": resources}))
    return path


def event(detail_type: str, **detail: Any) -> dict[str, Any]:
    """A custom event on the default bus, as the drill's signals put them."""
    return {
        "version": "0",
        "id": f"event-{detail_type}",
        "detail-type": detail_type,
        "source": "emulated.test",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }
