"""The infrastructure tier reads the one synthesis of the stack (tests/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from infra.config import RecoveryConfig
    from tests.conftest import Synthesized


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template


@pytest.fixture(scope="session")
def resources(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return synthesized.resources


@pytest.fixture(scope="session")
def config(synthesized: Synthesized) -> RecoveryConfig:
    return synthesized.config
