"""recoveryctl's configuration commands: `plans` (list, validate, enable, disable) and `config
validate`, which checks a whole `recovery` configuration as `cdk synth` does (infra/validation.py),
without synthesizing: every problem with its field's path, or a summary of what it deploys."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from recoveryctl import infra_importable
from recoveryctl.cli_common import EXIT_FAILED, EXIT_OK, CommandError, actor, backend, print_json


def add_parsers(commands: Any, target: argparse.ArgumentParser) -> None:
    """The `plans` and `config` commands, under the CLI's subcommands."""
    plans_parser = commands.add_parser("plans", help="list, validate, enable or disable recovery plans")
    plan_commands = plans_parser.add_subparsers(dest="plans_command", required=True, metavar="ACTION")
    plans_list = plan_commands.add_parser("list", parents=[target], help="the stack's plans and whether enabled")
    plans_list.add_argument("--json", action="store_true", help="machine-readable output")
    validate = plan_commands.add_parser("validate", help="validate plans in a JSON file or a cdk.json")
    validate.add_argument("file", type=Path, metavar="FILE")
    for name, text in (("enable", "enable a disabled plan"), ("disable", "disable a plan at run time")):
        plan_commands.add_parser(name, parents=[target], help=text).add_argument("plan", metavar="NAME")

    config_parser = commands.add_parser("config", help="validate a whole recovery configuration")
    config_commands = config_parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "validate",
        help="every problem of a configuration, as cdk synth checks it (exit 1), or what it deploys",
        description="FILE holds the `recovery` object (what -c recovery_config=FILE and CONFIG=FILE take), or is "
        "a cdk.json whose context has it. Exit codes: 0 valid, 1 invalid, 2 the file cannot be read.",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")


def config(args: argparse.Namespace) -> int:
    """recoveryctl config validate FILE [--json]."""
    infra_importable()
    from infra.validation import check, summary

    data = _read_json(args.file)
    raw = _recovery_of(args.file, data) if isinstance(data, dict) and isinstance(data.get("context"), dict) else data
    checked = check(raw)
    if checked.config is None:
        if args.json:
            print_json({"file": str(args.file), "valid": False, "problems": [p.as_dict() for p in checked.problems]})
        else:
            count = len(checked.problems)
            print(f"{args.file}: {count} problem{'s' if count != 1 else ''} in the recovery configuration:")
            for problem in checked.problems:
                print(f"  - {problem}")
        return EXIT_FAILED
    brief = summary(checked.config)
    if args.json:
        print_json({"file": str(args.file), "valid": True, **brief})
        return EXIT_OK
    print(f"{args.file}: valid; stack {brief['stack_name']}")
    for key in ("workloads", "plans"):
        print(f"  {key} ({len(brief[key])}): {', '.join(brief[key]) or 'none'}")
    regions = brief["regions"]
    print(f"  regions: {regions[0]} (primary), {', '.join(regions[1:])}" if regions else "  regions: one stack")
    print(f"  member accounts ({len(brief['member_accounts'])}): {', '.join(brief['member_accounts']) or 'none'}")
    for warning in brief["warnings"]:
        print(f"  warning: {warning}")
    return EXIT_OK


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from exc


def _recovery_of(path: Path, cdk_json: dict[str, Any]) -> dict[str, Any]:
    """A cdk.json's context.recovery (an object, or a string of JSON as `-c recovery=...` gives it)."""
    recovery = cdk_json["context"].get("recovery")
    if isinstance(recovery, str):
        try:
            recovery = json.loads(recovery)
        except ValueError as exc:
            raise CommandError(f"{path}: context.recovery is not valid JSON: {exc}") from exc
    if not isinstance(recovery, dict):
        raise CommandError(f"{path} is a cdk.json without a context.recovery object: nothing to validate")
    return recovery


def plans(args: argparse.Namespace) -> int:
    """recoveryctl plans list | validate FILE | enable NAME | disable NAME."""
    if args.plans_command == "validate":
        return _validate_plans(args.file)
    target = backend(args)
    stack_plans = target.plans()
    names = [p["name"] for p in stack_plans]
    if args.plans_command == "list":
        disabled = set(target.switches().get("disabled_plans") or [])
        rows = [
            {
                "name": p["name"],
                "enabled": p["name"] not in disabled,
                "impairment_types": p["match"]["impairment_types"],
                "severity": f"{p['match'].get('min_severity', 'low')}..{p['match'].get('max_severity', 'critical')}",
                "workloads": p["match"].get("workloads") or "all",
                "actions": [s["action"] for s in p["steps"]],
                "dry_run": bool(p.get("dry_run")),
            }
            for p in stack_plans
        ]
        if args.json:
            print_json(rows)
            return EXIT_OK
        print(f"Plans of {target.describe()}, in the order they are matched")
        if not rows:
            print("  none: every impairment is escalated to a human (add plans under recovery.plans in cdk.json)")
        for row in rows:
            state = "enabled " if row["enabled"] else "DISABLED"
            workloads = "" if row["workloads"] == "all" else f", workloads {', '.join(row['workloads'])}"
            print(f"  {state}  {row['name']}{' (dry run)' if row['dry_run'] else ''}")
            print(f"            {', '.join(row['impairment_types'])}, severity {row['severity']}{workloads}")
            print(f"            {' -> '.join(row['actions'])}")
        unknown = sorted(disabled - set(names))
        if unknown:
            print(f"  (disabled but not in the stack: {', '.join(unknown)})")
        return EXIT_OK
    if args.plan not in names:
        raise CommandError(
            f"no plan named {args.plan!r} in {target.describe()}: its plans are {', '.join(names) or 'none'} "
            "(see `recoveryctl plans list`)"
        )
    enable = args.plans_command == "enable"
    target.set_plan_enabled(args.plan, enable, actor(target))
    print(f"plan {args.plan} {'enabled' if enable else 'disabled'} in {target.describe()}")
    if not enable:
        print("impairments it would have handled go to the next matching plan, or to a human")
    return EXIT_OK


def _validate_plans(path: Path) -> int:
    from actions.plans import PlanError, parse_plans

    data = _read_json(path)
    if isinstance(data, dict) and isinstance(data.get("context"), dict):  # a cdk.json
        recovery = _recovery_of(path, data)
        if "plans" not in recovery:
            raise CommandError(f"{path} has no context.recovery.plans: nothing to validate")
        data = recovery["plans"]
    elif isinstance(data, dict) and "plans" in data:
        data = data["plans"]
    if not isinstance(data, list):
        raise CommandError(f'{path}: expected a list of plans, an object with "plans", or a cdk.json')
    try:
        parsed = parse_plans(data)
    except PlanError as exc:
        raise CommandError(f"{path}: {exc}") from exc
    print(f"{path}: {len(parsed)} valid plan(s): {', '.join(p.name for p in parsed) or 'none'}")
    return EXIT_OK
