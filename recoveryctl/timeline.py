"""A drill's timeline as a person reads it: what happened, in the order it happened on the
drill's (virtual) clock, each line timed from the drill's start.

Everything in a drill report is dated on that clock: the signals (when the drill fired them),
the detections and the audit records (the functions' core.clock), and the executions' state
histories (the emulator stamps them on it). The emulator fast-forwards waits, so a drill that
takes seconds shows the minutes a real recovery would take, in the order they would pass.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WIDTH = 110  # lines are wrapped at words to this width, never cut
_TIME = 11  # the time column: "+1954.1 s" right-aligned
_LABEL = 11  # the label column: "signal", "detected", ...
_TEXT = 2 + _LABEL  # where the text of a line without a time starts (the header and the footer)

_VERDICTS = {
    "recovered": "recovered, verified healthy",
    "escalated": "escalated to a human",
    "skipped": "skipped",
    "rolled_back": "rolled back",
    "dry_run": "dry run: nothing was changed",
    "nothing_started": "nothing started",
}


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: when (None: unknown), a label and the text."""

    at: datetime | None
    label: str
    text: str
    indent: int = 0


def parse_time(value: Any) -> datetime | None:
    """A timestamp as signals, records and histories write it (ISO 8601, CloudWatch's
    2026-11-20T09:14:31.104+0000, a datetime); None for anything else, never an error: a
    scenario's event may carry any string as its time."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
            text = f"{text[:-2]}:{text[-2:]}"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_timeline(report: dict[str, Any]) -> str:
    """The drill report as text: the workload and the fault, then every signal, detection,
    state (with its start and duration), approval, action step, page and outcome in virtual-time
    order, then the verdict, the final state, the cost, the errors and the expectations."""
    lines = _wrap(f"Drill {report.get('scenario')}: {report.get('description') or ''}".rstrip(": "), 0, 2)
    lines.append("")
    workload = report.get("workload") or {}
    for part in describe_state(workload.get("group"), workload.get("before") or {}):
        lines += _wrap(f"{workload.get('name')}: {part}", 2, label="workload")
    if workload.get("impaired_instances"):
        lines += _wrap(f"impaired {', '.join(workload['impaired_instances'])}", 2, label="fault")
    lines += ["", "  time from the drill's start, on its virtual clock (waits fast-forwarded, in order)"]
    start = parse_time(report.get("started_at"))
    entries = events(report)
    if start is None:  # a report without its start: time from the first thing that happened
        start = min((e.at for e in entries if e.at is not None), default=None)
    for entry in sorted(entries, key=lambda e: e.at or start or datetime.min.replace(tzinfo=UTC)):
        when = _offset(entry.at, start)
        lines += _wrap(entry.text, 2, label=entry.label, when=when, shift=entry.indent)
    lines.append("")
    lines += _footer(report)
    execution = report.get("execution") or {}
    if execution:
        lines += [
            "",
            f"  In AWS, this is the Step Functions execution named {execution.get('name')} (the impairment id).",
        ]
    return "\n".join(lines)


def events(report: dict[str, Any]) -> list[Entry]:
    """Every dated thing in the report, in the order it was added (sorting by time keeps that
    order for things at the same time: a state before the action it ran)."""
    runs = report.get("executions") or []
    tags = {run.get("name"): (f"[{n}] " if len(runs) > 1 else "") for n, run in enumerate(runs, 1)}
    entries = [_signal(signal) for signal in report.get("signals") or []]
    mttd = {run.get("name"): run.get("mttd_seconds") for run in runs}
    for found in report.get("detected") or []:
        entries.append(_detection(found, mttd.get(found.get("impairment_id")), tags))
    for run in runs:
        entries += _run(run, tags.get(run.get("name"), ""))
    for action in report.get("actions") or []:
        tag = tags.get(action.get("execution"), "")
        targets = ", ".join(action.get("targets") or []) or action.get("target") or "-"
        message = f"  {action['message']}" if action.get("message") else ""
        entries.append(
            Entry(
                parse_time(action.get("started_at")),
                str(action.get("phase") or "action"),
                f"{tag}{action.get('type')} on {targets}: {action.get('result')}{message}",
            )
        )
    for page in report.get("pages") or []:
        about = {"approval": "asks for approval", "storm_summary": "storm summary"}.get(
            str(page.get("kind")), "escalation"
        )
        entries.append(Entry(parse_time(page.get("at")), "paged", f"({about}) {page.get('summary')}"))
    for resolve in report.get("resolves") or []:
        entries.append(
            Entry(parse_time(resolve.get("at")), "resolved", f"page about {resolve.get('impairment_id')} resolved")
        )
    return entries


def _signal(signal: dict[str, Any]) -> Entry:
    alarm = "alarm" in signal
    what = f"alarm {signal['alarm']} -> {signal.get('state')}" if alarm else f"event {signal.get('event')}"
    if (signal.get("deliveries") or 1) > 1:
        what += f" (delivered {signal['deliveries']} times)"
    own = signal.get("time")
    if own is not None and parse_time(own) is None:
        what += f" (its time {own!r} is not a timestamp)"
    # When the drill fired it; a report without that: the time the signal itself carries.
    return Entry(parse_time(signal.get("at")) or parse_time(own), "signal", what)


def _detection(found: dict[str, Any], mttd: Any, tags: dict[Any, str]) -> Entry:
    impairment = found.get("impairment_id")
    text = f"{tags.get(impairment, '')}{impairment}: {found.get('impairment_type')}, severity {found.get('severity')}"
    if (found.get("deliveries") or 1) > 1:
        text += f" ({found['deliveries']} detections of this one impairment)"
    if found.get("linked_to"):
        text += f"; correlated: linked to {found['linked_to']}, whose recovery covers it"
        return Entry(parse_time(found.get("at")), "correlated", text)
    if isinstance(mttd, (int, float)):
        text += f" (MTTD {mttd:.1f} s)"
    elif not found.get("started"):
        text += "; no recovery started"
    return Entry(parse_time(found.get("at")), "detected", text)


def _run(run: dict[str, Any], tag: str) -> list[Entry]:
    name = run.get("name")
    where = f" in {run['region']}" if run.get("region") else ""
    entries = [Entry(parse_time(run.get("started_at")), "execution", f"{tag}{name} started{where}")]
    for state in run.get("states") or []:
        at = parse_time(state.get("at"))
        if "state" in state:
            took = f"{state['seconds']:.1f} s" if isinstance(state.get("seconds"), (int, float)) else ""
            note = f"  plan {run['plan']}" if state["state"] == "Admit" and run.get("plan") else ""
            entries.append(Entry(at, "state", f"{tag}{state['state']:<28} {took:>9}{note}".rstrip(), 2))
        elif state.get("error") and not str(state.get("event")).startswith("Execution"):
            # (the execution's own end is its outcome line)
            cause = _cause(state.get("cause"))
            entries.append(
                Entry(at, "error", f"{tag}{state.get('event')}: {state['error']}" + (f": {cause}" if cause else ""), 2)
            )
    approval = run.get("approval") or {}
    if approval.get("requested_at"):
        expires = parse_time(approval.get("expires_at"))
        asked = parse_time(approval["requested_at"])
        within = f", within {(expires - asked).total_seconds():.0f} s" if expires and asked else ""
        entries.append(Entry(asked, "approval", f"{tag}requested for plan {approval.get('plan')}{within}"))
        if approval.get("status") in ("approved", "rejected"):
            reason = f": {approval['reason']}" if approval.get("reason") else ""
            entries.append(
                Entry(
                    parse_time(approval.get("at")),
                    "approval",
                    f"{tag}{approval['status']} by {approval.get('by')}{reason}",
                )
            )
        elif run.get("outcome"):
            entries.append(Entry(expires, "approval", f"{tag}no answer before it expired"))
    if run.get("stopped_at"):
        verdict = _VERDICTS.get(str(run.get("outcome")), str(run.get("outcome")))
        mttr = run.get("mttr_seconds")
        verdict += f" (MTTR {mttr:.1f} s)" if isinstance(mttr, (int, float)) else ""
        if run.get("reason") and run.get("outcome") != "recovered":
            verdict += f": {run['reason']}"
        entries.append(Entry(parse_time(run["stopped_at"]), "outcome", f"{tag}{name} {verdict}"))
    return entries


def _footer(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    outcome = str(report.get("outcome"))
    verdict = _VERDICTS.get(outcome, outcome)
    runs = report.get("executions") or []
    if len(runs) > 1:
        counts = ", ".join(f"{n} {o}" for o, n in sorted((report.get("outcomes") or {}).items()))
        verdict += f" (the worst of {len(runs)} executions: {counts})"
    mttr = report.get("mttr_seconds")
    if isinstance(mttr, (int, float)) and len(runs) == 1:
        verdict += f" (MTTD {report.get('mttd_seconds') or 0:.1f} s, MTTR {mttr:.1f} s)"
    lines += _wrap(verdict, 2, label="outcome")
    if report.get("reason") and outcome != "recovered":
        lines += _wrap(str(report["reason"]), 2, label="reason")
    if report.get("guardrails_tripped"):
        lines += _wrap(
            f"{', '.join(report['guardrails_tripped'])} (what stopped or narrowed a recovery)", 2, _TEXT, "guardrails"
        )
    workload = report.get("workload") or {}
    for part in describe_state(workload.get("group"), workload.get("after") or {}):
        lines += _wrap(part, 2, label="now")
    virtual = _span(report)
    cost = f"{report.get('transitions', 0)} state transitions"
    if virtual is not None:
        cost += f"; {virtual:.0f} s of virtual time"
    cost += f", {report.get('virtual_wait_seconds') or 0:.0f} s of it waits fast-forwarded"
    lines += _wrap(cost, 2, label="cost")
    errors = report.get("lambda_errors") or []
    if errors:
        lines += _wrap(f"{len(errors)} function error(s), retried or caught:", 2, label="errors")
        for error in errors:
            lines += _wrap(f"- {error}", _TEXT, hang=_TEXT + 2)
    lines += _verdict(report)
    return lines


def _verdict(report: dict[str, Any]) -> list[str]:
    """Whether the drill met its expectation, and if not what was expected and what was seen."""
    expectations = report.get("expectations") or {}
    invariants = report.get("invariants") or {}
    failed = expectations.get("failed") or []
    broken = invariants.get("broken") or []
    if "expectation_met" not in report:
        return []
    counts = (len(expectations.get("checked") or []), len(invariants.get("checked") or []))
    checked = f"{counts[0]} expectation(s), {counts[1]} invariant(s) checked"
    lines = _wrap(("met: " if report["expectation_met"] else "NOT MET: ") + checked, 2, label="expect")
    for failure in failed:
        lines += _wrap(f"- {failure.get('message')}", _TEXT, hang=_TEXT + 2)
    for invariant in broken:
        lines += _wrap(
            f"- invariant {invariant.get('invariant')} broken: {invariant.get('description')}", _TEXT, hang=_TEXT + 2
        )
        for detail in invariant.get("details") or []:
            lines += _wrap(str(detail), _TEXT + 4, hang=_TEXT + 6)
    for name, reason in (invariants.get("off") or {}).items():
        lines += _wrap(f"- invariant {name} not checked: {reason}", _TEXT, hang=_TEXT + 2)
    return lines


def failures(report: dict[str, Any]) -> list[str]:
    """One line per failed expectation and per broken invariant (with its first details)."""
    found = [f["message"] for f in (report.get("expectations") or {}).get("failed") or []]
    for invariant in (report.get("invariants") or {}).get("broken") or []:
        found.append(f"invariant {invariant['invariant']} broken: {'; '.join(invariant.get('details') or [])}")
    return found


def describe_state(group: str | None, state: dict[str, Any]) -> list[str]:
    """A workload's parts as a person checks them: the group (and a second group on its target
    group), the ECS service, the database, the DNS records, the standby, the global database's
    writer, the EKS node group's nodes, ARC routing controls and zonal shifts."""
    parts = []
    if group and "in_service" in state:
        parts.append(
            f"group {group}: {len(state['in_service'])} in service (min {state.get('min_size')}, max "
            f"{state.get('max_size')}, desired {state.get('desired_capacity')}) {', '.join(state['in_service'])}"
        )
    second = state.get("second_group")
    if second:
        parts.append(
            f"second group {second.get('name')}: {len(second.get('in_service') or [])} in service (min "
            f"{second.get('min_size')}, max {second.get('max_size')}, desired {second.get('desired_capacity')}) "
            f"{', '.join(second.get('in_service') or [])}"
        )
    if "ecs_service" in state:
        service = state["ecs_service"]
        parts.append(f"ECS service: {service.get('running')} of {service.get('desired')} tasks running")
    if "database" in state:
        parts.append("database: " + ", ".join(f"{k} {v}" for k, v in state["database"].items()))
    for record in state.get("dns_records", []):
        weight = f" weight {record['Weight']}" if "Weight" in record else ""
        parts.append(
            f"DNS {record.get('Name')} {record.get('Failover', '')}{weight} -> "
            f"{', '.join(r['Value'] for r in record.get('ResourceRecords', []))}"
            f" (health check {record.get('HealthCheckId')})"
        )
    standby = state.get("standby")
    if standby and "in_service" in standby:
        parts.append(
            f"standby in {standby.get('region')}: {len(standby.get('in_service') or [])} in service (desired "
            f"{standby.get('desired_capacity')}, max {standby.get('max_size')})"
        )
    if standby and standby.get("ecs_service"):
        service = standby["ecs_service"]
        parts.append(
            f"standby ECS service in {standby.get('region')}: {service['running']} running (desired "
            f"{service['desired']})"
        )
    database = state.get("global_database")
    if database:
        parts.append(
            f"global database writer in {database.get('writer_region')}: {database.get('writer')} "
            f"({database.get('status')})"
        )
    replica = state.get("read_replica")
    if replica:
        parts.append(_read_replica_line(replica))
    eks = state.get("eks")
    if eks:
        nodes = eks.get("nodes") or {}
        ready = [n for n, v in nodes.items() if v.get("ready")]
        parts.append(
            f"EKS {eks.get('cluster')}/{eks.get('nodegroup')}: {len(ready)} of {len(nodes)} nodes Ready "
            f"(desired {eks.get('desired_size')}), "
            + ", ".join(
                f"{n} {v.get('instance')}{' NotReady' if not v.get('ready') else ''}"
                f"{' cordoned' if v.get('cordoned') else ''}"
                for n, v in nodes.items()
            )
        )
    for name, value in (state.get("routing_controls") or {}).items():
        parts.append(f"ARC routing control {name}: {value}")
    for shift in state.get("zonal_shifts", []):
        parts.append(f"zonal shift away from {shift.get('awayFrom')} until {shift.get('expiryTime')}")
    return parts


