"""No handler's import builds a dataclass of ours (issue 16, cold start): `@dataclass` generates and
compiles its methods' code when the class is made, about 1 ms a class on Python 3.13, paid at every
cold start by every handler that imports it. The functions' plain records are msgspec Structs
(made in C, tens of microseconds); the detectors' declarations (detectors/declaration.py), read
at synthesis, stay dataclasses and out of every handler's imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

PROBE = """
import dataclasses, importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
ours = {n: m for n, m in sys.modules.items() if (getattr(m, "__file__", None) or "").startswith(sys.argv[0])}
found = sorted(
    f"{n}.{k}" for n, m in ours.items() for k, v in vars(m).items()
    if isinstance(v, type) and v.__module__ == n and dataclasses.is_dataclass(v)
)
print(json.dumps({"dataclasses": found, "modules": sorted(ours)}))
"""


# Read at synthesis only: the declarations and the list of them.
BUILD_SIDE = {"detectors.declaration", "detectors.registry"}


def runtime_modules() -> list[str]:
    """Every module the functions may import: the handlers' and what they use (a superset of what
    any one handler imports)."""
    found = []
    for path in sorted(FUNCTIONS.rglob("*.py")):
        name = ".".join(path.relative_to(FUNCTIONS).with_suffix("").parts).removesuffix(".__init__")
        if "__pycache__" not in path.parts and name not in BUILD_SIDE:
            found.append(name)
    return found


def imported_by_handlers(modules: list[str]) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(FUNCTIONS), "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("sys.argv[0]", repr(str(FUNCTIONS))), *modules],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


def test_importing_every_handler_builds_no_dataclass_of_ours_and_no_declaration():
    modules = runtime_modules()
    assert "orchestration.admit" in modules and "detectors.ec2_state" in modules
    seen = imported_by_handlers(modules)
    assert "core.budgets" in seen["modules"]  # the probe sees what the handlers import
    assert seen["dataclasses"] == []
    assert "detectors.declaration" not in seen["modules"]


def test_the_probe_finds_a_dataclass_a_handler_would_build():
    seen = imported_by_handlers(["detectors.registry"])  # the declarations: dataclasses, at synthesis
    assert "detectors.declaration.Declaration" in seen["dataclasses"]
