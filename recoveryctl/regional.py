"""The deployment a drill needs when it is not the one in cdk.out: cdk.json's configuration with a
scenario's changes (several regions, a workload's standby in another region, member accounts),
synthesized by app.py's own builder.

`make synth` builds cdk.json as it is: one stack, in one region. A regional scenario says how
the deployment differs (its `deployment` field); the result is synthesized once into a cache
directory named by a hash of everything that goes into it (the changes, cdk.json, app.py, infra/
and functions/), and reused while none of them (nor this module) changes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recoveryctl import ROOT

CDK_JSON = ROOT / "cdk.json"
# Where a stack synthesized without a region runs in the emulator.
DEFAULT_REGION = "us-east-1"


class DeploymentError(RuntimeError):
    """The scenario's deployment does not validate or cannot be synthesized."""


def configuration(changes: dict[str, Any], cdk_json: Path = CDK_JSON) -> dict[str, Any]:
    """cdk.json's "recovery" configuration with the changes: `regions`, `accounts` and `paging` replaced,
    and each of `workloads` (by name) updated with the fields given."""
    context = json.loads(cdk_json.read_text())["context"]
    config = copy.deepcopy(context["recovery"])
    for part in ("regions", "accounts", "paging"):
        if part in changes:
            config[part] = changes[part]
    by_name = {w["name"]: w for w in config.get("workloads", [])}
    for name, fields in (changes.get("workloads") or {}).items():
        if name not in by_name:
            raise DeploymentError(f"the deployment changes workload {name!r}, which cdk.json does not protect")
        by_name[name].update(copy.deepcopy(fields))
    return config


def synthesize(changes: dict[str, Any], cache_dir: Path, cdk_json: Path = CDK_JSON) -> Stacks:
    """The stacks' templates: synthesized, or found in the cache."""
    config = configuration(changes, cdk_json)
    _validate(config)  # before anything is synthesized: a bad deployment fails fast, naming the field
    key = _fingerprint(config, cdk_json)
    out = cache_dir / f"synth-{key}"
    if not (out / "manifest.json").exists():
        _synthesize(config, cdk_json, out)
        _prune(cache_dir, keep=out)
    return templates(out)


KEEP_SYNTHESES = 4  # the newest, per cache directory: each scenario deployment and code version is one


def _prune(cache_dir: Path, keep: Path) -> None:
    """Remove all but the newest syntheses (each holds a copy of the code asset)."""
    found = sorted(cache_dir.glob("synth-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in found if p != keep][KEEP_SYNTHESES - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class Stacks:
    """A synthesized deployment: the recovery system's stack in each region (the primary's first),
    and the member accounts' stacks."""

    regions: dict[str, Path]
    members: list[tuple[str, str, Path]]  # (account, region, template)


def templates(cdk_out: Path) -> Stacks:
    """The CloudFormation stacks of a cloud assembly, in the manifest's order (the primary first:
    app.py creates it first)."""
    manifest = json.loads((cdk_out / "manifest.json").read_text())
    regions: dict[str, Path] = {}
    members: list[tuple[str, str, Path]] = []
    for artifact in manifest.get("artifacts", {}).values():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        account, region = artifact.get("environment", "aws://unknown-account/unknown-region").rsplit("/", 2)[-2:]
        region = DEFAULT_REGION if region == "unknown-region" else region
        path = cdk_out / artifact["properties"]["templateFile"]
        if account != "unknown-account" and "-Member-" in path.name:
            members.append((account, region, path))
        else:
            regions[region] = path
    if not regions:
        raise DeploymentError(f"{cdk_out} holds no recovery stack")
    return Stacks(regions, members)


def _validate(config: dict[str, Any]) -> Any:
    """The configuration, validated as `cdk synth` validates it (infra/config.py)."""
    if str(ROOT) not in sys.path:  # app.py and infra/ importable, as from the repository's root
        sys.path.insert(0, str(ROOT))
    from infra.config import ConfigError, validate

    try:
        return validate(config)
    except ConfigError as exc:
        raise DeploymentError(f"the scenario's deployment does not validate: {exc}") from exc


def _synthesize(config: dict[str, Any], cdk_json: Path, out: Path) -> None:
    # As `make synth` runs it: the pinned Node (node_modules/.bin) for jsii.
    node_bin = ROOT / "node_modules" / ".bin"
    if node_bin.is_dir() and str(node_bin) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    validated = _validate(config)
    import aws_cdk as cdk

    import app as cdk_app

    context = {**json.loads(cdk_json.read_text())["context"], "recovery": config}
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="synth-", dir=out.parent))
    try:
        app = cdk.App(outdir=str(building), context=context)
        cdk_app.build(app, validated)
        cdk_app.build_member_stacks(app, validated)
        app.synth()
        os.replace(building, out)
    except OSError:
        if not (out / "manifest.json").exists():  # another drill synthesized the same first: fine
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _fingerprint(config: dict[str, Any], cdk_json: Path) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    digest.update(cdk_json.read_bytes())
    sources = [
        Path(__file__).resolve(),  # how this module synthesizes
        ROOT / "app.py",
        *sorted((ROOT / "infra").rglob("*.py")),
        *sorted((ROOT / "functions").rglob("*.py")),
    ]
    for path in sources:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
