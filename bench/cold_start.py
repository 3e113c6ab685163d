"""Cold start: the import time of every Lambda handler module in a fresh interpreter, as a ratio
to a bare `import boto3` measured in the same run (the floor every handler pays), and to the
stack's floor (FLOOR: boto3, Powertools and one validated msgspec model, as the functions' models are).

As deployed when this machine has Lambda's Python (3.13, infra/bytecode.py): the code asset and
the layer as synthesis ships them, bytecode included; else the venv's Python (the results say
which). Each measurement is a new process in the environment Lambda gives a function
(LAMBDA_ENVIRONMENT: libraries decide at import from these whether they run in Lambda); modules
and boto3 (after every 10 modules) are measured in rounds so that drift hits them alike, and
the median of the rounds is reported. One more run per module with `-X importtime` names the
packages the import spends its time in. docs/performance.md says what is and is not measured.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
TARGET_RATIO = 1.3
BASELINE = "boto3"
BASELINE_EVERY = 10
# The least a handler of ours can be (bench/floor/floor_handler.py): boto3, Powertools' Logger and
# Metrics, one validated msgspec model. Timed like a handler; its ratio is the stack's floor.
FLOOR = "floor_handler"
FLOOR_PATH = ROOT / "bench" / "floor"

# Models are built on first use (pydantic's defer_build; msgspec builds a Struct's validation
# info on its first conversion): a first invocation pays for the ones it validates. Counted here
# as the handler module's own models and the contract's, the execution state's and an action's
# result (every task validates those), and boto3 if the handler imports it late: the figure is
# import plus that first use.
_TIMER = (
    "import time, sys\n"
    "started = time.perf_counter()\n"
    "import importlib; module = importlib.import_module(sys.argv[1])\n"
    "imported = time.perf_counter()\n"
    "pydantic = sys.modules.get('pydantic')\n"
    "model = sys.modules.get('core.model')\n"
    "used = {module.__name__, 'core.contract', 'core.state', 'actions.base'}\n"
    "for name in used & set(sys.modules):\n"
    "    for value in list(vars(sys.modules[name]).values()):\n"
    "        if not isinstance(value, type) or value.__module__ != name:\n"
    "            continue\n"
    "        if pydantic and issubclass(value, pydantic.BaseModel):\n"
    "            value.model_rebuild()\n"
    "        elif model and issubclass(value, model.Model):\n"
    # msgspec builds its validation info, then fails (no fields), without core/model_errors.py's
    # walk of every problem: a first invocation with valid input does not pay for that.
    "            model._CONVERTING.set(True)\n"
    "            try: sys.modules['msgspec'].convert({}, value)\n"
    "            except sys.modules['msgspec'].ValidationError: pass\n"
    "import boto3\n"  # a first invocation calls AWS: a handler that imports boto3 late pays it then
    "print(imported - started, time.perf_counter() - started)\n"
)


def handler_modules(template: dict[str, Any]) -> dict[str, list[str]]:
    """Module -> the handlers (module.attribute) of the template's functions in it."""
    found: dict[str, list[str]] = {}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        handler = resource.get("Properties", {}).get("Handler")
        if not isinstance(handler, str) or "." not in handler:
            continue
        module = handler.rpartition(".")[0]
        found.setdefault(module, []).append(handler)
    return {m: sorted(h) for m, h in sorted(found.items())}


# What Lambda sets in every function's environment (the reserved variables), with made-up values.
LAMBDA_ENVIRONMENT = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "AWS_LAMBDA_FUNCTION_NAME": "ImpairmentRecovery-bench",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/ImpairmentRecovery-bench",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/03/[$LATEST]0123456789abcdef0123456789abcdef",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
    "_AWS_XRAY_DAEMON_PORT": "2000",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "TZ": ":UTC",
}


@dataclass(frozen=True)
class Runtime:
    """An interpreter and what is on its path: this machine's venv, or Lambda's as deployed."""

    python: str
    path: tuple[Path, ...]
    cwd: Path
    what: str


def venv_runtime() -> Runtime:
    return Runtime(
        sys.executable,
        (FUNCTIONS, FLOOR_PATH),
        FUNCTIONS,
        f"this machine's Python {sys.version.split()[0]} with the development venv's packages (bytecode cached)",
    )


def deployed_runtime(work: Path) -> Runtime | None:
    """Python 3.13 (Lambda's runtime) with the functions' code and the layer as synthesis ships them
    (bytecode included, infra/bytecode.py), unpacked in `work`; None without a Python 3.13 here."""
    from infra import bytecode, layer
    from infra.constructs.functions import stage_code

    python = bytecode.runtime_python()
    if python is None:
        return None
    with zipfile.ZipFile(layer.path()) as archive:
        archive.extractall(work / "opt")
    code = stage_code({})
    return Runtime(
        python,
        (code, FLOOR_PATH, work / "opt" / "python"),
        code,
        f"Python {bytecode.RUNTIME_VERSION} with the code asset and the layer as deployed ({bytecode.tag()})",
    )


def _env(runtime: Runtime) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(str(p) for p in runtime.path),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "impairment-recovery",
            **LAMBDA_ENVIRONMENT,
        }
    )
    return env


