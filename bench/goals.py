"""Issue 16's goals beside the figures of one `make bench` run, written into docs/performance.md
between GOALS_START and GOALS_END (the rest of the page is prose, kept by hand). Only a run of
every part writes it: the table is of one run, never a mix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GOALS_START = "<!-- bench:goals:start (written by make bench: bench/goals.py) -->"
GOALS_END = "<!-- bench:goals:end -->"
HOT_WRITES_PER_SECOND = 5  # "no item written more than a few times per second"


def _met(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "**not met**")


def _cold(cold: dict[str, Any]) -> list[tuple[str, str, str]]:
    handlers = sorted(cold["handlers"], key=lambda h: h["ratio_to_boto3"])
    best, worst = handlers[0], handlers[-1]
    floor = cold.get("floor") or {}
    figure = (
        f"{cold['handlers_meeting_target']} of {len(handlers)} handlers; {best['ratio_to_boto3']}x (`{best['module']}`)"
        f" to {worst['ratio_to_boto3']}x (`{worst['module']}`), `import boto3` {cold['boto3_median_ms']} ms;"
        f" the stack's floor (boto3, Powertools, one msgspec model) {floor.get('ratio_to_boto3')}x;"
        f" worst handler {worst.get('ratio_to_floor')}x the floor. {cold['python']}"
    )
    return [
        (
            f"1. Cold start <= {cold['target_max_ratio']}x bare boto3, every handler",
            figure,
            _met(cold["all_meet_target"]),
        )
    ]


def _calls(per: dict[str, Any]) -> list[tuple[str, str, str]]:
    single = [s for s in per["scenarios"] if s["single_action_recovery"]]
    if not single:
        return [("2. Single-action recovery <= 20 API calls", "no single-action scenario ran", "n/a")]
    target = per["targets"]["max_api_calls_single_action"]
    cells = ", ".join(
        f"`{s['scenario']}` {s['api_calls_warm']}"
        + (f" ({s['api_calls']} cold)" if s.get("api_calls_assume_role") else "")
        + f"/{s['transitions']}t"
        for s in sorted(single, key=lambda s: (s["api_calls_warm"], s["scenario"]))
    )
    calls_met = all(s["api_calls_warm"] <= target for s in single)
    transitions = max(s["transitions"] for s in single)
    return [
        (
            f"2. Single-action recovery from one signal <= {target} API calls, cross-account included"
            " (calls/transitions; cold: each function's first AssumeRole of the member role)",
            cells,
            _met(calls_met),
        ),
        (
            f"2. ... with no more than {per['targets']['max_transitions_single_action']} transitions",
            f"at most {transitions}",
            _met(transitions <= per["targets"]["max_transitions_single_action"]),
        ),
    ]


def _storms(storm: dict[str, Any]) -> list[tuple[str, str, str]]:
    from bench.storm import meets_target, not_run_line

    rows = []
    for s in storm["sizes"]:
        hot = (s.get("dynamodb_hot_items") or [{}])[0]
        per_second = s.get("dynamodb_max_item_writes_per_second")
        rows.append(
            (
                f"5. Storm of {s['impaired_instances']} impaired ({s['groups']} groups): executions = impaired,"
                " 0 lost, cap kept, pages <= groups affected, within the budget",
                f"{s['executions_started']} executions, {s['lost_impairments']} lost, max share"
                f" {s['max_share_acted_on']:.0%} (cap {s['blast_radius_cap'] or 0:.0%}), {s['pages']} pages for"
                f" {s['groups_affected']} groups, {s['wall_seconds']:.0f} s",
                _met(meets_target(s)),
            )
        )
        if per_second is not None:
            rows.append(
                (
                    f"3. No hot item in the storm of {s['impaired_instances']}: at most"
                    f" {HOT_WRITES_PER_SECOND} writes of one item per second",
                    f"most written `{hot.get('item')}`: {hot.get('writes')} writes ({hot.get('per_recovery')} per"
                    f" recovery), at most {per_second} in one emulated second (a burst bound: calls take no"
                    " emulated time)",
                    _met(per_second <= HOT_WRITES_PER_SECOND),
                )
            )
        rows.append(
            (
                f"4. One page per storm ({s['impaired_instances']} impaired)",
                f"{s['pages']} pages for {s['impaired_instances']} impaired in {s['groups_affected']} groups",
                _met(s["pages_within_target"]),
            )
        )
    for s in storm["not_run"]:
        rows.append(
            (
                f"5. Storm of {s['impaired_instances']} impaired",
                not_run_line(s),
                "**not met**",
            )
        )
    return rows


def _idle(idle: dict[str, Any]) -> list[tuple[str, str, str]]:
    by_groups = ", ".join(
        f"{c['groups']}x{c['instances_per_group']}: {c['api_calls_per_hour']:.0f}/h" for c in idle["configurations"]
    )
    rows = [("6. Idle O(groups): calls/h by groups x instances", by_groups, _met(idle["meets_target"]))]
    quiet = idle.get("events_only")
    if quiet:
        rows.append(
            (
                "6. Events only (`sweep_interval_minutes: 0`): 0 calls an hour",
                f"{quiet['api_calls_per_hour']:.0f} calls/h, {quiet['lambda_invocations_per_hour']:.0f} invocations/h",
                _met(quiet["api_calls_per_hour"] == 0),
            )
        )
    return rows


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for part, build in (("cold_start", _cold), ("per_recovery", _calls), ("storm", _storms), ("idle", _idle)):
        if results.get(part):
            out.extend(build(results[part]))
    return out


def table(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    lines = [
        GOALS_START,
        f"Measured by one `make bench` run, {meta.get('measured_at', '')} at commit {meta.get('commit', '')}"
        f" on {meta.get('machine', '')}, in {meta.get('wall_seconds', 0):.0f} s (`bench/results.md` has every row).",
        "",
        "| goal (issue 16) | measured | |",
        "|---|---|---|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows(results)]
    return "\n".join([*lines, GOALS_END])


def write_into(page: Path, results: dict[str, Any]) -> None:
    """Replace the page's goals table (between the markers) with this run's; the markers go after
    the title when the page has none yet."""
    text = page.read_text()
    block = table(results)
    pattern = re.compile(re.escape(GOALS_START) + r".*?" + re.escape(GOALS_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{block}\n{rest}"
    page.write_text(text)
