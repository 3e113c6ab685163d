"""The benchmark results as a markdown table: one row per measured figure, its target, and
whether it is met."""

from __future__ import annotations

from typing import Any


def _yes(value: bool | None) -> str:
    if value is None:
        return "n/a"
    return "yes" if value else "**no**"


def _dollars(value: float) -> str:
    return f"${value:.6f}"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, met) for every part present in `results`."""
    out: list[tuple[str, str, str, str]] = []
    cold = results.get("cold_start")
    if cold:
        out.append(("cold start: `import boto3` (median)", f"{cold['boto3_median_ms']} ms", "baseline", ""))
        floor = cold.get("floor")
        if floor:
            out.append(
                (
                    f"cold start: the stack's floor ({floor['what']})",
                    f"{floor['median_ms']} ms = {floor['ratio_to_boto3']}x boto3",
                    f"<= {cold['target_max_ratio']}x",
                    _yes(floor["meets_target"]),
                )
            )
        for h in cold["handlers"]:
            heavy = ", ".join(f"{p['package']} {p['ms']} ms" for p in h["heaviest_imports"][:3])
            out.append(
                (
                    f"cold start: `{h['module']}` ({heavy})",
                    f"{h['median_ms']} ms = {h['ratio_to_boto3']}x boto3"
                    + (f" = {h['ratio_to_floor']}x the floor" if "ratio_to_floor" in h else ""),
                    f"<= {cold['target_max_ratio']}x",
                    _yes(h["meets_target"]),
                )
            )
    per = results.get("per_recovery")
    if per:
        targets = per["targets"]
        for s in per["scenarios"]:
            single = s["single_action_recovery"]
            met = s.get("meets_target", {})
            out.append(
                (
                    f"per recovery: `{s['scenario']}` ({s['outcome']}, {s['actions_applied']} action(s))",
                    f"{s['transitions']} transitions, {s['api_calls']} API calls"
                    + (
                        f" ({s['api_calls_warm']} with warm credentials: {s['api_calls_assume_role']} AssumeRole)"
                        if s.get("api_calls_assume_role")
                        else ""
                    )
                    + ","
                    f" {s['lambda_invocations']} invocations, {s['eventbridge_custom_events']} events,"
                    f" {s['dynamodb_writes']} DynamoDB writes,"
                    f" {_dollars(s['dollars'])}",
                    f"<= {targets['max_transitions_single_action']} transitions, "
                    f"<= {targets['max_api_calls_single_action']} API calls"
                    if single
                    else "(single-action recoveries from one signal only)",
                    f"transitions {_yes(met['transitions'])}, API calls {_yes(met['api_calls'])}" if single else "n/a",
                )
            )
    idle = results.get("idle")
    if idle:
        for c in idle["configurations"]:
            out.append(
                (
                    f"idle: {c['groups']} groups x {c['instances_per_group']} instances ({c['instances']})",
                    f"{c['api_calls_per_hour']:.0f} API calls/h ({c['api_calls_per_group_hour']:.0f} per group),"
                    f" {c['lambda_invocations_per_hour']:.0f} invocations/h, {_dollars(c['dollars_per_hour'])}/h",
                    "sweeps and readiness only; flat in instances/group; <= linear in groups",
                    _yes(c["only_sweeps"] and c["executions_started"] == 0),
                )
            )
        quiet = idle.get("events_only")
        if quiet:
            out.append(
                (
                    f"idle, events only (`sweep_interval_minutes: 0`): {quiet['groups']} groups x"
                    f" {quiet['instances_per_group']} instances",
                    f"{quiet['api_calls_per_hour']:.0f} API calls/h,"
                    f" {quiet['lambda_invocations_per_hour']:.0f} invocations/h",
                    "0 calls/h",
                    _yes(quiet["api_calls_per_hour"] == 0 and quiet["lambda_invocations_per_hour"] == 0),
                )
            )
        out.append(
            (
                "idle: scaling",
                f"flat in instances/group: {_yes(idle['flat_in_instances_per_group'])}; "
                f"at most linear in groups: {_yes(idle['at_most_linear_in_groups'])}",
                "both",
                _yes(idle["meets_target"]),
            )
        )
    storm = results.get("storm")
    if storm:
        from bench.storm import not_run_line

        for s in storm["sizes"]:
            out.append(_storm_row(s))
        for s in storm["not_run"]:
            out.append(
                (
                    f"storm: {s['groups']} groups, {s['impaired_instances']} impaired",
                    not_run_line(s),
                    "run within the budget",
                    "**no**",
                )
            )
    return out


def _storm_row(s: dict[str, Any]) -> tuple[str, str, str, str]:
    from bench.storm import meets_target

    cap = "no cap configured" if s["blast_radius_cap"] is None else f"cap {s['blast_radius_cap']:.0%}"
    return (
        f"storm: {s['groups']} groups, {s['impaired_instances']} impaired, each signal x2",
        f"{s['executions_started']} executions for {s['impaired_instances']} impaired, {s['lost_impairments']} lost,"
        f" max share acted on {s['max_share_acted_on']:.0%} ({cap}),"
        f" {s['pages']} pages for {s['groups_affected']} groups affected,"
        f" {s['actions_taken']} actions, {s['api_calls']} API calls,"
        f"{_hottest(s)}"
        f" {s['wall_seconds']:.1f} s ({s['seconds_per_impaired']} s per impaired){_machine(s)}",
        "executions = impaired, 0 lost, cap kept, pages <= groups affected",
        _yes(meets_target(s)),
    )


def _hottest(s: dict[str, Any]) -> str:
    """The most written DynamoDB item of a storm (bench/hot_items.py), when measured."""
    hot = s.get("dynamodb_hot_items")
    if not hot:
        return ""
    top = hot[0]
    return (
        f" hottest item {top['item']}: {top['writes']} writes ({top['per_recovery']} per recovery),"
        f" at most {s['dynamodb_max_item_writes_per_second']} writes of one item in an emulated second,"
    )


def _machine(s: dict[str, Any]) -> str:
    """A storm's CPU seconds and the machine's load around it (a shared machine's wall time
    varies with the other work; older results have neither)."""
    beside = f", run beside {' and '.join(s['ran_beside'])}" if s.get("ran_beside") else ""
    if s.get("cpu_seconds") is None:
        return beside
    load = [f"{v:.1f}" for v in s.get("load_average") or [] if v is not None]
    return f", {s['cpu_seconds']:.0f} CPU s" + (f", load {' to '.join(load)}" if load else "") + beside


def markdown(results: dict[str, Any]) -> str:
    lines = ["| figure | measured | target | met |", "|---|---|---|---|"]
    for figure, measured, target, met in rows(results):
        cells = (c.replace("|", "\\|") for c in (figure, measured, target, met))
        lines.append("| " + " | ".join(cells) + " |")
    meta = results.get("meta", {})
    header = "# Benchmark results\n\n"
    if meta:
        header += (
            f"Measured {meta.get('measured_at', '')} at commit {meta.get('commit', 'unknown')}"
            f" on {meta.get('machine', '')},"
            f" Python {meta.get('python', '')}; `make bench` took {meta.get('wall_seconds', 0):.0f} s."
            " See docs/performance.md for what each figure means.\n\n"
        )
    return header + "\n".join(lines) + "\n"
