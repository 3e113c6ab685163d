"""A drill's report: what the emulator's tables, execution histories and pages say happened,
checked against the scenario's expectations and the invariants."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recoveryctl import drill_paging, expect
from recoveryctl.state import scan_table

if TYPE_CHECKING:
    from recoveryctl.drill import Drill
    from recoveryctl.emulator.runtime import Emulator


def build(
    drill: Drill, signals: list[dict[str, Any]], impaired: list[str], before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    from core import clock

    emulator = drill.emulator
    assert emulator is not None
    ended_at = clock.utc_now()
    # What every region's table (its replica) holds once the drill settled: the audit trail
    # the report reads, and the locks and budgets the invariants look for.
    tables = {region.region: scan_table(region.store().table) for region in drill.regions()}
    records = {
        str(item["pk"]).removeprefix("IMPAIRMENT#"): item
        for items in tables.values()
        for item in items
        if str(item.get("pk", "")).startswith("IMPAIRMENT#") and item.get("sk") == "RECORD"
    }
    runs = [_run_of(region, item, tables[region.region]) for region in drill.regions() for item in region.executions()]
    runs.sort(key=lambda r: _when(r["started_at"]))
    # Several executions (a storm, rounds of a flapping fault): the report shows the worst.
    shown = min(runs, key=lambda r: _SEVERITY_OF_OUTCOME.get(r["outcome"], 99), default=None)
    execution = (
        {**{k: shown[k] for k in ("name", "region", "arn", "status")}, "states": _names(shown["states"])}
        if shown
        else {}
    )
    record = records.get(execution["name"]) if execution else None
    # Every "Impairment Detected" a detector put on a recovery bus, one entry per impairment.
    detected: dict[str, dict[str, Any]] = {}
    events = [e for e in emulator.events if e["bus"] != "default" and e["detail-type"] == "Impairment Detected"]
    for event in events:
        detail = event["detail"]
        found = detected.setdefault(
            detail["impairment_id"],
            {
                "impairment_id": detail["impairment_id"],
                "at": detail.get("detected_at") or event.get("time"),
                "impairment_type": detail.get("impairment_type"),
                "severity": detail.get("severity"),
                "region": event.get("region"),
                "deliveries": 0,
                "linked_to": (records.get(detail["impairment_id"]) or {}).get("linked_to"),
                "started": any(r["name"] == detail["impairment_id"] for r in runs),
            },
        )
        found["deliveries"] += 1
    pages = sorted(_pages(drill, records), key=lambda p: _when(p["at"]))
    outcome = (record or {}).get("outcome") or (_outcome_from(execution) if execution else "nothing_started")
    # On the virtual clock, steps that ran without a wait between them start at the same instant:
    # then the executions' order, and within one its steps' (applied in order, rolled back in reverse).
    ordered = [(a, (position, *_step_order(a))) for position, r in enumerate(runs) for a in r.pop("actions")]
    ordered.sort(key=lambda pair: (_when(pair[0].get("started_at")), pair[1]))
    actions = [a for a, _ in ordered]
    report = {
        "scenario": drill.scenario.name,
        "description": drill.scenario.description,
        "outcome": outcome,
        "reason": (record or {}).get("reason") or (None if runs else _nothing_started(detected)),
        "impairment_id": (record or {}).get("impairment_id"),
        "region": execution.get("region"),
        "impairment_type": (record or {}).get("impairment_type"),
        "severity": (record or {}).get("severity"),
        "plan": (record or {}).get("plan"),
        "mttd_seconds": _round((record or {}).get("mttd_seconds")),
        "mttr_seconds": _round((record or {}).get("mttr_seconds")),
        "started_at": (drill.started_at or ended_at).isoformat(),
        "ended_at": ended_at.isoformat(),
        "execution": execution,
        "actions": actions,
        "executions_started": len(runs),
        "outcomes": dict(Counter(r["outcome"] for r in runs)),
        "guardrails_tripped": sorted({g for r in runs for g in r["guardrails_tripped"]}),
        "executions": [{k: v for k, v in r.items() if k != "arn"} for r in runs],
        "regions": [region.region for region in drill.regions()],
        "transitions": sum(len(_names(r["states"])) for r in runs),
        "signals": signals,
        "detections": len(events),
        "detected": list(detected.values()),
        "correlated": sorted(i for i, r in records.items() if r.get("linked_to")),
        "pages": pages,
        # the pages resolved when their impairment recovered or cleared (same dedup key)
        "resolves": [
            {"at": r.get("sent_at"), "impairment_id": r.get("impairment_id"), "resolution": r.get("resolution")}
            for region in drill.regions()
            for r in region.resolves()
        ],
        "escalations": [p["summary"] for p in pages],
        # what PagerDuty's stand-in received from the notifier (a deployment with paging.pagerduty)
        **({"pagerduty": sent} if (sent := drill_paging.received(drill.pagerduty)) is not None else {}),
        "workload": {
            "name": drill.workload["name"],
            "account": drill.workload.get("account_id") or emulator.account,
            "group": drill.workload.get("auto_scaling_group"),
            "standby_group": (drill.workload.get("standby") or {}).get("auto_scaling_group"),
            "second_group": drill.second_group,
            "impaired_instances": impaired,
            "before": before,
            "after": after,
        },
        "virtual_wait_seconds": emulator.virtual_seconds,
        "lambda_errors": [f"{i.function}: {i.error}" for i in emulator.invocations if not i.ok],
    }
    dead_letters = {_stack_label(stack, emulator): stack.dead_letter_count() for stack in emulator.every_stack()}
    report["dead_letters"] = sum(dead_letters.values())
    facts = expect.Facts(
        tables=tables,
        executions=[{"name": r["name"], "region": r["region"], "status": r["status"]} for r in runs],
        dead_letters=dead_letters,
        now=ended_at,
    )
    report["expectations"] = expect.check_expectations(drill.scenario.expect, report)
    report["invariants"] = expect.check_invariants(facts, drill.scenario.expect.invariants_off)
    report["expectation_met"] = not report["expectations"]["failed"] and not report["invariants"]["broken"]
    return report


def _run_of(region: Emulator, item: dict[str, Any], table: list[dict[str, Any]]) -> dict[str, Any]:
    """One execution as the report tells it: its states with their virtual times, its audit
    record's outcome and plan, and its action steps."""
    from recoveryctl import views

    history = region.history(item["executionArn"])
    states = [{**e, "at": _iso(e.get("at"))} for e in views.state_timeline(history)]
    record = next((i for i in table if i.get("pk") == f"IMPAIRMENT#{item['name']}" and i.get("sk") == "RECORD"), {})
    outcome = record.get("outcome") or _outcome_from({"states": _names(states)})
    steps = [i for i in table if i.get("pk") == f"IMPAIRMENT#{item['name']}" and str(i.get("sk")).startswith("ACTION#")]
    approval = {k: v for k, v in (record.get("approval") or {}).items() if k != "task_token"}
    return {
        "name": item["name"],
        "region": region.region,
        "arn": item["executionArn"],
        "status": item["status"],
        "outcome": outcome,
        "guardrails_tripped": record.get("guardrails_tripped") or [],
        "reason": record.get("reason"),
        "plan": record.get("plan"),
        # On the virtual clock, as its history is (moto's own start and stop dates are not).
        "started_at": _iso(history[0]["timestamp"]) if history else _iso(item.get("startDate")),
        "stopped_at": _iso(history[-1]["timestamp"]) if history and item["status"] != "RUNNING" else None,
        "detected_at": record.get("detected_at"),
        "resolved_at": record.get("resolved_at"),
        "escalated_at": record.get("escalated_at"),
        "mttd_seconds": _round(record.get("mttd_seconds")),
        "mttr_seconds": _round(record.get("mttr_seconds")),
        "approval": approval or None,
        "states": states,
        "actions": [_action(step, item["name"], outcome) for step in steps],
    }


