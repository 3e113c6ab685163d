"""Compiled bytecode for what the functions import, made by the runtime's own Python.

Lambda's code and layer directories are read-only: Python cannot write its __pycache__ there, so
without .pyc in the asset every cold start compiles every module it imports (boto3, botocore,
pydantic, Powertools, ours) before the handler runs. Measured here with Python 3.13 on the
layer's contents: 2.6 s to import boto3, pydantic and the Powertools logger without bytecode, 1.0 s
with it (docs/performance.md). Bytecode is specific to a Python minor version, so it is made
only by a Python 3.13 (RUNTIME_VERSION) found on this machine; without one the asset ships sources
only, as before, and the build says so. Hash-based, unchecked .pyc (PEP 552) with the paths Lambda
will run them from: the same sources give the same bytes, and nothing is checked at import.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

RUNTIME_VERSION = "3.13"  # Lambda's python3.13 runtime (infra/constructs/functions.py RUNTIME)
# Where Lambda puts them: a layer's python/ under /opt, the function's code in /var/task.
LAYER_ROOT = "/opt/python"
CODE_ROOT = "/var/task"


@cache
def runtime_python() -> str | None:
    """A Python RUNTIME_VERSION interpreter: $LAMBDA_PYTHON, else python3.13 on PATH, else one of
    pyenv's; None when there is none (checked by running it, not by its name)."""
    candidates = [os.environ.get("LAMBDA_PYTHON"), shutil.which(f"python{RUNTIME_VERSION}")]
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{RUNTIME_VERSION}*/bin/python{RUNTIME_VERSION}"))
    )
    for candidate in candidates:
        if candidate and _version(candidate) == RUNTIME_VERSION:
            return candidate
    return None


@cache
def _version(python: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - an interpreter we were pointed at, asked for its version
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def tag() -> str:
    """What the bytecode is made with, for cache keys: the version of the interpreter that compiles
    it (the runtime's, RUNTIME_VERSION), or "sources" when there is none. Asked of the interpreter
    itself, so that bytecode another Python made is never cached under the runtime's name."""
    python = runtime_python()
    return f"pyc-{_version(python) or 'unknown'}" if python else "sources"


def cache_tag() -> str | None:
    """The .pyc name tag (`cpython-313`) of what compile_tree makes; None when it makes none."""
    made = tag()
    return None if made == "sources" else "cpython-" + made.removeprefix("pyc-").replace(".", "")


def compiled(directory: Path) -> bool:
    """Whether every module under `directory` has the bytecode compile_tree would make now (all
    sources only when it makes none): what a cached copy is checked against before it is reused."""
    want = cache_tag()
    if want is None:
        return next(directory.rglob("*.pyc"), None) is None
    return all((s.parent / "__pycache__" / f"{s.stem}.{want}.pyc").is_file() for s in directory.rglob("*.py"))


def compile_tree(directory: Path, recorded_as: str) -> int:
    """Compile every .py under `directory` in place (as if it lived at `recorded_as`, for
    tracebacks); returns the number of .pyc made, 0 when there is no runtime Python. A module
    that does not compile (a package's test data, say) is left as source."""
    python = runtime_python()
    if python is None:
        return 0
    subprocess.run(  # noqa: S603 - the runtime's interpreter and compileall's documented options
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(directory),
            "-p",
            recorded_as,
            str(directory),
        ],
        capture_output=True,
        check=False,
    )
    return sum(1 for _ in directory.rglob("*.pyc"))


def missing_note() -> str:
    return (
        f"no Python {RUNTIME_VERSION} on this machine (set LAMBDA_PYTHON, or put python{RUNTIME_VERSION} on PATH): "
        "the asset ships sources only, and every cold start compiles what it imports (docs/performance.md)"
    )
