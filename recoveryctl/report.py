"""`recoveryctl report`: how fast impairments are detected and recovered, and how often recovery
works, by impairment type and by action; drills and real recoveries side by side.

MTTD = detected_at - first signal; MTTR = resolved_at - detected_at (recovered impairments only).
A workload with a recovery time objective (rto_seconds) is judged per recovery by Finalize
(`within_rto` on the record); its share within RTO counts every attempt: an escalated or rolled
back recovery did not recover within it.
A recovery was attempted when it ended recovered, rolled back or escalated; skipped (paused,
locked, no plan needed), correlated (folded into another impairment) and dry runs are counted
but are not attempts. An action step succeeded when its apply phase is done, failed when it is
failed; one still running is neither.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, time
from pathlib import Path
from typing import Any

KINDS = ("drill", "real")
ATTEMPTED = ("recovered", "rolled_back", "escalated")
PERCENTILES = (50, 90, 99)


def kind_of(record: dict[str, Any]) -> str:
    return "drill" if record.get("drill") else "real"


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _spread(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), **{f"p{p}": _round(percentile(values, p)) for p in PERCENTILES}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _rate(good: int, total: int) -> float | None:
    return round(good / total, 4) if total else None


def _numbers(records: list[dict[str, Any]], field: str) -> list[float]:
    return [float(r[field]) for r in records if isinstance(r.get(field), (int, float))]


def _group_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes = Counter(str(r.get("outcome") or "open") for r in records)
    attempted = sum(outcomes[o] for o in ATTEMPTED)
    recovered_records = [r for r in records if r.get("outcome") == "recovered"]
    return {
        "impairments": len(records),
        "outcomes": dict(sorted(outcomes.items())),
        "attempted": attempted,
        "recovered": outcomes["recovered"],
        "success_rate": _rate(outcomes["recovered"], attempted),
        "mttd_seconds": _spread(_numbers(records, "mttd_seconds")),
        "mttr_seconds": _spread(_numbers(recovered_records, "mttr_seconds")),
    }


def summarize(
    records: list[dict[str, Any]], actions: dict[str, list[dict[str, Any]]], since: datetime | None = None
) -> dict[str, Any]:
    """The report as data: overall, by impairment type and by action, each for drills and real."""
    by_kind = {k: [r for r in records if kind_of(r) == k] for k in KINDS}
    types = sorted({str(r.get("impairment_type") or "unknown") for r in records})
    summary: dict[str, Any] = {
        "since": since.isoformat() if since else None,
        "overall": {k: _group_summary(by_kind[k]) for k in KINDS},
        "by_impairment_type": {
            t: {
                k: _group_summary([r for r in by_kind[k] if (r.get("impairment_type") or "unknown") == t])
                for k in KINDS
            }
            for t in types
        },
    }
    steps: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: {k: Counter() for k in KINDS})
    kinds = {r["impairment_id"]: kind_of(r) for r in records}
    recovered = {r["impairment_id"] for r in records if r.get("outcome") == "recovered"}
    for impairment_id, items in actions.items():
        kind = kinds.get(impairment_id)
        if kind is None:
            continue
        for item in items:
            name = str(item.get("action") or "unknown")
            counts = steps[name][kind]
            if item.get("phase") == "apply":
                status = item.get("status")
                counts["applied"] += 1
                counts["succeeded" if status == "done" else "failed" if status == "failed" else "running"] += 1
                if (item.get("result") or {}).get("result") == "unchanged":
                    counts["unchanged"] += 1
            elif item.get("phase") == "rollback" and item.get("status") == "done":
                # After a verified recovery, a rollback is the emergency capacity given back.
                counts["returned" if impairment_id in recovered else "rolled_back"] += 1
    summary["by_action"] = {
        name: {
            k: {
                "applied": c["applied"],
                "succeeded": c["succeeded"],
                "failed": c["failed"],
                "running": c["running"],
                "rolled_back": c["rolled_back"],
                "capacity_returned": c["returned"],
                "success_rate": _rate(c["succeeded"], c["succeeded"] + c["failed"]),
            }
            for k, c in by.items()
        }
        for name, by in sorted(steps.items())
    }
    summary["by_workload"] = _objectives(records)
    summary["points"] = [
        {
            "impairment_id": r.get("impairment_id"),
            "workload": r.get("workload"),
            "detected_at": r.get("detected_at"),
            "kind": kind_of(r),
            "impairment_type": r.get("impairment_type") or "unknown",
            "outcome": r.get("outcome") or "open",
            "mttd_seconds": r.get("mttd_seconds"),
            "mttr_seconds": r.get("mttr_seconds") if r.get("outcome") == "recovered" else None,
        }
        for r in records
    ]
    return summary


def _objectives(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per workload whose recoveries were judged against an RTO, per kind: the objective (the
    latest recorded), attempts, those recovered within it, their share and the MTTR p50."""
    judged = {r.get("workload") for r in records if isinstance(r.get("rto_seconds"), (int, float))}
    out: dict[str, Any] = {}
    for workload in sorted(w for w in judged if w):
        mine = sorted((r for r in records if r.get("workload") == workload), key=lambda r: str(r.get("detected_at")))
        rto = next(r["rto_seconds"] for r in reversed(mine) if isinstance(r.get("rto_seconds"), (int, float)))
        out[workload] = {"rto_seconds": rto}
        for kind in KINDS:
            attempted = [r for r in mine if kind_of(r) == kind and r.get("outcome") in ATTEMPTED]
            within = sum(1 for r in attempted if r.get("outcome") == "recovered" and r.get("within_rto") is True)
            mttr = _numbers([r for r in attempted if r.get("outcome") == "recovered"], "mttr_seconds")
            out[workload][kind] = {
                "attempted": len(attempted),
                "within_rto": within,
                "share_within_rto": _rate(within, len(attempted)),
                "mttr_p50_seconds": _round(percentile(mttr, 50)),
            }
    return out


