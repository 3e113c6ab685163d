"""`recoveryctl status` and `show`: what the recovery system did, read from a backend, as data
(for --json) and as text a person reads."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from recoveryctl.backends import Backend

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says what is expected."""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30d`, `12h`, `45m`, `2w`, `90s`, or an ISO 8601 date or time (UTC if no offset)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration like 30d, 12h, 45m or 2w, or an ISO date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _short_time(value: Any) -> str:
    moment = _time(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _seconds(value: Any) -> str:
    return f"{float(value):.1f} s" if isinstance(value, (int, float)) else "-"


# --- status ----------------------------------------------------------------------------------
def status(backend: Backend, since: datetime, limit: int = 20) -> dict[str, Any]:
    """Open impairments and finished recoveries detected since `since`, with their executions."""
    records = backend.impairments(since=since)
    executions = backend.executions(since=since - timedelta(minutes=5)) if records else {}
    rows = [_row(r, executions.get(r.get("impairment_id", ""))) for r in records]
    open_rows = [r for r in rows if r["outcome"] is None]
    recent = [r for r in rows if r["outcome"] is not None]
    recent.sort(key=lambda r: str(r["detected_at"]), reverse=True)
    return {
        "target": backend.describe(),
        "switches": backend.switches(),
        "paging": backend.paging(),
        "since": since.isoformat(),
        "open": open_rows,
        "recent": recent[:limit],
        "recent_total": len(recent),
    }


def _row(record: dict[str, Any], execution: dict[str, Any] | None) -> dict[str, Any]:
    approval = record.get("approval") or {}
    return {
        "impairment_id": record.get("impairment_id"),
        "workload": record.get("workload"),
        "impairment_type": record.get("impairment_type"),
        "severity": record.get("severity"),
        "detected_at": record.get("detected_at"),
        "status": record.get("status"),
        "outcome": record.get("outcome"),
        "plan": record.get("plan"),
        "mttd_seconds": record.get("mttd_seconds"),
        "mttr_seconds": record.get("mttr_seconds"),
        "drill": bool(record.get("drill")),
        "approval": approval.get("status"),
        "execution": {
            "name": (execution or {}).get("name"),
            "status": (execution or {}).get("status"),
            "arn": (execution or {}).get("executionArn") or record.get("execution_arn"),
        },
    }


def format_status(data: dict[str, Any], since_label: str) -> str:
    switches = data["switches"]
    lines = [f"Recovery status from {data['target']}"]
    if switches.get("paused"):
        reason = f": {switches['pause_reason']}" if switches.get("pause_reason") else ""
        by = f" by {switches['changed_by']}" if switches.get("changed_by") else ""
        lines.append(f"  automatic recovery PAUSED{by}{reason} (resume with `recoveryctl resume`)")
    else:
        lines.append("  automatic recovery active")
    if switches.get("disabled_plans"):
        lines.append(f"  disabled plans: {', '.join(switches['disabled_plans'])}")
    lines += _paging_lines(data.get("paging"))
    lines += ["", f"Open impairments ({len(data['open'])})"]
    lines += _table(data["open"]) if data["open"] else ["  none"]
    shown = len(data["recent"])
    more = f", newest {shown} shown" if data["recent_total"] > shown else ""
    lines += ["", f"Recent recoveries, last {since_label} ({data['recent_total']}{more})"]
    lines += _table(data["recent"]) if data["recent"] else ["  none"]
    if data["open"] or data["recent"]:
        lines += ["", "Details of one: recoveryctl show <IMPAIRMENT>"]
    return "\n".join(lines)


def _paging_lines(paging: dict[str, Any] | None) -> list[str]:
    """Whether a page reaches anyone: said plainly when it reaches no one."""
    if paging is None:
        return []
    if paging["topic_arn"] is None:
        return ["  pages: unknown (the stack has no escalation topic output)"]
    pending = f"; {paging['pending']} pending confirmation (not paged until confirmed)" if paging["pending"] else ""
    if not paging["can_page"]:
        return [
            f"  NO ONE CAN RECEIVE A PAGE: the escalation topic {paging['topic_arn']} has no confirmed "
            f"subscription{pending}. Escalations, approval requests and the system's own alarms are dropped: "
            "set escalation_emails and redeploy, or subscribe your on-call to the topic, and confirm"
        ]
    protocols = ", ".join(f"{p} {n}" for p, n in paging["by_protocol"].items())
    return [f"  pages reach {paging['confirmed']} confirmed subscription(s) ({protocols}){pending}"]


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns = ["IMPAIRMENT", "TYPE", "SEV", "DETECTED (UTC)", "OUTCOME", "PLAN", "MTTD", "MTTR", "EXECUTION"]
    cells = []
    for row in rows:
        outcome = row["outcome"] or row["status"] or "-"
        if row["approval"] == "pending" and row["outcome"] is None:
            outcome = "awaiting approval"
        execution = row["execution"]
        cells.append(
            [
                row["impairment_id"] + (" (drill)" if row["drill"] else ""),
                row["impairment_type"] or "-",
                row["severity"] or "-",
                _short_time(row["detected_at"]),
                outcome,
                row["plan"] or "-",
                _seconds(row["mttd_seconds"]),
                _seconds(row["mttr_seconds"]),
                f"{execution['status']}" if execution["status"] else "-",
            ]
        )
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    render = lambda values: "  " + "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()  # noqa: E731
    return [render(columns), *(render(r) for r in cells)]


# --- show ------------------------------------------------------------------------------------
def show(backend: Backend, impairment_id: str) -> dict[str, Any] | None:
    record = backend.impairment(impairment_id)
    if record is None:
        return None
    execution = backend.execution(record)
    history = backend.history(execution) if execution else []
    return {
        "target": backend.describe(),
        "impairment": record,
        "actions": backend.actions(impairment_id),
        "execution": execution,
        "history": history,
        "states": state_timeline(history),
        "escalations": backend.escalations(impairment_id),
    }


def state_timeline(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The execution as states entered, how long each took, and what failed, in order.

    A state may be entered many times (a Map's iterations, a verification loop): each exit closes
    the latest entry of its name. A state left by an error has no exit event: it lasted until the
    next state was entered (or the execution ended)."""
    entries: list[dict[str, Any]] = []
    open_states: dict[str, list[dict[str, Any]]] = {}
    unexited: list[tuple[int, dict[str, Any]]] = []
    for index, event in enumerate(history):
        kind = event.get("type", "")
        at = _time(event.get("timestamp"))
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entry = {"at": event.get("timestamp"), "state": name, "kind": kind.removesuffix("StateEntered")}
            entries.append(entry)
            open_states.setdefault(name, []).append(entry)
            unexited.append((index, entry))
        elif kind.endswith("StateExited"):
            stack = open_states.get(event["stateExitedEventDetails"]["name"]) or []
            entry = stack.pop() if stack else None
            started = _time((entry or {}).get("at"))
            if entry is not None and started and at:
                entry["seconds"] = round((at - started).total_seconds(), 3)
        elif kind.endswith(("Failed", "TimedOut", "Aborted")):
            details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
            entries.append(
                {
                    "at": event.get("timestamp"),
                    "event": kind,
                    "error": details.get("error"),
                    "cause": details.get("cause"),
                }
            )
        elif kind == "ExecutionSucceeded":
            entries.append({"at": event.get("timestamp"), "event": kind})
    for index, entry in unexited:
        if "seconds" in entry:
            continue
        ended = next(
            (
                e
                for e in history[index + 1 :]
                if e.get("type", "").endswith("StateEntered") or e.get("type", "").startswith("Execution")
            ),
            None,
        )
        started, stopped = _time(entry["at"]), _time((ended or {}).get("timestamp"))
        if started and stopped:
            entry["seconds"] = round((stopped - started).total_seconds(), 3)
    return entries


def phase_label(phase: Any, outcome: Any) -> str:
    """An action record's phase as a person reads it. A rollback-phase record of a recovery that
    succeeded was not a rollback: it is the emergency capacity given back (or shifted weights
    put back) once the workload stayed healthy, which ReturnCapacity records in that phase."""
    if phase == "rollback" and outcome == "recovered":
        return "return"
    return str(phase or "")


def format_show(data: dict[str, Any]) -> str:
    record = data["impairment"]
    impairment = record.get("impairment") or {}
    signal = impairment.get("signal") or {}
    lines = [
        f"Impairment {record['impairment_id']}" + _drill_note(record),
        f"  workload     {record.get('workload')}",
        f"  type         {record.get('impairment_type')}, severity {record.get('severity')}",
        f"  description  {impairment.get('description') or '-'}",
        f"  resources    {', '.join(_resource(r) for r in impairment.get('affected_resources') or []) or '-'}",
        f"  status       {record.get('status')}" + (f", outcome {record['outcome']}" if record.get("outcome") else ""),
    ]
    if record.get("reason"):
        lines.append(f"  reason       {record['reason']}")
    if record.get("plan"):
        lines.append(f"  plan         {record['plan']}" + (" (dry run)" if record.get("dry_run") else ""))
    if record.get("region"):
        lines.append(f"  region       {record['region']} (the stack that handled it, and its records)")
    if record.get("linked_to"):
        lines.append(f"  linked to    {record['linked_to']} (its recovery covers this signal)")
    lines += ["", "Timeline (UTC)"]
    events = [
        (signal.get("signal_time"), f"signal     {signal.get('source')} {signal.get('name') or signal.get('id')}")
    ]
    for linked in record.get("linked_signals") or []:
        linked_signal = linked.get("signal") or {}
        events.append(
            (
                linked_signal.get("signal_time"),
                f"signal     {linked_signal.get('source')} {linked_signal.get('name') or linked_signal.get('id')}"
                f" (linked: {linked.get('impairment_id', '')})".replace(" ()", ""),
            )
        )
    events.append((record.get("detected_at"), f"detected   MTTD {_seconds(record.get('mttd_seconds'))}"))
    approval = record.get("approval") or {}
    if approval:
        events.append(
            (
                approval.get("requested_at"),
                f"approval   requested for plan {approval.get('plan')}, "
                f"expires {_short_time(approval.get('expires_at'))}",
            )
        )
        if approval.get("status") != "pending":
            reason = f": {approval['reason']}" if approval.get("reason") else ""
            events.append((approval.get("at"), f"approval   {approval.get('status')} by {approval.get('by')}{reason}"))
        elif record.get("outcome"):
            events.append((approval.get("expires_at"), "approval   no answer before it expired"))
        else:
            events.append((None, f"approval   PENDING: `recoveryctl approve {record['impairment_id']}` or reject"))
    for action in data["actions"]:
        events.append((action.get("started_at"), _action_line(action, record.get("outcome"))))
    if record.get("resolved_at"):
        events.append((record["resolved_at"], f"resolved   MTTR {_seconds(record.get('mttr_seconds'))}"))
    if record.get("escalated_at"):
        events.append((record["escalated_at"], "escalated  a human was paged"))
    events = [e for e in events if e[1]]
    events.sort(key=lambda e: _time(e[0]) or datetime.max.replace(tzinfo=UTC))
    lines += [f"  {_short_time(at)}  {text}" for at, text in events]
    if data["actions"]:
        lines += ["", "Actions (state before -> after)"]
        for action in data["actions"]:
            lines.append(f"  {_action_line(action, record.get('outcome'))}")
            lines.append(f"      before  {_compact(action.get('before'))}")
            if action.get("after") is not None:
                lines.append(f"      after   {_compact(action.get('after'))}")
    execution = data["execution"]
    lines.append("")
    if execution:
        lines.append(f"Step Functions execution {execution.get('name')}: {execution.get('status')}")
        lines.append(f"  {execution.get('executionArn')}")
        if execution.get("error"):
            lines.append(f"  error {execution['error']}: {execution.get('cause') or ''}".rstrip(": "))
        start = _time(execution.get("startDate"))
        for entry in data["states"]:
            at = _time(entry.get("at"))
            offset = f"+{(at - start).total_seconds():7.1f} s" if at and start else " " * 11
            if "state" in entry:
                took = f"  ({entry['seconds']:.1f} s)" if entry.get("seconds") else ""
                lines.append(f"  {offset}  {entry['state']}{took}")
            elif entry.get("error"):
                cause = _short_cause(entry.get("cause"))
                lines.append(f"  {offset}    {entry['event']}: {entry['error']}" + (f": {cause}" if cause else ""))
            else:
                lines.append(f"  {offset}  {entry['event']}")
    else:
        lines.append("Step Functions execution: none found (the impairment was correlated or is not started yet)")
    for message in data["escalations"]:
        summary = message.get("summary", message) if isinstance(message, dict) else message
        lines.append(f"\nEscalation sent: {summary}")
    return "\n".join(lines)


def _drill_note(record: dict[str, Any]) -> str:
    """A drill's record says so: a local drill names its scenario; a deployed one (a practice
    drill, or `recoveryctl drill --deployed`) has none."""
    if not record.get("drill"):
        return ""
    scenario = record.get("drill_scenario")
    return f" (drill {scenario})" if scenario else " (drill)"


def _resource(resource: dict[str, Any]) -> str:
    return f"{resource.get('resource_type')} {resource.get('resource_id')}"


def _action_line(action: dict[str, Any], recovery_outcome: Any = None) -> str:
    result = action.get("result") or {}
    outcome = result.get("result") or action.get("status")
    message = result.get("message") or action.get("error") or ""
    targets = ", ".join(result.get("targets") or [])
    phase = phase_label(action.get("phase"), recovery_outcome)
    return (
        f"{phase:<9}  step {action.get('step_index')} {action.get('action')}"
        f"{' on ' + targets if targets else ''}: {outcome}{'  ' + message if message else ''}"
    )


def _compact(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, separators=(", ", ": "), default=str) if value is not None else "-"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_cause(cause: Any, limit: int = 160) -> str:
    text = str(cause or "")
    with contextlib.suppress(ValueError, AttributeError):
        text = json.loads(text).get("errorMessage", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
