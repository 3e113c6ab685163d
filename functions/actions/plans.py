"""Plans judged by their actions: what a plan does follows from what its actions declare
(actions/registry.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actions.registry import ACTIONS


def takes_out_of_service(steps: Iterable[dict[str, Any]]) -> bool:
    """Does a plan's step take the impaired instances out of service (what the blast radius and
    fail open guard)? Steps as the execution state carries them; an unknown action does not."""
    for step in steps:
        spec = ACTIONS.get(step["action"])
        if spec is not None and spec.takes_out_of_service(step.get("params") or {}):
            return True
    return False
