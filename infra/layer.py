"""The functions' dependencies as one Lambda layer, built from requirements.txt (with the transitive
pins of constraints.txt), so that what runs in Lambda is exactly what the tests ran: no public layer
(whose contents and versions differ by region and partition) and no boto3 of the runtime's choosing.

pip installs the wheels for the functions' platform (PLATFORM, PYTHON_VERSION: no Docker, no
compiler) once, compiles them with the runtime's Python when this machine has one (infra/bytecode.py:
Lambda cannot write bytecode, so a layer without it is compiled at every cold start), into a zip in
CACHE named by a hash of what it is built from; synthesis only reads that zip, and fails with
`make layer` in its message when it is missing: it never downloads.

    python -m infra.layer          build the layer unless it is cached (what `make layer` runs)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from infra import bytecode

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
CONSTRAINTS = ROOT / "constraints.txt"
# The functions' runtime and architecture (infra/constructs/functions.py: RUNTIME, ARCHITECTURE).
# Amazon Linux 2023 (python3.13) has glibc 2.34, so manylinux2014 (glibc 2.17) wheels run on it.
PYTHON_VERSION = bytecode.RUNTIME_VERSION
PLATFORM = "manylinux2014_x86_64"
CACHE = ROOT / ".build"
# Bumped when the layer's layout or stripping changes, so a cached zip of the old layout is rebuilt.
_FORMAT = "2"  # 2: bytecode made by the runtime's Python (infra/bytecode.py)
# Neither imported nor needed at run time: console scripts, and the wheels' own caches (bytecode is
# made afterwards by the runtime's Python, infra/bytecode.py).
_STRIPPED_DIRS = {"bin", "__pycache__"}
_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed date for every zip entry: same wheels, same zip, same asset


class LayerMissing(RuntimeError):
    """The layer for the current requirements is not built: synthesis does not download it."""


def cache_key() -> str:
    """What the layer is built from: the pins, the platform and the layout; a change to any rebuilds it
    (a change of comments or blank lines does not)."""
    digest = hashlib.sha256()
    parts = (_requirement_lines(REQUIREMENTS), _requirement_lines(CONSTRAINTS), PYTHON_VERSION, PLATFORM, _FORMAT)
    for part in (*parts, bytecode.tag()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def _requirement_lines(file: Path) -> str:
    lines = (line.split("#", 1)[0].strip() for line in file.read_text().splitlines())
    return "\n".join(line for line in lines if line)


def zip_path() -> Path:
    return CACHE / f"layer-{cache_key()}.zip"


def path() -> Path:
    """The built layer's zip, for synthesis; LayerMissing if it was not built for these requirements."""
    built = zip_path()
    if not built.is_file():
        raise LayerMissing(
            f"the functions' dependency layer is not built for the current requirements.txt/constraints.txt "
            f"({_shown(built)} is missing): run `make layer` (or `make setup`), which installs them "
            f"with pip for {PLATFORM}/Python {PYTHON_VERSION} once (network to PyPI) and caches them"
        )
    return built


def pins(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """requirements.txt's `name[extras]==version` lines as {normalized name: version}."""
    found = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            found[normalize(match.group(1))] = match.group(3)
    return found


def normalize(name: str) -> str:
    """PEP 503: "aws_lambda_powertools" and "AWS-Lambda-Powertools" are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def build(*, pip: tuple[str, ...] = (sys.executable, "-m", "pip")) -> Path:
    """The layer's zip, built unless cached. Older layers in CACHE are removed once the new one is in."""
    target = zip_path()
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="building-") as work:
        site = Path(work) / "python"  # a layer's python/ is on the runtime's sys.path, before its own boto3
        # Our own interpreter's pip, with arguments fixed here.
        subprocess.run(  # noqa: S603
            [
                *pip,
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--only-binary=:all:",
                f"--platform={PLATFORM}",
                "--implementation=cp",
                f"--python-version={PYTHON_VERSION}",
                f"--target={site}",
                "--requirement",
                str(REQUIREMENTS),
                "--constraint",
                str(CONSTRAINTS),
            ],
            check=True,
        )
        _strip(site)
        if not bytecode.compile_tree(site, bytecode.LAYER_ROOT):
            print(f"layer: {bytecode.missing_note()}", file=sys.stderr)
        _zip(site, Path(work) / "layer.zip")
        os.replace(Path(work) / "layer.zip", target)
    for old in CACHE.glob("layer-*.zip"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def _strip(site: Path) -> None:
    for directory in sorted(site.rglob("*"), reverse=True):
        if directory.is_dir() and directory.name in _STRIPPED_DIRS:
            shutil.rmtree(directory)


def _zip(site: Path, destination: Path) -> None:
    """Entries sorted, dated _EPOCH, modes kept: the zip depends on the wheels' contents only."""
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in site.rglob("*") if p.is_file()):
            entry = zipfile.ZipInfo(str(Path("python") / file.relative_to(site)), date_time=_EPOCH)
            entry.external_attr = (0o755 if os.access(file, os.X_OK) else 0o644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, file.read_bytes())


def installed(layer: Path) -> dict[str, str]:
    """The distributions in a built layer, from their dist-info METADATA: {normalized name: version}."""
    found = {}
    with zipfile.ZipFile(layer) as archive:
        for name in archive.namelist():
            if re.fullmatch(r"python/[^/]+\.dist-info/METADATA", name):
                headers = archive.read(name).decode().split("\n\n", 1)[0]
                fields = dict(re.findall(r"^(Name|Version): (.+)$", headers, flags=re.MULTILINE))
                found[normalize(fields["Name"])] = fields["Version"].strip()
    return found


def _shown(file: Path) -> str:
    return str(file.relative_to(ROOT)) if file.is_relative_to(ROOT) else str(file)


def main() -> int:
    built = build()
    print(f"{_shown(built)}: {built.stat().st_size / 1e6:.1f} MB, {len(installed(built))} distributions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
