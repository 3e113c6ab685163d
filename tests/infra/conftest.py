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


@pytest.fixture(scope="session")
def everywhere(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every template of a deployment in two regions with a member account, as app.py builds
    it, by stack name: web-api (central) and checkout (member "shop") run in us-west-2 and have
    Route 53 health checks, whose alarms are in the us-east-1 stacks of their accounts."""
    import json
    from pathlib import Path

    import aws_cdk as cdk

    import app as cdk_app
    from infra.config import validate
    from infra.member_stack import build_member_stacks
    from infra.route53_alarms import build_route53_alarm_stacks
    from tests.conftest import cdk_context
    from tests.infra.test_accounts import with_members

    raw = with_members()
    raw["regions"] = {"primary": "us-east-1", "standby": ["us-west-2"]}
    for w in raw["workloads"]:
        if w["name"] in ("web-api", "checkout"):
            w["region"] = "us-west-2"
        if w["name"] == "checkout":
            w["route53_health_checks"] = [CHECKOUT_HEALTH_CHECK]
    config = validate(raw)
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.everywhere")), context=cdk_context())
    cdk_app.build(app, config)
    build_member_stacks(app, config)
    build_route53_alarm_stacks(app, config)
    assembly = app.synth()
    return {
        stack.stack_name: json.loads(Path(stack.template_full_path).read_text())["Resources"]
        for stack in assembly.stacks
    }


CHECKOUT_HEALTH_CHECK = "0c1d2e3f-4444-5555-6666-777788889999"
