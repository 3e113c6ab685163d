"""`recoveryctl report` against each workload's recovery time objective: the share of attempts
recovered within it, what an escalation counts as, and the chart's log-time and trend panels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recoveryctl import report

START = datetime(2026, 11, 1, tzinfo=UTC)


def record(n: int, workload: str, outcome: str, mttr: float | None, rto: int | None, drill: bool = False) -> dict:
    found = {
        "impairment_id": f"imp-{n}",
        "workload": workload,
        "impairment_type": "instance_failure",
        "outcome": outcome,
        "drill": drill,
        "mttd_seconds": 0.4,
        "detected_at": (START + timedelta(hours=n)).isoformat(),
    }
    if mttr is not None:
        found["mttr_seconds"] = mttr
    if rto is not None and outcome == "recovered":  # Finalize judges what recovered
        found |= {"rto_seconds": rto, "within_rto": mttr <= rto}
    return found


def test_the_share_within_rto_counts_every_attempt_and_an_escalation_misses_it():
    records = [
        record(1, "web", "recovered", 120, 300),
        record(2, "web", "recovered", 420, 300),
        record(3, "web", "escalated", None, None),  # a human had to: not within the objective
        record(4, "web", "skipped", None, None),  # not an attempt
        record(5, "web", "recovered", 60, 300, drill=True),
        record(6, "db", "recovered", 30, None),  # no objective: not in the section
    ]
    summary = report.summarize(records, {})
    assert list(summary["by_workload"]) == ["web"]
    web = summary["by_workload"]["web"]
    assert web["rto_seconds"] == 300
    assert web["real"] == {"attempted": 3, "within_rto": 1, "share_within_rto": 0.3333, "mttr_p50_seconds": 270.0}
    assert web["drill"]["within_rto"] == 1 and web["drill"]["attempted"] == 1
    text = report.format_report(summary, "here", "30d")
    assert "By workload (recovered within its RTO" in text
    assert "1 of 3 (33%), 4.5 min / 5.0 min" in text


def test_the_latest_objective_is_the_one_reported_when_it_changed():
    records = [record(1, "web", "recovered", 100, 600), record(2, "web", "recovered", 100, 300)]
    assert report.summarize(records, {})["by_workload"]["web"]["rto_seconds"] == 300


def test_no_objective_no_section():
    summary = report.summarize([record(1, "web", "recovered", 100, None)], {})
    assert summary["by_workload"] == {}
    assert "By workload" not in report.format_report(summary, "here", "30d")


def test_the_chart_draws_time_on_a_log_scale_and_a_trend_with_the_rto(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    saved = {}
    monkeypatch.setattr(plt, "close", lambda figure: saved.setdefault("figure", figure))
    records = [record(n, "web", "recovered", 0.0 if n == 0 else 30.0 * n, 300) for n in range(0, 60, 7)]
    path = report.draw_png(report.summarize(records, {}), tmp_path / "chart.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = {a.get_title(loc="left").split(":")[0]: a for a in saved["figure"].axes}
    assert axes["MTTD"].get_xscale() == "log" and axes["MTTR"].get_xscale() == "log"
    trend = next(a for title, a in axes.items() if title.startswith("MTTR over time"))
    assert trend.get_yscale() == "log"
    assert 300 in [line.get_ydata()[0] for line in trend.get_lines() if line.get_linestyle() == "--"]
    # a recovery of 0 s is drawn at the log floor, not dropped
    assert axes["MTTR"].get_xlim()[0] <= report.LOG_FLOOR_SECONDS
