"""recoveryctl: the operator CLI, against the local emulator or a deployed stack alike.

One command set (drill, scenarios, status, show, report, pause/resume, plans, config, approve/
reject) for both targets, so an on-call who drilled locally knows the deployed commands. The
target is --local (default: the drills recorded under the state directory) or --deployed
(the stack, found through its CloudFormation outputs), or RECOVERYCTL_TARGET. Exit codes: 0
done, 1 the recovery did not succeed, 2 a usage or setup error, 141 the reader went away.

Usage: docs/operations.md#the-cli
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from recoveryctl import cli_config, readiness
from recoveryctl.cli_common import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    STACK_ENV,
    TARGET_ENV,
    CommandError,
)
from recoveryctl.cli_common import actor as _actor
from recoveryctl.cli_common import backend as _backend
from recoveryctl.cli_common import print_json as _print_json
from recoveryctl.cli_common import progress as _progress


def _target_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("target")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--local", dest="target", action="store_const", const="local", help="the local emulator's state (default)"
    )
    where.add_argument(
        "--deployed", dest="target", action="store_const", const="deployed", help="the deployed stack (AWS)"
    )
    group.add_argument(
        "--stack",
        default=os.environ.get(STACK_ENV, "ImpairmentRecovery"),
        help="the deployed stack's name (default ImpairmentRecovery, or RECOVERYCTL_STACK)",
    )
    group.add_argument("--region", help="the deployed stack's region (default: your AWS configuration)")
    group.add_argument("--state-dir", type=Path, help="local state (default .recoveryctl/, or RECOVERYCTL_STATE_DIR)")
    group.add_argument("--cdk-out", default="cdk.out", type=Path, help="the synthesized cloud assembly (cdk.out)")
    group.add_argument("--template", type=Path, help="a CloudFormation template instead of --cdk-out")
    return options


def _parser() -> argparse.ArgumentParser:
    target = _target_options()
    parser = argparse.ArgumentParser(
        prog="recoveryctl",
        description="Operate the impairment recovery system, locally (emulator) or deployed.",
        epilog="Each command takes --local (default) or --deployed [--stack NAME] [--region REGION]; "
        "RECOVERYCTL_TARGET=deployed makes --deployed the default.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    drill = commands.add_parser(
        "drill",
        parents=[target],
        help="run a recovery drill (emulator: a scenario; deployed: through an alarm)",
        description="Locally: build a sample workload from the synthesized stack in the emulator, inject the "
        "scenario's fault, follow detection, recovery and verification to the end, and record it for status, "
        "show and report. Deployed: set an alarm to ALARM (SetAlarmState) and follow the recovery it starts.",
    )
    drill.add_argument("--scenario", help="a built-in scenario name or the path of a scenario file (local)")
    drill.add_argument("--alarm", help="the alarm to set to ALARM (with --deployed)")
    drill.add_argument("--timeout", type=float, default=900, help="seconds to follow a deployed drill (default 900)")
    drill.add_argument("--poll-seconds", type=float, default=5, help=argparse.SUPPRESS)
    drill.add_argument("--json", action="store_true", help="print one JSON object instead of the timeline")
    drill.add_argument(
        "--seed",
        type=int,
        help="the seed of the order in which concurrent invocations interleave (local; default: the scenario's, "
        "else random; the report says which ran: pass it again to replay the drill exactly)",
    )
    drill.add_argument(
        "--workers",
        type=_positive_int,
        help="Lambda invocations in flight at once (local; default: the scenario's, else 8)",
    )

    commands.add_parser("scenarios", help="list the built-in drill scenarios")

    status = commands.add_parser("status", parents=[target], help="open impairments and recent recoveries")
    status.add_argument("--since", default="7d", help="how far back (30d, 12h, 45m, 2w, or a date; default 7d)")
    status.add_argument("--limit", type=int, default=20, help="recent recoveries shown (default 20)")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    show = commands.add_parser("show", parents=[target], help="one impairment's timeline and execution history")
    show.add_argument("impairment_id", metavar="ID", help="the impairment id (the execution's name)")
    show.add_argument("--json", action="store_true", help="machine-readable output, with the full history")

    report = commands.add_parser("report", parents=[target], help="MTTD / MTTR percentiles and success rates")
    report.add_argument("--since", default="30d", help="how far back (30d, 12h, 2w, or a date; default 30d)")
    report.add_argument("--png", type=Path, metavar="FILE", help="also draw the report as a PNG chart")
    report.add_argument("--workload", metavar="NAME", help="only this workload's impairments")
    report.add_argument("--json", action="store_true", help="machine-readable output")

    pause = commands.add_parser("pause", parents=[target], help="pause every automatic action (kill switch)")
    pause.add_argument("--reason", default="", help="why (shown by status and in escalations)")
    commands.add_parser("resume", parents=[target], help="resume automatic recovery")

    cli_config.add_parsers(commands, target)
    readiness.add_parser(commands, target)

    for name, text in (("approve", "approve a recovery waiting for a human"), ("reject", "reject it")):
        decision = commands.add_parser(name, parents=[target], help=text)
        decision.add_argument("impairment_id", metavar="ID")
        decision.add_argument("--reason", default="", help="why (recorded with the decision)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "target", "unset") is None:
        args.target = os.environ.get(TARGET_ENV, "local").strip().lower() or "local"
    handlers = {
        "scenarios": _scenarios,
        "drill": _drill,
        "status": _status,
        "show": _show,
        "report": _report,
        "pause": _pause,
        "resume": _pause,
        "plans": cli_config.plans,
        "config": cli_config.config,
        "readiness": readiness.run,
        "approve": _decide,
        "reject": _decide,
    }
    from recoveryctl.backends import BackendError
    from recoveryctl.state import StateError
    from recoveryctl.views import UsageError

    try:
        if getattr(args, "target", "local") not in ("local", "deployed"):
            raise CommandError(f"{TARGET_ENV}={args.target!r}: use local or deployed")
        code = handlers[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # `recoveryctl status | head`: the reader has what it wanted. Exit quietly: point stdout
        # at devnull so the interpreter's final flush does not fail again (Python's documented way).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except CommandError as exc:
        print(f"recoveryctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except (BackendError, StateError, UsageError) as exc:
        print(f"recoveryctl: {exc}", file=sys.stderr)
        return EXIT_USAGE


# --- drills ----------------------------------------------------------------------------------
def _scenarios(args: argparse.Namespace) -> int:
    from recoveryctl.scenario import BUILT_IN, built_in, load

    names = built_in()
    width = max(map(len, names), default=0) + 1
    for name in names:
        print(f"{name:<{width}} {load(str(BUILT_IN / f'{name}.json')).description}")
    return EXIT_OK


def _drill(args: argparse.Namespace) -> int:
    if args.target == "deployed":
        return _drill_deployed(args)
    if args.alarm:
        raise CommandError("--alarm drills a deployed stack: add --deployed (locally, use --scenario)")
    if not args.scenario:
        raise CommandError("which scenario? pass --scenario NAME|FILE (see `recoveryctl scenarios`)")
    from recoveryctl import drill
    from recoveryctl.emulator.template import TemplateError, find_template
    from recoveryctl.scenario import ScenarioError, load
    from recoveryctl.state import LocalState

    state = LocalState(args.state_dir)
    try:
        scenario = load(args.scenario)
        # A scenario with its own deployment (several regions, say) synthesizes it; others run cdk.out's.
        template = None if scenario.deployment else (args.template or find_template(args.cdk_out))
        switches = state.switches()
        if not args.json:
            against = template or "its own deployment (synthesized into the state directory)"
            print(f"running drill {scenario.name} against {against} ...", file=sys.stderr)
            if switches.get("paused"):
                print("note: automatic recovery is paused in the local state (`recoveryctl resume`)", file=sys.stderr)
            if switches.get("disabled_plans"):
                print(f"note: disabled plans: {', '.join(switches['disabled_plans'])}", file=sys.stderr)
        with drill.Drill(
            scenario,
            Path(template) if template else None,
            state.directory / "synth",
            seed=args.seed,
            workers=args.workers,
        ) as running:
            state.seed(running.emulator)  # the switches set with pause / plans disable
            progress = None
            if not args.json and sys.stderr.isatty():  # a person watching: say where the drill is
                progress = DrillProgress(running, sys.stderr)
                running.emulator.idle_hooks.append(progress)
            report = running.run()
            if progress is not None:
                progress.done()
            recorded = state.record_drill(running.emulator, report)
    except (ScenarioError, TemplateError, drill.DrillError) as exc:
        raise CommandError(str(exc)) from exc
    from recoveryctl import timeline

    print(drill.to_json(report) if args.json else timeline.format_timeline(report), flush=True)
    if not args.json:
        run = report["interleaving"]
        print(
            f"\n  seed {run['seed']}, {run['workers']} workers: {run['api_calls']} AWS calls interleaved "
            f"(digest {run['digest']}); replay with --seed {run['seed']}"
        )
        print(f"recorded in {recorded}; see `recoveryctl status` and `recoveryctl report`", file=sys.stderr)
    if report["expectation_met"]:
        return EXIT_OK
    failed = timeline.failures(report)
    print(f"recoveryctl: drill {report['scenario']} did not meet its expectation:", file=sys.stderr)
    if args.json:  # the timeline (stdout) says it otherwise
        for line in failed:
            print(f"  - {line}", file=sys.stderr)
    else:
        print(f"  {len(failed)} failure(s), listed under `expect` above", file=sys.stderr)
    return EXIT_FAILED


class DrillProgress:
    """While a local drill runs on a terminal: one status line on `stream`, rewritten in place,
    saying how far the drill's virtual clock got and which state each running execution is in;
    a line of its own when an execution starts or ends. Called by the emulator while executions
    run (an idle hook), at most every `interval` seconds of real time."""

    def __init__(self, running: Any, stream: Any, interval: float = 0.5) -> None:
        self.running = running
        self.stream = stream
        self.interval = interval
        self.seen: dict[str, str] = {}
        self.last: float | None = None
        self.status_shown = False

    def __call__(self) -> None:
        import time

        now = time.monotonic()
        if self.last is not None and now - self.last < self.interval:
            return
        self.last = now
        self._update(states=True)

    def done(self) -> None:
        """The drill settled: say how the executions not seen ending ended, end the status line."""
        self._update(states=False)
        if self.status_shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.status_shown = False

    def _update(self, states: bool) -> None:
        emulator = self.running.emulator
        where = []
        for region in emulator.every_region():
            for execution in region.executions():
                name, status = execution["name"], execution["status"]
                if self.seen.get(name) != status:
                    self.seen[name] = status
                    verb = "started" if status == "RUNNING" else status.lower()
                    self._line(f"{self._prefix()} execution {name} {verb}", final=True)
                if status == "RUNNING" and states:
                    entered = [
                        e for e in region.history(execution["executionArn"]) if e["type"].endswith("StateEntered")
                    ]
                    if entered:
                        where.append(f"{name}: {entered[-1]['stateEnteredEventDetails']['name']}")
        if where:
            self._line(f"{self._prefix()} {'; '.join(where)}", final=False)

    def _prefix(self) -> str:
        """The line's start ("  ... +125 s"): how far the drill's virtual clock got since it started."""
        from core import clock

        started = getattr(self.running, "started_at", None)
        return f"  ... +{(clock.utc_now() - started).total_seconds():.0f} s" if started else "  ..."

    def _line(self, text: str, final: bool) -> None:
        # "\r" and erase-line rewrite the status line in place on a terminal.
        self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        self.stream.flush()
        self.status_shown = not final


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _drill_deployed(args: argparse.Namespace) -> int:
    if args.scenario:
        raise CommandError(
            "scenarios run in the local emulator; a deployed stack is drilled through one of its alarms: "
            "--deployed --alarm NAME"
        )
    if not args.alarm:
        raise CommandError("which alarm? pass --alarm NAME (for example web-api-status-check)")
    from recoveryctl import deployed_drill

    backend = _backend(args)
    try:
        result = deployed_drill.run(
            backend, args.alarm, args.timeout, args.poll_seconds, _progress, actor=_actor(backend)
        )
    except deployed_drill.DrillTimeout as exc:
        raise CommandError(str(exc), EXIT_FAILED) from exc
    if args.json:
        _print_json(result)
    else:
        times = []
        if result["mttd_seconds"] is not None:
            times.append(f"MTTD {result['mttd_seconds']:.1f} s")
        if result["mttr_seconds"] is not None:
            times.append(f"MTTR {result['mttr_seconds']:.1f} s")
        print(f"Drill of {backend.describe()} through alarm {result['alarm']}")
        print(f"  execution  {result['execution']['name']}: {result['execution']['status']}")
        print(f"  states     {' -> '.join(result['states']) or '-'}")
        print(f"  outcome    {result['outcome']}" + (f" ({', '.join(times)})" if times else ""))
        if result["reason"] and result["outcome"] != "recovered":
            print(f"  reason     {result['reason']}")
        print(f"  details    recoveryctl show {result['impairment_id']} --deployed")
    return EXIT_OK if result["outcome"] == "recovered" else EXIT_FAILED


# --- reading ---------------------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    from recoveryctl import views

    since = views.parse_since(args.since)
    data = views.status(_backend(args), since, limit=args.limit)
    if args.json:
        _print_json(data)
    else:
        print(views.format_status(data, args.since))
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from recoveryctl import views

    backend = _backend(args)
    data = views.show(backend, args.impairment_id)
    if data is None:
        raise CommandError(
            f"no impairment {args.impairment_id} in {backend.describe()}: list them with "
            f"`recoveryctl status{' --deployed' if backend.target == 'deployed' else ''}`"
        )
    if args.json:
        _print_json(data)
    else:
        print(views.format_show(data))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from recoveryctl import report, views

    since = views.parse_since(args.since)
    backend = _backend(args)
    records = backend.impairments(since=since)
    if args.workload:
        records = [r for r in records if r.get("workload") == args.workload]
    summary = report.summarize(records, backend.actions_of(records), since)
    where = backend.describe()
    if args.png:
        try:
            report.draw_png(summary, args.png, f"Impairment recovery, last {args.since} ({where})")
        except OSError as exc:
            raise CommandError(f"cannot write {args.png}: {exc.strerror}: pass --png with a writable path") from exc
    if args.json:
        _print_json({"target": where, **summary})
    else:
        print(report.format_report(summary, where, args.since))
        if not records:
            print(f"\nNo impairment was detected in the last {args.since}: widen --since, or run a drill.")
    if args.png:
        print(f"chart written to {args.png}", file=sys.stderr)
    return EXIT_OK


# --- changing ---------------------------------------------------------------------------------
def _pause(args: argparse.Namespace) -> int:
    backend = _backend(args)
    paused = args.command == "pause"
    reason = getattr(args, "reason", "") or ""
    backend.set_paused(paused, reason, _actor(backend))
    where = backend.describe()
    if paused:
        print(f"automatic recovery paused in {where}: impairments are recorded and escalated, nothing is acted on")
        if backend.target == "local":
            print("the next drill starts paused; `recoveryctl resume` undoes it")
    else:
        print(f"automatic recovery resumed in {where}")
    return EXIT_OK


def _decide(args: argparse.Namespace) -> int:
    approve = args.command == "approve"
    if args.target != "deployed":
        raise CommandError(
            "the local emulator has no recovery waiting between commands: each drill runs to its end, and its "
            "approvals are scripted in the scenario. To answer a recovery waiting in AWS, add --deployed"
        )
    from recoveryctl import approvals

    backend = _backend(args)
    try:
        decided = approvals.decide(backend, args.impairment_id, approve, args.reason, _actor(backend))
    except approvals.ApprovalError as exc:
        raise CommandError(str(exc), exc.exit_code) from exc
    verb = "approved: the recovery goes on" if approve else "rejected: the recovery stops and is escalated"
    print(f"{args.impairment_id} {verb} (by {decided['by']})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
