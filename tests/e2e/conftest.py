from __future__ import annotations

import pytest

from tests.synth import Synthesized, synthesize


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The stack, synthesized once for every end-to-end test."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))