# --- text ------------------------------------------------------------------------------------
def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def _spread_text(spread: dict[str, Any]) -> str:
    if not spread["count"]:
        return "-"
    return " / ".join(_seconds(spread[f"p{p}"]) for p in PERCENTILES) + f"  (n={spread['count']})"


def _success_text(good: int, total: int, rate: float | None, verb: str) -> str:
    if not total:
        return "-"
    return f"{good} of {total} {verb} ({rate:.0%})"


def format_report(summary: dict[str, Any], where: str, since_label: str) -> str:
    width = 38
    present = [k for k in KINDS if summary["overall"][k]["impairments"]] or ["drill"]
    header = "".join(f"{('drills' if k == 'drill' else 'real recoveries'):<{width}}" for k in present)
    lines = [f"Recoveries in the last {since_label}, from {where}", ""]
    lines.append(f"  {'':<24}{header}".rstrip())
    overall = summary["overall"]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"  {label:<24}" + "".join(f"{c:<{width}}" for c in cells).rstrip())

    row("impairments", [str(overall[k]["impairments"]) for k in present])
    row(
        "recovered",
        [
            _success_text(overall[k]["recovered"], overall[k]["attempted"], overall[k]["success_rate"], "attempted")
            for k in present
        ],
    )
    row("outcomes", [", ".join(f"{o} {n}" for o, n in overall[k]["outcomes"].items()) or "-" for k in present])
    row("MTTD p50 / p90 / p99", [_spread_text(overall[k]["mttd_seconds"]) for k in present])
    row("MTTR p50 / p90 / p99", [_spread_text(overall[k]["mttr_seconds"]) for k in present])
    lines += ["", "  By impairment type (recovered of attempted; MTTR p50)"]
    for name, by in summary["by_impairment_type"].items():
        cells = []
        for k in present:
            group = by[k]
            if not group["impairments"]:
                cells.append("-")
                continue
            text = _success_text(group["recovered"], group["attempted"], group["success_rate"], "")
            text = text.replace("  (", " (") if group["attempted"] else f"{group['impairments']} not attempted"
            p50 = group["mttr_seconds"]["p50"]
            cells.append(text + (f", MTTR {_seconds(p50)}" if p50 is not None else ""))
        row(name, cells)
    if summary.get("by_workload"):
        lines += ["", "  By workload (recovered within its RTO, of attempted; MTTR p50 / RTO)"]
        for workload, by in summary["by_workload"].items():
            cells = []
            for k in present:
                group = by[k]
                text = _success_text(group["within_rto"], group["attempted"], group["share_within_rto"], "")
                text = text.replace("  (", " (")
                p50 = group["mttr_p50_seconds"]
                cells.append(f"{text}, {_seconds(p50)} / {_seconds(by['rto_seconds'])}" if group["attempted"] else "-")
            row(workload, cells)
    lines += ["", "  By action (apply steps succeeded; rolled back)"]
    if not summary["by_action"]:
        lines.append("  no action ran")
    for name, by in summary["by_action"].items():
        cells = []
        for k in present:
            group = by.get(k)
            if not group or not group["applied"]:
                cells.append("-")
                continue
            text = _success_text(group["succeeded"], group["succeeded"] + group["failed"], group["success_rate"], "")
            text = text.replace("  (", " (")
            if group["rolled_back"]:
                text += f", {group['rolled_back']} rolled back"
            if group["capacity_returned"]:
                text += f", capacity returned {group['capacity_returned']}x"
            if group["running"]:
                text += f", {group['running']} running"
            cells.append(text)
        row(name, cells)
    return "\n".join(lines)


