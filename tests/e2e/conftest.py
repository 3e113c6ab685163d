"""Fixtures of the end-to-end tier."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def recoveryctl_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drills run through the CLI record their state; never into the working tree's .recoveryctl/."""
    monkeypatch.setenv("RECOVERYCTL_STATE_DIR", str(tmp_path_factory.mktemp("recoveryctl-state")))
    monkeypatch.delenv("RECOVERYCTL_TARGET", raising=False)


@pytest.fixture(scope="session")
def drill_synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where scenarios with a deployment of their own (several regions, member accounts) are
    synthesized: once per deployment for the whole session (the drill reuses a synthesis while
    nothing changed)."""
    return tmp_path_factory.mktemp("synth")
