"""`recoveryctl drill --deployed --alarm NAME`: drill a deployed stack the standard way for
alarm-driven automation. SetAlarmState puts the alarm into ALARM (CloudWatch puts it back to its
real state at its next evaluation), the stack's alarm detector sees the state change like any
other, and the recovery's execution is followed to its end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from recoveryctl.backends import BackendError, DeployedBackend, explain

# Clocks differ between this machine and AWS: executions started this long before the alarm was
# set still count as candidates (their input must name the alarm anyway).
CLOCK_SKEW = timedelta(seconds=30)
_sleep = time.sleep  # between polls; tests replace it to play the part of the deployed detector


class DrillTimeout(RuntimeError):
    """Nothing happened in time; the message says what to look at."""


def run(
    backend: DeployedBackend,
    alarm: str,
    timeout: float,
    poll_seconds: float,
    progress: Callable[[str], None],
    actor: str = "recoveryctl",
    sleep: Callable[[float], None] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Set the alarm, find the execution it starts, follow it; returns what happened."""
    sleep = sleep or _sleep
    cloudwatch = backend.client("cloudwatch")
    found = backend.call(
        "cloudwatch:DescribeAlarms",
        cloudwatch.describe_alarms,
        AlarmNames=[alarm],
        AlarmTypes=["MetricAlarm", "CompositeAlarm"],
    )
    if not (found.get("MetricAlarms") or found.get("CompositeAlarms")):
        prefix = alarm.split("-")[0]
        raise BackendError(
            f"no alarm named {alarm} in {backend.region}: the stack's alarms are named <workload>-<kind> "
            f"(for example web-api-status-check); list them with "
            f"`aws cloudwatch describe-alarms --alarm-name-prefix {prefix}`"
        )
    set_at = datetime.now(UTC)
    backend.call(
        "cloudwatch:SetAlarmState",
        cloudwatch.set_alarm_state,
        AlarmName=alarm,
        StateValue="ALARM",
        StateReason=f"recoveryctl drill by {actor} at {set_at.isoformat()}",
    )
    progress(f"alarm {alarm} set to ALARM at {set_at.strftime('%H:%M:%S')} UTC; waiting for the recovery to start")
    deadline = monotonic() + timeout
    started = monotonic()
    execution = _wait_for_execution(backend, alarm, set_at, deadline, poll_seconds, progress, sleep, monotonic, started)
    progress(f"execution {execution['name']} started")
    states, final = _follow(backend, execution, deadline, poll_seconds, progress, sleep, monotonic)
    record = backend.impairment(execution["name"]) or {}
    outcome = record.get("outcome") or ("recovered" if final["status"] == "SUCCEEDED" else final["status"].lower())
    return {
        "alarm": alarm,
        "alarm_set_at": set_at.isoformat(),
        "impairment_id": execution["name"],
        "execution": {
            "name": execution["name"],
            "arn": execution["executionArn"],
            "status": final["status"],
            "error": final.get("error"),
            "cause": final.get("cause"),
        },
        "states": states,
        "outcome": outcome,
        "reason": record.get("reason"),
        "mttd_seconds": record.get("mttd_seconds"),
        "mttr_seconds": record.get("mttr_seconds"),
    }


def _wait_for_execution(
    backend: DeployedBackend,
    alarm: str,
    set_at: datetime,
    deadline: float,
    poll_seconds: float,
    progress: Callable[[str], None],
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
    started: float,
) -> dict[str, Any]:
    sfn = backend.client("stepfunctions")
    checked: set[str] = set()
    while True:
        for summary in _executions_since(backend, set_at - CLOCK_SKEW):
            if summary["executionArn"] in checked:
                continue
            checked.add(summary["executionArn"])
            described = backend.call(
                "states:DescribeExecution", sfn.describe_execution, executionArn=summary["executionArn"]
            )
            if _about_alarm(described.get("input"), alarm):
                return described
        if monotonic() >= deadline:
            raise DrillTimeout(
                f"no recovery started within {monotonic() - started:.0f} s of setting {alarm}: check that the alarm "
                "is onboarded (recovery:* tags, or created by the stack), the alarm detector's logs and the "
                "dead-letter queue; a signal about a resource whose impairment is still open is linked to it "
                "instead (see `recoveryctl status --deployed`)"
            )
        progress(f"  waiting for detection ... {monotonic() - started:.0f} s")
        sleep(poll_seconds)


def _executions_since(backend: DeployedBackend, since: datetime) -> list[dict[str, Any]]:
    sfn = backend.client("stepfunctions")
    found = []
    try:
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=backend.state_machine_arn):
            for summary in page.get("executions", []):  # newest first
                if summary["startDate"] < since:
                    return found
                found.append(summary)
    except Exception as exc:
        raise explain("states:ListExecutions", exc) from exc
    return found


def _about_alarm(raw_input: str | None, alarm: str) -> bool:
    """Whether an execution's input is the impairment raised by this alarm's signal."""
    try:
        signal = (json.loads(raw_input or "{}").get("impairment") or {}).get("signal") or {}
    except (ValueError, AttributeError):
        return False
    return alarm in (signal.get("name"), str(signal.get("id") or "").rsplit(":alarm:", 1)[-1])


def _follow(
    backend: DeployedBackend,
    execution: dict[str, Any],
    deadline: float,
    poll_seconds: float,
    progress: Callable[[str], None],
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
) -> tuple[list[str], dict[str, Any]]:
    """Print each state as the execution enters it, until it ends."""
    sfn = backend.client("stepfunctions")
    states: list[str] = []
    seen = 0
    start = execution["startDate"]
    while True:
        described = backend.call(
            "states:DescribeExecution", sfn.describe_execution, executionArn=execution["executionArn"]
        )
        history = backend.history({"executionArn": execution["executionArn"]})
        for event in history[seen:]:
            if event.get("type", "").endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                states.append(name)
                at = datetime.fromisoformat(str(event["timestamp"]))
                progress(f"  +{(at - start).total_seconds():6.1f} s  {name}")
        seen = len(history)
        if described["status"] != "RUNNING":
            return states, described
        if monotonic() >= deadline:
            raise DrillTimeout(
                f"execution {execution['name']} is still running (last state {states[-1] if states else '-'}): "
                f"follow it with `recoveryctl show {execution['name']} --deployed`, or wait longer with --timeout"
            )
        sleep(poll_seconds)
