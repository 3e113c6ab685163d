"""recoveryctl: the operator CLI of the impairment recovery system, and its local emulator."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
if str(FUNCTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS_DIR))


def infra_importable() -> None:
    """Put the repository's root on the path, so that infra/ (the stack's own rules: output names,
    validation, what the readiness check knows of a workload) imports: the CLI runs from the
    repository, and its installed entry point does not put the root on the path."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
