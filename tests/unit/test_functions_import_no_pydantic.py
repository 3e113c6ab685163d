"""The functions' code imports no pydantic (issue 16, cold start): their models are msgspec's
(core/model.py), and the Lambda layer holds no pydantic (requirements.txt), so an import of it
would fail in Lambda where the tests, run in the development venv, would pass. Read from each
module's source, its functions' own imports included.

The one exception: the hooks pydantic itself calls when a build-time pydantic model (infra/,
recoveryctl) holds one of ours (`__get_pydantic_core_schema__` and what it raises with)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
MODULES = sorted(str(p.relative_to(FUNCTIONS)) for p in FUNCTIONS.rglob("*.py"))
# Called by pydantic only (it is imported already when they run): the build side's bridge.
PYDANTIC_HOOKS = {"__get_pydantic_core_schema__", "_pydantic_error"}


def pydantic_imports(source: str) -> list[str]:
    """The pydantic modules a module's source imports, at any level (a function's own imports too)."""
    found = []
    tree = ast.parse(source)
    hooks = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in PYDANTIC_HOOKS]
    exempt = {id(inner) for hook in hooks for inner in ast.walk(hook)}
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in ("pydantic", "pydantic_core")]
    return found


def test_every_module_is_checked():
    expected = {"actions/base.py", "actions/plans.py", "core/state.py", "core/guardrails.py", "orchestration/admit.py"}
    assert expected <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_a_functions_module_imports_no_pydantic(module):
    assert pydantic_imports((FUNCTIONS / module).read_text()) == []


def test_the_layer_ships_no_pydantic():
    from infra import layer

    assert not {"pydantic", "pydantic-core"} & set(layer.pins())


@pytest.mark.parametrize(
    "source",
    [
        "from pydantic import Field",
        "import pydantic",
        "def f():\n    from pydantic_core import core_schema",
        "import os, pydantic.fields",
        "def __get_pydantic_core_schema__():\n    pass\nfrom pydantic import BaseModel",
    ],
)
def test_the_check_sees_each_form_of_import(source):
    assert pydantic_imports(source) != []


def test_the_check_leaves_other_imports_alone():
    assert pydantic_imports("import msgspec\nfrom core.model import Model\nfrom . import pydantic_like") == []
    hook = "class M:\n    def __get_pydantic_core_schema__(cls, s, h):\n        from pydantic_core import core_schema"
    assert pydantic_imports(hook) == []
