"""Idle cost: the AWS API calls the Lambda code makes in an hour while nothing is impaired.

The only thing that runs while nothing is impaired is a schedule: every schedule rule of the
template (the backstop sweep, at the rate the template gives it) fires as often as it would in an
hour of virtual time, against fleets of healthy groups. Two series: a fixed number of groups with
more instances per group (the calls must not grow), and a fixed group size with more groups (the
calls may grow at most linearly).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from bench import fleet as fleets
from bench.metering import Meter, function_memory, transitions
from bench.per_recovery import retry_once
from bench.speedups import faster_moto

# (groups, instances per group): 10 groups with 1, 10, 100 instances each; 10 instances per
# group in 1, 10, 100 groups. Fleets of 10, 100 and 1,000 instances in each series.
CONFIGURATIONS = [(10, 1), (10, 10), (10, 100), (1, 10), (100, 10)]
# Events only (sweep_interval_minutes 0): the largest fleet of the first series, no schedule.
EVENTS_ONLY = (10, 100)
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleError(ValueError):
    """A schedule expression the benchmark cannot turn into a period."""


def period_seconds(expression: str) -> int:
    """The period of an EventBridge `rate(...)` expression, in seconds."""
    match = _RATE.match(expression.strip())
    if not match:
        raise ScheduleError(f"only rate(...) schedules are simulated, not {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def run_configuration(
    template_path: Path, groups: int, per_group: int, minutes: int = 20, events_only: bool = False
) -> dict[str, Any]:
    """Fire the schedules for `minutes` of virtual time and scale the counts to an hour (each
    tick's calls are recorded, and the scaling is said to hold only when every tick made the
    same number of calls). `events_only`: no schedule fires, as in a deployment with
    `sweep_interval_minutes: 0` (which synthesizes none: tests/infra/test_detection.py); the
    clock still moves a minute a tick."""
    from recoveryctl.emulator.runtime import Emulator

    started = time.perf_counter()
    with faster_moto(), Emulator(template_path) as emulator:
        fleet = fleets.build(emulator, groups, per_group, prefix="idle")
        periods = {} if events_only else {s.rule: period_seconds(s.pattern) for s in emulator.schedules}
        if not periods and not events_only:
            raise ScheduleError("the template has no schedule rule")
        meter = Meter().install(emulator)
        # Every rule fires on its own period; the emulator fires all schedules at once, so the
        # shortest period drives the ticks (the template has one schedule today).
        period = min(periods.values(), default=60)
        ticks = max(1, int(minutes * 60 // period))
        per_tick = []
        for _ in range(ticks):
            before = meter.total_calls
            emulator.advance(period)
            if not events_only:
                emulator.fire_schedules()
            emulator.pump(timeout=300)
            per_tick.append(meter.total_calls - before)
        counted = transitions(emulator)
        executions = len(emulator.executions())
        detections = [e for e in emulator.events if e["detail-type"] == "Impairment Detected"]
        memory = function_memory(emulator)
    usage = meter.snapshot()
    cost = meter.cost(counted["billed"], memory)
    # What runs on a schedule when nothing is impaired: the backstop sweeps, and the readiness
    # check (issue 18: every plan's ability to act, O(plans x workloads), flat in the fleet).
    sweep_functions = {f for f in meter.calls_by_function if "Sweep" in f or "Readiness" in f}
    hours = ticks * period / 3600
    return {
        "events_only": events_only,
        "groups": groups,
        "instances_per_group": per_group,
        "instances": fleet.instances,
        "schedules": periods,
        "simulated_minutes": ticks * period / 60,
        "ticks": ticks,
        "ticks_per_hour": 3600 / period,
        "calls_per_tick": {"min": min(per_tick), "max": max(per_tick)},
        "calls_per_tick_constant": min(per_tick) == max(per_tick),
        "api_calls_per_hour": usage["api_calls"] / hours,
        "api_calls_per_hour_by_operation": {k: v / hours for k, v in usage["api_calls_by_operation"].items()},
        "api_calls_per_hour_by_function": {k: v / hours for k, v in usage["api_calls_by_function"].items()},
        "api_calls_per_group_hour": usage["api_calls"] / hours / groups,
        "only_sweeps": set(meter.calls_by_function) <= sweep_functions,
        "lambda_invocations_per_hour": usage["lambda_invocations"] / hours,
        "executions_started": executions,
        "impairments_detected": len(detections),
        "dollars_per_hour": cost["total"] / hours,
        "dollars_per_month": cost["total"] / hours * 730,
        "wall_seconds": time.perf_counter() - started,
    }


def run(template_path: Path, configurations: list[tuple[int, int]] | None = None, minutes: int = 20) -> dict[str, Any]:
    results = [
        retry_once(lambda g=g, p=p: run_configuration(template_path, g, p, minutes), {"groups": g, "per_group": p})
        for g, p in (configurations or CONFIGURATIONS)
    ]
    events_only = retry_once(
        lambda: run_configuration(template_path, *EVENTS_ONLY, minutes, events_only=True),
        {"groups": EVENTS_ONLY[0], "per_group": EVENTS_ONLY[1], "events_only": True},
    )
    return {"configurations": results, **assess(results), "events_only": events_only}


def assess(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The target: nothing but the sweeps; calls flat in instances per group at a fixed number of
    groups; at most linear in groups (calls per group-hour not growing with groups)."""
    by_groups: dict[int, list[dict[str, Any]]] = {}
    by_size: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_groups.setdefault(r["groups"], []).append(r)
        by_size.setdefault(r["instances_per_group"], []).append(r)
    flat_in_instances = all(
        len({r["api_calls_per_hour"] for r in series}) == 1 for series in by_groups.values() if len(series) > 1
    )
    linear_in_groups = all(
        _non_increasing([r["api_calls_per_group_hour"] for r in sorted(series, key=lambda r: r["groups"])])
        for series in by_size.values()
        if len(series) > 1
    )
    only_sweeps = all(r["only_sweeps"] for r in results)
    nothing_started = all(r["executions_started"] == 0 and r["impairments_detected"] == 0 for r in results)
    return {
        "calls_per_tick_constant": all(r["calls_per_tick_constant"] for r in results),
        "only_sweeps": only_sweeps,
        "flat_in_instances_per_group": flat_in_instances,
        "at_most_linear_in_groups": linear_in_groups,
        "nothing_detected_or_started": nothing_started,
        "meets_target": only_sweeps and flat_in_instances and linear_in_groups and nothing_started,
    }


def _non_increasing(values: list[float]) -> bool:
    # Pagination may add a page per 100 groups: allow 5 % above the smallest group count's figure.
    return all(b <= values[0] * 1.05 for b in values[1:])
