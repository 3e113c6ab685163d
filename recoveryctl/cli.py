"""recoveryctl: the operator CLI.

recoveryctl drill --scenario NAME|FILE [--json]   run a recovery drill in the local emulator
recoveryctl scenarios                             list the built-in scenarios
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recoveryctl", description="Operate the impairment recovery system.")
    commands = parser.add_subparsers(dest="command", required=True)

    drill = commands.add_parser(
        "drill",
        help="run a recovery drill end to end in the local emulator",
        description="Build a sample workload from the synthesized stack in the local emulator, inject the "
        "scenario's fault, and follow detection, recovery and verification to the end.",
    )
    drill.add_argument("--scenario", required=True, help="a built-in scenario name or the path of a scenario file")
    drill.add_argument("--json", action="store_true", help="print one JSON object instead of the timeline")
    drill.add_argument("--cdk-out", default="cdk.out", type=Path, help="the synthesized cloud assembly (cdk.out)")
    drill.add_argument("--template", type=Path, help="a CloudFormation template instead of --cdk-out")

    commands.add_parser("scenarios", help="list the built-in drill scenarios")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "scenarios":
        from recoveryctl.scenario import BUILT_IN, built_in, load

        for name in built_in():
            print(f"{name:<26} {load(str(BUILT_IN / f'{name}.json')).description}")
        return EXIT_OK
    return _drill(args)


def _drill(args: argparse.Namespace) -> int:
    from recoveryctl import drill
    from recoveryctl.emulator.template import TemplateError, find_template
    from recoveryctl.scenario import ScenarioError, load

    try:
        scenario = load(args.scenario)
        template = args.template or find_template(args.cdk_out)
        if not args.json:
            print(f"running drill {scenario.name} against {template} ...", file=sys.stderr)
        report = drill.run(scenario, Path(template))
    except (ScenarioError, TemplateError, drill.DrillError) as exc:
        print(f"recoveryctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(drill.to_json(report) if args.json else drill.format_timeline(report))
    return EXIT_OK if report["expectation_met"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
