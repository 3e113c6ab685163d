"""What runs in Lambda is what the tests ran: the functions' one layer holds requirements.txt's pins
(and constraints.txt's for what they pull in), built for the functions' runtime and architecture.

The built layer is read from the cache `make layer` fills; these tests never build it from PyPI
(the build itself is tested with a stand-in for pip)."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from infra import bytecode, layer
from tests.infra import cfn


@pytest.fixture(scope="module")
def built() -> Path:
    return layer.path()


def test_the_built_layer_holds_every_pinned_distribution_at_its_pinned_version(built):
    installed = layer.installed(built)
    pins = layer.pins()
    assert {"aws-lambda-powertools", "msgspec", "boto3", "botocore"} <= set(pins)
    assert {name: installed.get(name) for name in pins} == pins


def test_what_the_pins_pull_in_is_what_the_tests_ran_with(built):
    # Transitive dependencies (urllib3, jmespath, ...) are at constraints.txt's versions, the
    # development environment's: none floats to a newer release at build time.
    constraints = layer.pins(layer.CONSTRAINTS)
    installed = layer.installed(built)
    unpinned = sorted(set(installed) - set(constraints))
    assert unpinned == []
    assert {name: constraints[name] for name in installed} == installed


def test_the_built_layer_is_for_the_functions_runtime_and_architecture(built):
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        binary_tags = [
            archive.read(name).decode()
            for name in names
            if name.endswith(".dist-info/WHEEL") and "Root-Is-Purelib: false" in archive.read(name).decode()
        ]
    assert all(name.startswith("python/") for name in names)  # a Python layer's root on sys.path
    assert binary_tags, "msgspec is a compiled wheel: at least one platform wheel is expected"
    for wheel in binary_tags:
        tags = re.findall(r"^Tag: (\S+)$", wheel, flags=re.MULTILINE)
        assert any(t.startswith("cp313-cp313-manylinux") and t.endswith("x86_64") for t in tags), tags
    extensions = [name for name in names if name.endswith(".so")]
    assert extensions
    assert all(name.endswith(".cpython-313-x86_64-linux-gnu.so") for name in extensions), extensions
    # One copy of each distribution: boto3 and botocore come once, from the layer.
    dist_infos = [name.split("/")[1] for name in names if name.endswith(".dist-info/METADATA")]
    assert len({layer.normalize(d.split("-")[0]) for d in dist_infos}) == len(dist_infos)
    # no console scripts, and no bytecode but the runtime's (made at build, infra/bytecode.py)
    assert not [name for name in names if name.startswith("python/bin/")]
    assert not [n for n in names if "/__pycache__/" in n and not n.endswith(".cpython-313.pyc")]


def test_the_layer_targets_the_functions_runtime_and_architecture():
    from infra.constructs.functions import ARCHITECTURE, RUNTIME

    assert RUNTIME.name == f"python{layer.PYTHON_VERSION}"
    assert layer.PLATFORM.endswith(f"_{ARCHITECTURE.name}")


def test_the_synthesized_layer_is_the_built_one(synthesized, built):
    # The asset the stack deploys is the cached zip, byte for byte, and the layer says what it holds.
    _, resource = cfn.only(synthesized.resources, "AWS::Lambda::LayerVersion")
    key = resource["Properties"]["Content"]["S3Key"]
    outdir = synthesized.template_path.parent
    manifest = json.loads((outdir / f"{synthesized.stack.stack_name}.assets.json").read_text())
    (source,) = [
        asset["source"]["path"]
        for asset in manifest["files"].values()
        if any(d["objectKey"] == key for d in asset["destinations"].values())
    ]
    assert (outdir / source).read_bytes() == built.read_bytes()
    assert "msgspec==0.22.0" in resource["Properties"]["Description"]
    assert len(resource["Properties"]["Description"]) <= 256


def test_a_synthesis_without_the_built_layer_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(layer, "CACHE", tmp_path)
    with pytest.raises(layer.LayerMissing, match=r"make layer"):
        layer.path()


def test_a_change_of_pins_needs_a_new_layer(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(layer.REQUIREMENTS.read_text())
    monkeypatch.setattr(layer, "REQUIREMENTS", requirements)
    before = layer.cache_key()
    requirements.write_text(requirements.read_text().replace("msgspec==0.22.0", "msgspec==0.22.1"))
    assert layer.cache_key() != before


def test_pins_read_extras_comments_and_spellings(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# a comment\naws-lambda-powertools[parser,tracer]==3.37.0\nTyping_Extensions == 4.16.0  # why\n"
        "-r other.txt\nunpinned>=1\n"
    )
    assert layer.pins(requirements) == {"aws-lambda-powertools": "3.37.0", "typing-extensions": "4.16.0"}


# --- the build, with a stand-in for pip ----------------------------------------------------------

_FAKE_PIP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    with Path(sys.argv[1]).open("a") as calls:
        calls.write(" ".join(sys.argv[2:]) + "\\n")
    target = Path(next(a for a in sys.argv if a.startswith("--target=")).split("=", 1)[1])
    (target / "boto3-1.44.5.dist-info").mkdir(parents=True)
    metadata = "Metadata-Version: 2.1\\nName: boto3\\nVersion: 1.44.5\\n"
    (target / "boto3-1.44.5.dist-info" / "METADATA").write_text(metadata)
    (target / "boto3" / "__pycache__").mkdir(parents=True)
    (target / "boto3" / "__init__.py").write_text("__version__ = '1.44.5'\\n")
    (target / "boto3" / "__pycache__" / "__init__.cpython-313.pyc").write_bytes(b"stale")
    (target / "bin").mkdir()
    (target / "bin" / "jp.py").write_text("script")
    """
)