def _python(runtime: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    """The runtime's interpreter, in its code directory with a Lambda-like environment."""
    return subprocess.run(  # noqa: S603 - an interpreter we chose and a module name from the template
        [runtime.python, *args],
        capture_output=True,
        text=True,
        env=_env(runtime),
        cwd=runtime.cwd,
        check=True,
        timeout=120,
    )


def time_import(module: str, runtime: Runtime | None = None) -> tuple[float, float]:
    """Seconds to import `module` in a fresh interpreter, and to import it and build the models a
    first invocation validates."""
    done = _python(runtime or venv_runtime(), "-c", _TIMER, module)
    imported, first_use = done.stdout.strip().splitlines()[-1].split()
    return float(imported), float(first_use)


def parse_importtime(stderr: str) -> list[tuple[str, int, int]]:
    """`-X importtime` lines as (module, self_us, cumulative_us)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split(":", 1)[1].split("|")
        if len(parts) != 3:
            continue
        try:
            rows.append((parts[2].strip(), int(parts[0]), int(parts[1])))
        except ValueError:
            continue
    return rows


def heaviest_packages(rows: list[tuple[str, int, int]], top: int = 6) -> list[dict[str, Any]]:
    """The top-level packages the import spent the most time in (sum of their modules' self time)."""
    by_package: Counter = Counter()
    for name, self_us, _ in rows:
        by_package[name.split(".")[0]] += self_us
    return [{"package": p, "ms": round(us / 1000, 1)} for p, us in by_package.most_common(top)]


def import_profile(module: str, runtime: Runtime | None = None) -> list[dict[str, Any]]:
    done = _python(runtime or venv_runtime(), "-X", "importtime", "-c", f"import {module}")
    return heaviest_packages(parse_importtime(done.stderr))


def ratio_summary(samples: dict[str, list[float]], baseline: str = BASELINE) -> dict[str, dict[str, float]]:
    """Median seconds of each module and its ratio to the baseline's median."""
    base = statistics.median(samples[baseline])
    return {
        module: {
            "median_ms": round(statistics.median(values) * 1000, 1),
            "ratio_to_boto3": round(statistics.median(values) / base, 2),
        }
        for module, values in samples.items()
    }


def run(template_path: Path, runs: int = 11) -> dict[str, Any]:
    """As deployed when this machine has Lambda's Python, else with the venv (and said which)."""
    with tempfile.TemporaryDirectory(prefix="cold-start-") as work:
        runtime = deployed_runtime(Path(work)) or venv_runtime()
        return _run(template_path, runs, runtime)


def _run(template_path: Path, runs: int, runtime: Runtime) -> dict[str, Any]:
    template = json.loads(template_path.read_text())
    modules = handler_modules(template)
    samples: dict[str, list[float]] = {BASELINE: [], FLOOR: [], **{m: [] for m in modules}}
    imports: dict[str, list[float]] = {BASELINE: samples[BASELINE], FLOOR: [], **{m: [] for m in modules}}
    # boto3, the denominator of every ratio, is timed again after every BASELINE_EVERY modules of a
    # round: a burst of the shared machine's load moves it as much as the modules timed near it,
    # where once a round left every ratio riding on 7 samples (a floor of 0.92x, below boto3 alone).
    order = [m for m in samples if m != BASELINE]
    for _ in range(runs):
        for index, module in enumerate(order):
            if index % BASELINE_EVERY == 0:
                samples[BASELINE].append(time_import(BASELINE, runtime)[1])
            imported, first_use = time_import(module, runtime)
            samples[module].append(first_use)
            imports[module].append(imported)
    summary = ratio_summary(samples)
    import_only = ratio_summary(imports)
    handlers = []
    for module, names in modules.items():
        handlers.append(
            {
                "module": module,
                "handlers": names,
                **summary[module],
                "import_only_ratio_to_boto3": import_only[module]["ratio_to_boto3"],
                "meets_target": summary[module]["ratio_to_boto3"] <= TARGET_RATIO,
                "heaviest_imports": import_profile(module, runtime),
            }
        )
    floor = summary[FLOOR]
    for h in handlers:
        h["ratio_to_floor"] = round(h["median_ms"] / floor["median_ms"], 2)
    worst = max(handlers, key=lambda h: h["ratio_to_boto3"]) if handlers else None
    return {
        "target_max_ratio": TARGET_RATIO,
        "runs": runs,
        "python": runtime.what,
        "environment": f"Lambda-like: {', '.join(sorted(LAMBDA_ENVIRONMENT))} set as Lambda sets them",
        "boto3_median_ms": summary[BASELINE]["median_ms"],
        "floor": {
            "what": "boto3, Powertools Logger and Metrics, one msgspec model validated (bench/floor/floor_handler.py)",
            **floor,
            "meets_target": floor["ratio_to_boto3"] <= TARGET_RATIO,
        },
        "handlers": handlers,
        "worst_ratio": worst["ratio_to_boto3"] if worst else None,
        "handlers_meeting_target": sum(h["meets_target"] for h in handlers),
        "all_meet_target": all(h["meets_target"] for h in handlers),
    }
