"""`recoveryctl readiness`: whether each plan can act now (functions/readiness/), as a table.

Locally it deploys a drill scenario's workload in the emulator and runs the readiness function
there now (--cap-at-desired first sets the drill group's MaxSize to its desired capacity, a plan
made unready); --deployed reads the results the scheduled check recorded.
"""

from __future__ import annotations

import argparse
from typing import Any

from recoveryctl.cli_common import EXIT_FAILED, EXIT_OK, CommandError, print_json

HANDLER = "readiness.handler.handler"


def add_parser(commands: Any, target: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("readiness", parents=[target], help="whether each plan can act now")
    parser.add_argument("--json", action="store_true", help="the results as JSON")
    parser.add_argument(
        "--scenario", default="instance-failure", help="local: the drill scenario whose deployment is checked"
    )
    parser.add_argument(
        "--cap-at-desired", action="store_true", help="local: set the drill group's MaxSize to its desired capacity"
    )


def run(args: argparse.Namespace) -> int:
    results = _deployed(args) if args.target == "deployed" else _local(args)
    if args.json:
        print_json(results)
    else:
        print(format_table(results))
    return EXIT_OK if all(r["ready"] for r in results) else EXIT_FAILED


def _local(args: argparse.Namespace) -> list[dict[str, Any]]:
    from recoveryctl.drill import Drill, DrillError
    from recoveryctl.emulator.template import TemplateError, find_template
    from recoveryctl.scenario import ScenarioError, load

    try:
        scenario = load(args.scenario)
        template = None if scenario.deployment else (args.template or find_template(args.cdk_out))
        with Drill(scenario, template, seed=1) as drill:
            home = drill.home
            assert home is not None
            if args.cap_at_desired:
                cap_at_desired(home, drill.workload)
            names = [n for n, f in home.functions.items() if f.handler == HANDLER]
            if not names:
                raise CommandError("the stack has no readiness function (readiness_interval_minutes is 0)")
            ok, result = home.invoke(names[0], {"source": "recoveryctl"}, source="recoveryctl")
    except (DrillError, TemplateError, ScenarioError) as exc:
        raise CommandError(str(exc), EXIT_FAILED) from exc
    if not ok:
        raise CommandError(f"the readiness function failed: {result['errorMessage']}", EXIT_FAILED)
    return list(result["results"])


def cap_at_desired(emulator: Any, workload: dict[str, Any]) -> None:
    """Leave the drill group no headroom: MaxSize = desired (a plan that scales out is not ready)."""
    group = workload.get("auto_scaling_group")
    if not group:
        raise CommandError(f"workload {workload.get('name')} has no auto_scaling_group to cap")
    with emulator.as_account(workload.get("account_id")):
        client = emulator.client("autoscaling")
        (found,) = client.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
        client.update_auto_scaling_group(AutoScalingGroupName=group, MaxSize=found["DesiredCapacity"])


def _deployed(args: argparse.Namespace) -> list[dict[str, Any]]:
    from recoveryctl.backends import BackendError, DeployedBackend

    backend = DeployedBackend(args.stack, args.region)
    try:
        plans = [p["name"] for p in backend.plans()]
        return backend.store().readiness.get_many(plans)
    except BackendError as exc:
        raise CommandError(str(exc), EXIT_FAILED) from exc


def format_table(results: list[dict[str, Any]]) -> str:
    """plan, workload, ready, and each failing check with its evidence (a row per workload); then
    what could not be checked here (the permissions, locally), once each."""
    if not results:
        return "no readiness results (no plans, or the check has not run yet)"
    rows = [("PLAN", "WORKLOAD", "READY", "FAILING CHECKS")]
    for result in results:
        if not result["workloads"]:  # nothing to be ready for: not "yes", which reads as checked
            rows.append((result["plan"], "-", "n/a", "no configured workload has a scope this plan acts on"))
        for w in result["workloads"]:
            failing = "; ".join(f"{c['name']}: {c['evidence']}" for c in w["checks"] if not c["ok"])
            rows.append((result["plan"], w["workload"], "yes" if w["ready"] else "NO", failing or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    checked = results[0].get("checked_at", "")
    unchecked = dict.fromkeys(n for r in results for w in r["workloads"] for n in w.get("not_checked", []))
    notes = [f"not checked: {n}" for n in unchecked]
    return "\n".join([*lines, "", *notes, f"checked at {checked}"])