# --- the chart -------------------------------------------------------------------------------
COLORS = {"drill": "#4C72B0", "real": "#DD8452"}
OUTCOME_COLORS = {
    "recovered": "#55A868",
    "dry_run": "#8C8C8C",
    "skipped": "#CCB974",
    "correlated": "#64B5CD",
    "rolled_back": "#C44E52",
    "escalated": "#8172B2",
    "open": "#DDDDDD",
}


# Times are drawn on a log scale (sub-second detections beside half-hour recoveries); a time of
# zero is drawn at this floor.
LOG_FLOOR_SECONDS = 0.01


def draw_png(summary: dict[str, Any], path: Path, title: str) -> Path:
    """Five panels a person reads at a glance: MTTD and MTTR of each impairment, by type (drills
    and real recoveries in two colours, the median as a bar, log time), outcomes by type, the
    success rate of each action, and MTTR over time with each workload's RTO."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    points = summary["points"]
    types = sorted({p["impairment_type"] for p in points}) or ["(none)"]
    figure, axes = plt.subplot_mosaic(
        [["mttd", "mttr"], ["outcomes", "actions"], ["trend", "trend"]], figsize=(13, 12.5), constrained_layout=True
    )
    figure.suptitle(title, fontsize=14, fontweight="bold")
    for axis, field, label in (
        (axes["mttd"], "mttd_seconds", "MTTD: signal to detection"),
        (axes["mttr"], "mttr_seconds", "MTTR: detection to verified recovery"),
    ):
        _draw_distribution(axis, points, types, field, label)
    _draw_outcomes(axes["outcomes"], points, types)
    _draw_actions(axes["actions"], summary["by_action"])
    _draw_trend(axes["trend"], points, summary.get("by_workload") or {})
    if not points:
        figure.text(0.5, 0.5, "no impairments in this period", ha="center", va="center", fontsize=16, color="#555555")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=110)
    plt.close(figure)
    return path


def _draw_distribution(axis: Any, points: list[dict[str, Any]], types: list[str], field: str, label: str) -> None:
    axis.set_title(label, loc="left")
    axis.set_xlabel("seconds (log scale)")
    axis.set_xscale("log")
    counts = [sum(1 for p in points if p["impairment_type"] == t and p[field] is not None) for t in types]
    axis.set_yticks(range(len(types)), labels=[f"{t}\n(n={n})" for t, n in zip(types, counts, strict=True)])
    axis.grid(axis="x", alpha=0.3)
    offsets = {"drill": -0.15, "real": 0.15}
    for kind in KINDS:
        shown = False
        for row, name in enumerate(types):
            values = [
                max(p[field], LOG_FLOOR_SECONDS)
                for p in points
                if p["kind"] == kind and p["impairment_type"] == name and p[field] is not None
            ]
            if not values:
                continue
            y = row + offsets[kind]
            # Points, spread a little vertically so repeats stay visible, and the median as a tick.
            jitter = [y + ((i % 5) - 2) * 0.03 for i in range(len(values))]
            axis.scatter(values, jitter, s=28, color=COLORS[kind], alpha=0.75, label=None if shown else f"{kind}s")
            median = percentile(values, 50)
            axis.plot([median, median], [y - 0.12, y + 0.12], color=COLORS[kind], linewidth=3)
            axis.annotate(f"p50 {_seconds(median)}", (median, y + 0.14), fontsize=7, color=COLORS[kind])
            shown = True
    axis.set_ylim(-0.6, len(types) - 0.4)
    values = [max(p[field], LOG_FLOOR_SECONDS) for p in points if p[field] is not None]
    if values:
        axis.set_xlim(min(values) / 2, max(values) * 2)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="lower right", fontsize=8)
    else:
        axis.text(0.5, 0.5, "no data", transform=axis.transAxes, ha="center", color="#777777")


def _draw_outcomes(axis: Any, points: list[dict[str, Any]], types: list[str]) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_title("Outcomes by impairment type", loc="left")
    axis.set_xlabel("impairments")
    axis.set_yticks(range(len(types)), labels=types)
    left = [0] * len(types)
    for outcome, color in OUTCOME_COLORS.items():
        counts = [sum(1 for p in points if p["impairment_type"] == t and p["outcome"] == outcome) for t in types]
        if any(counts):
            axis.barh(range(len(types)), counts, left=left, color=color, label=outcome.replace("_", " "))
            left = [a + b for a, b in zip(left, counts, strict=True)]
    axis.grid(axis="x", alpha=0.3)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if any(left):
        axis.legend(loc="lower right", fontsize=8)


def _draw_actions(axis: Any, by_action: dict[str, Any]) -> None:
    axis.set_title("Action success rate (apply steps)", loc="left")
    names = list(by_action)
    axis.set_xlim(0, 1.25)
    axis.set_xticks([0, 0.25, 0.5, 0.75, 1], labels=["0%", "25%", "50%", "75%", "100%"])
    axis.grid(axis="x", alpha=0.3)
    if not names:
        axis.text(0.5, 0.5, "no action ran", transform=axis.transAxes, ha="center", color="#777777")
        return
    axis.set_yticks(range(len(names)), labels=names)
    offsets = {"drill": -0.2, "real": 0.2}
    for kind in KINDS:
        labelled = False
        for row, name in enumerate(names):
            group = by_action[name].get(kind) or {}
            total = group.get("succeeded", 0) + group.get("failed", 0)
            if not total:
                continue
            rate = group["succeeded"] / total
            axis.barh(
                row + offsets[kind],
                rate,
                height=0.38,
                color=COLORS[kind],
                label=None if labelled else f"{kind}s",
            )
            axis.text(
                rate + 0.01, row + offsets[kind], f"{group['succeeded']}/{total} ({rate:.0%})", va="center", fontsize=8
            )
            labelled = True
    axis.legend(loc="lower right", fontsize=8)


def _draw_trend(axis: Any, points: list[dict[str, Any]], objectives: dict[str, Any]) -> None:
    """MTTR of each recovery by when it was detected (log time), the daily median as a line, and
    each workload's RTO as a dashed line."""
    axis.set_title("MTTR over time (daily median as a line; dashed: a workload's RTO)", loc="left")
    axis.set_ylabel("seconds (log scale)")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    shown = False
    for kind in KINDS:
        dated = sorted(
            (datetime.fromisoformat(str(p["detected_at"])), max(p["mttr_seconds"], LOG_FLOOR_SECONDS))
            for p in points
            if p["kind"] == kind and p["mttr_seconds"] is not None and p.get("detected_at")
        )
        if not dated:
            continue
        axis.scatter(
            [d for d, _ in dated], [v for _, v in dated], s=18, color=COLORS[kind], alpha=0.6, label=f"{kind}s"
        )
        by_day: dict[Any, list[float]] = defaultdict(list)
        for when, value in dated:
            by_day[when.date()].append(value)
        days = sorted(by_day)
        medians = [percentile(by_day[d], 50) for d in days]
        axis.plot([datetime.combine(d, time(12), dated[0][0].tzinfo) for d in days], medians, color=COLORS[kind])
        shown = True
    for workload, objective in list(objectives.items())[:6]:
        axis.axhline(objective["rto_seconds"], linestyle="--", linewidth=1, color="#555555")
        axis.annotate(
            f"RTO {workload} {_seconds(objective['rto_seconds'])}",
            (0.005, objective["rto_seconds"]),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            color="#555555",
            va="bottom",
        )
    if shown:
        axis.legend(loc="upper right", fontsize=8)
        axis.tick_params(axis="x", labelrotation=20)
    else:
        axis.text(0.5, 0.5, "no recovery in this period", transform=axis.transAxes, ha="center", color="#777777")
