"""The actions' own code imports no pydantic (issue 16, cold start): their models are msgspec's
(core/model.py). Read from each module's source, so it holds whatever core/ still imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ACTIONS = Path(__file__).resolve().parents[2] / "functions" / "actions"
MODULES = sorted(p.name for p in ACTIONS.glob("*.py"))


def pydantic_imports(source: str) -> list[str]:
    """The pydantic modules a module's source imports, at any level (a function's own imports too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in ("pydantic", "pydantic_core")]
    return found


def test_every_action_module_is_checked():
    assert {"base.py", "plans.py", "registry.py", "specs.py", "scale_out.py", "invoke_function.py"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_an_action_module_imports_no_pydantic(module):
    assert pydantic_imports((ACTIONS / module).read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "from pydantic import Field",
        "import pydantic",
        "def f():\n    from pydantic_core import core_schema",
        "import os, pydantic.fields",
    ],
)
def test_the_check_sees_each_form_of_import(source):
    assert pydantic_imports(source) != []


def test_the_check_leaves_other_imports_alone():
    assert pydantic_imports("import msgspec\nfrom core.model import Model\nfrom . import pydantic_like") == []
