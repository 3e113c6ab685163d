"""`make bench`: run every benchmark, write bench/results.json and bench/results.md, print the table.

python -m bench.run [--only cold_start,per_recovery,idle,storm] [--runs 11] [--idle-minutes 20]
                    [--storm-budget 900] [--storm-sizes 10x300] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import goals, report

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "cdk.out" / "ImpairmentRecovery.template.json"
PARTS = ("cold_start", "per_recovery", "idle", "storm")


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git on PATH, fixed arguments
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    parser.add_argument("--runs", type=int, default=11, help="cold start: fresh interpreters per module")
    parser.add_argument("--idle-minutes", type=int, default=20, help="idle: virtual minutes simulated per fleet")
    parser.add_argument(
        "--storm-budget", type=float, default=None, help="storm: seconds to spend at most (default 900)"
    )
    parser.add_argument(
        "--storm-sizes",
        type=_sizes,
        default=None,
        help="storm: GROUPSxINSTANCES,... (default 10x30,10x150,10x300; a third of each group is impaired)",
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not args.template.exists():
        print(f"bench: no synthesized template at {args.template}: run `make synth` first", file=sys.stderr)
        return 2

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    largest = None
    # Cold start is timed alone (ratios of import times); then the largest storm starts in a
    # process of its own and the other parts run beside it (bench/storm.py: Largest).
    for part in sorted(parts, key=lambda p: p != "cold_start"):
        if part != "cold_start" and "storm" in parts and largest is None:
            largest = _start_largest_storm(args, [p for p in parts if p != "cold_start"])
        began = time.perf_counter()
        print(f"bench: {part} ...", file=sys.stderr, flush=True)
        if part == "cold_start":
            from bench import cold_start

            results[part] = cold_start.run(args.template, runs=args.runs)
        elif part == "per_recovery":
            from bench import per_recovery

            results[part] = per_recovery.run(args.template)
        elif part == "idle":
            from bench import idle

            results[part] = idle.run(args.template, minutes=args.idle_minutes)
        elif part == "storm":
            from bench import storm

            budget = storm.BUDGET_SECONDS if args.storm_budget is None else args.storm_budget
            results[part] = storm.run(args.template, sizes=args.storm_sizes, budget_seconds=budget, largest=largest)
        results[part]["bench_seconds"] = round(time.perf_counter() - began, 1)
        print(f"bench: {part} took {results[part]['bench_seconds']} s", file=sys.stderr, flush=True)
    results["meta"] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    table = report.markdown(results)
    (args.out / "results.md").write_text(table)
    if set(parts) == set(PARTS) and args.out == ROOT / "bench":
        goals.write_into(ROOT / "docs" / "performance.md", results)  # one run's goals, never a mix
    print(table)
    return 0


def _start_largest_storm(args: argparse.Namespace, parts: list[str]) -> Any:
    """The largest storm size, started now in its own process (None: a single size, run in turn)."""
    from bench import storm

    sizes = args.storm_sizes or storm.SIZES
    if len(sizes) < 2:  # one size: nothing to run beside it
        return None
    biggest = max(sizes, key=lambda s: s[0] * s[1])
    budget = storm.BUDGET_SECONDS if args.storm_budget is None else args.storm_budget
    beside = [p if p != "storm" else "the smaller storms" for p in parts]
    print(f"bench: storm {biggest[0]}x{biggest[1]} starts beside {', '.join(beside)}", file=sys.stderr, flush=True)
    return storm.Largest(args.template, biggest, budget, beside)


def _sizes(value: str) -> list[tuple[int, int]]:
    """ "10x300,5x6" -> [(10, 300), (5, 6)]."""
    try:
        return [(int(g), int(p)) for g, p in (size.lower().split("x") for size in value.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"storm sizes are GROUPSxINSTANCES, comma-separated: {value!r}") from None


if __name__ == "__main__":
    sys.exit(main())