def _pages(drill: Drill, records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages a human received, each dated by the audit record of what it was about:
    an approval request when it was requested, an escalation when it was escalated."""
    pages = []
    for region in drill.regions():
        for message in region.escalations():
            body = message if isinstance(message, dict) else {"summary": str(message)}
            record = records.get(str(body.get("impairment_id"))) or {}
            kind = "approval" if "approve" in body else "storm_summary" if "storm_key" in body else "escalation"
            at = (record.get("approval") or {}).get("requested_at") if kind == "approval" else None
            pages.append(
                {
                    "at": at or body.get("sent_at") or record.get("escalated_at"),
                    "kind": kind,
                    "impairment_id": body.get("impairment_id"),
                    "region": region.region,
                    "summary": body.get("summary", json.dumps(body, default=str)),
                    # a storm's summary: the impairments it carries (each paged by no other page)
                    **(
                        {"lists": [m.get("impairment_id") for m in body.get("impairments") or []]}
                        if kind == "storm_summary"
                        else {}
                    ),
                }
            )
    return pages


# Which execution a report shows when there are several: the one that went worst.
_SEVERITY_OF_OUTCOME = {"escalated": 0, "rolled_back": 1, "skipped": 2, "dry_run": 3, "recovered": 4}


def _step_order(action: dict[str, Any]) -> tuple[int, int]:
    """Where a step comes in its execution: every apply in step order, then the rollbacks (and
    capacity given back) in reverse."""
    index = int(action.get("step_index") or 0)
    return (0, index) if action.get("phase") == "apply" else (1, -index)


def _action(step: dict[str, Any], execution: str, outcome: str) -> dict[str, Any]:
    from recoveryctl.views import phase_label

    result = step.get("result") or {}
    targets = list(result.get("targets") or _targets(step.get("before")))
    return {
        "execution": execution,
        "type": step.get("action"),
        "step_index": int(step.get("step_index") or 0),
        "phase": phase_label(step.get("phase"), outcome),
        "targets": targets,
        "target": ", ".join(targets),
        "result": result.get("result") or step.get("status"),
        "message": result.get("message") or step.get("error", ""),
        "started_at": step.get("started_at"),
        "finished_at": step.get("finished_at"),
    }


def _targets(before: Any) -> list[str]:
    if isinstance(before, dict):
        if "instances" in before:
            return sorted(before["instances"])
        if "group" in before:
            return [before["group"]]
    return []


def _names(states: list[dict[str, Any]]) -> list[str]:
    return [s["state"] for s in states if "state" in s]


def _outcome_from(execution: dict[str, Any]) -> str:
    states = execution.get("states") or []
    if "Recovered" in states:
        return "recovered"
    if "Escalated" in states:
        return "escalated"
    return "skipped"


def _nothing_started(detected: dict[str, dict[str, Any]]) -> str:
    if not detected:
        return "no impairment was detected"
    return f"{len(detected)} impairment(s) detected, none started a recovery"


def _stack_label(stack: Emulator, primary: Emulator) -> str:
    """A stack as the report names it: its region, with its account when it is a member's."""
    return stack.region if stack.account == primary.account else f"{stack.account}/{stack.region}"


def _when(value: Any) -> datetime:
    """A report's time, to sort by (its strings mix offsets and precisions); unknown: last."""
    from recoveryctl.timeline import parse_time

    return parse_time(value) or datetime.max.replace(tzinfo=UTC)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value) if value else None


def _round(value: Any) -> float | None:
    return round(float(value), 3) if isinstance(value, (int, float)) else None
