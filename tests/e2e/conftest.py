"""Fixtures of the end-to-end tier."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def recoveryctl_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drills run through the CLI record their state; never into the working tree's .recoveryctl/."""
    monkeypatch.setenv("RECOVERYCTL_STATE_DIR", str(tmp_path_factory.mktemp("recoveryctl-state")))
    monkeypatch.delenv("RECOVERYCTL_TARGET", raising=False)