def _read_replica_line(replica: dict[str, Any]) -> str:
    """The standby's read replica: still replicating its source, or promoted (it takes writes)."""
    where = f"DB instance {replica.get('db_instance')} in {replica.get('region')}"
    if replica.get("source"):
        return f"{where}: read replica of {replica['source']} ({replica.get('status')})"
    return f"{where}: promoted, standalone, takes writes ({replica.get('status')})"


def _span(report: dict[str, Any]) -> float | None:
    start, end = parse_time(report.get("started_at")), parse_time(report.get("ended_at"))
    return (end - start).total_seconds() if start and end else None


def _offset(at: datetime | None, start: datetime | None) -> str:
    if at is None or start is None:
        return "?"
    return f"{(at - start).total_seconds():+.1f} s"


def _cause(cause: Any) -> str:
    """A task error's message (Lambda wraps it in JSON), whole."""
    import json

    text = str(cause or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return str(parsed.get("errorMessage", text)) if isinstance(parsed, dict) else text


def _wrap(
    text: str, indent: int, hang: int | None = None, label: str = "", when: str | None = None, shift: int = 0
) -> list[str]:
    """A line with its label (and time) columns, wrapped at words, never cut; its continuation
    lines start under its text (or at `hang`)."""
    prefix = " " * indent
    if when is not None:
        prefix += f"{when:>{_TIME}} " + " " * shift
    if label:
        prefix += f"{label:<{_LABEL}}"
    wrapped = textwrap.wrap(
        text,
        width=max(WIDTH, len(prefix) + 40),
        initial_indent=prefix,
        subsequent_indent=" " * (len(prefix) if hang is None else hang),
        break_long_words=False,
        break_on_hyphens=False,
    )
    return wrapped or [prefix.rstrip()]