@pytest.fixture
def fake_pip(tmp_path, monkeypatch) -> tuple[tuple[str, ...], Path]:
    script = tmp_path / "fake_pip.py"
    script.write_text(_FAKE_PIP)
    calls = tmp_path / "calls.txt"
    monkeypatch.setattr(layer, "CACHE", tmp_path / "cache")
    # sources only unless a test says otherwise: the machine's own Python 3.13 does not decide
    monkeypatch.setattr(bytecode, "runtime_python", lambda: None)
    return (sys.executable, str(script), str(calls)), calls


def test_the_build_installs_for_the_lambda_platform_and_strips_what_is_not_imported(fake_pip):
    pip, calls = fake_pip
    built = layer.build(pip=pip)
    arguments = calls.read_text().split()
    for expected in ("--only-binary=:all:", f"--platform={layer.PLATFORM}", "--python-version=3.13", "--no-compile"):
        assert expected in arguments
    assert str(layer.REQUIREMENTS) in arguments and str(layer.CONSTRAINTS) in arguments
    with zipfile.ZipFile(built) as archive:
        assert sorted(archive.namelist()) == [
            "python/boto3-1.44.5.dist-info/METADATA",
            "python/boto3/__init__.py",
        ]
    assert layer.installed(built) == {"boto3": "1.44.5"}
    assert [p.name for p in layer.CACHE.iterdir()] == [built.name]  # no build directory left behind


def test_a_cached_layer_is_not_built_again_and_a_rebuild_is_byte_identical(fake_pip):
    pip, calls = fake_pip
    first = layer.build(pip=pip)
    content = first.read_bytes()
    assert layer.build(pip=pip) == first
    assert len(calls.read_text().splitlines()) == 1  # pip ran once
    first.unlink()
    assert layer.build(pip=pip).read_bytes() == content  # same wheels, same zip: the asset does not change


def test_a_new_layer_replaces_the_old_one_in_the_cache(fake_pip):
    pip, _ = fake_pip
    layer.CACHE.mkdir()
    (layer.CACHE / "layer-0000000000000000.zip").write_bytes(b"an older build")
    built = layer.build(pip=pip)
    assert [p.name for p in layer.CACHE.iterdir()] == [built.name]


def test_a_failed_install_leaves_no_layer(tmp_path, monkeypatch):
    monkeypatch.setattr(layer, "CACHE", tmp_path / "cache")
    with pytest.raises(Exception, match="returned non-zero exit status"):
        layer.build(pip=(sys.executable, "-c", "import sys; sys.exit(1)"))
    assert list(layer.CACHE.iterdir()) == []
    with pytest.raises(layer.LayerMissing):
        layer.path()


def test_a_configuration_still_naming_the_public_layer_version_is_told_it_is_gone():
    from infra.config import ConfigError, validate
    from tests.conftest import cdk_context

    raw = {**cdk_context()["recovery"], "powertools_layer_version": 27}
    with pytest.raises(ConfigError, match=r"powertools_layer_version is no longer used.*make layer.*remove the key"):
        validate(raw)


def test_a_comment_in_the_requirements_does_not_need_a_new_layer(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(layer.REQUIREMENTS.read_text())
    monkeypatch.setattr(layer, "REQUIREMENTS", requirements)
    before = layer.cache_key()
    requirements.write_text("# why these versions\n\n" + requirements.read_text().replace("\n", "  # pinned\n"))
    assert layer.cache_key() == before


def test_the_build_ships_bytecode_made_by_the_runtimes_python_recorded_at_the_layers_path(fake_pip, monkeypatch):
    # This interpreter stands in for the runtime's Python: what is checked is that every module gets
    # its unchecked hash-based .pyc, compiled as if it lived in /opt/python.
    import importlib.util
    import marshal

    pip, _ = fake_pip
    monkeypatch.setattr(bytecode, "runtime_python", lambda: sys.executable)
    built = layer.build(pip=pip)
    # the tag names the interpreter that compiled, so another Python's bytecode is never cached as the runtime's
    assert bytecode.tag() == f"pyc-{sys.version_info.major}.{sys.version_info.minor}"
    with zipfile.ZipFile(built) as archive:
        compiled = [n for n in archive.namelist() if n.endswith(".pyc")]
        assert compiled == [f"python/boto3/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"]
        data = archive.read(compiled[0])
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, not checked against the source
    assert marshal.loads(data[16:]).co_filename == "/opt/python/boto3/__init__.py"


def test_the_built_layer_has_bytecode_for_every_module_when_this_machine_has_the_runtimes_python(built):
    with zipfile.ZipFile(built) as archive:
        names = set(archive.namelist())
    sources = sorted(n for n in names if n.endswith(".py"))
    compiled = {n for n in names if n.endswith(".cpython-313.pyc")}
    if bytecode.tag() == "sources":
        assert not compiled, "a layer named as sources only holds no bytecode"
        return
    missing = [s for s in sources if _pyc(s) not in compiled]
    assert len(sources) > 500 and not missing, missing[:5]


def _pyc(source: str) -> str:
    folder, _, name = source.rpartition("/")
    return f"{folder}/__pycache__/{name[:-3]}.cpython-313.pyc"


def test_the_functions_code_ships_its_bytecode_recorded_at_lambdas_task_root(monkeypatch):
    import marshal

    from infra.constructs.functions import stage_code

    monkeypatch.setattr(bytecode, "runtime_python", lambda: None)
    sources = stage_code({"test-bytecode.json": "{}"})
    assert not list(sources.rglob("*.pyc"))
    monkeypatch.setattr(bytecode, "runtime_python", lambda: sys.executable)
    # this interpreter stands in for the runtime's: its own tag keeps its staged copy apart
    compiled = stage_code({"test-bytecode.json": "{}"})
    assert compiled != sources  # the asset changes with what its bytecode is made by
    start = compiled / "orchestration" / "__pycache__" / f"start.{sys.implementation.cache_tag}.pyc"
    assert marshal.loads(start.read_bytes()[16:]).co_filename == "/var/task/orchestration/start.py"
    assert len(list(compiled.rglob("*.pyc"))) == len(list(compiled.rglob("*.py")))


def test_a_staged_copy_without_the_bytecode_this_build_makes_is_made_again_not_shipped(monkeypatch):
    # A copy cached in the temporary directory under this content's name, but whose bytecode is
    # another Python's (or missing): shipped as is, every cold start would compile our modules.
    from infra.constructs.functions import stage_code

    monkeypatch.setattr(bytecode, "runtime_python", lambda: sys.executable)
    staged = stage_code({"test-stale-bytecode.json": "{}"})
    start = staged / "orchestration" / "__pycache__" / f"start.{sys.implementation.cache_tag}.pyc"
    other = start.with_name("start.cpython-399.pyc")
    start.rename(other)
    assert not bytecode.compiled(staged)
    again = stage_code({"test-stale-bytecode.json": "{}"})
    assert again == staged and start.is_file() and bytecode.compiled(again)
    assert not other.exists()  # the stale copy is gone, not merged into


def test_every_functions_code_asset_synthesis_writes_holds_the_bytecode_the_build_makes(synthesized):
    # What is deployed, not what was staged: each function's asset directory in the cloud assembly.
    # With Python 3.13 here that is a .cpython-313.pyc beside every module; without it, sources only.
    assets = {
        "asset." + r["Properties"]["Code"]["S3Key"].removesuffix(".zip")
        for r in synthesized.resources.values()
        if r["Type"] == "AWS::Lambda::Function" and "S3Key" in r["Properties"]["Code"]
    }
    assert assets
    for asset in assets:
        directory = synthesized.template_path.parent / asset
        assert list(directory.rglob("*.py")) and bytecode.compiled(directory), asset
