"""A storm of invocations elsewhere in the account must not starve detection: concurrency can be
reserved for the detectors and StartRecovery (reserved_concurrency); while it is not, synth warns."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import cdk_context
from tests.infra import cfn


def _warnings(stack) -> list:
    from aws_cdk.assertions import Annotations, Match

    return Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("DETECTION CAN BE STARVED"))


def _reserved(resources: dict[str, Any]) -> dict[str, int]:
    return {
        logical_id: function["Properties"]["ReservedConcurrentExecutions"]
        for logical_id, function in cfn.of_type(resources, "AWS::Lambda::Function").items()
        if "ReservedConcurrentExecutions" in function["Properties"]
    }


def _logical_id(function) -> str:
    from aws_cdk import Stack

    return Stack.of(function).get_logical_id(function.node.default_child)


def test_the_shipped_configuration_reserves_nothing_and_the_synth_says_so(synthesized):
    # Given cdk.json's configuration, which sets no reserved_concurrency (off by default: an account
    # whose quota is low refuses any reservation)
    assert synthesized.config.reserved_concurrency.detectors is None

    # Then no function reserves concurrency, and the synth warns, naming both settings
    assert _reserved(synthesized.resources) == {}
    (warning,) = _warnings(synthesized.stack)
    assert warning.id.endswith("/Functions")
    message = str(warning.entry.data)
    assert "without reserved_concurrency.detectors and reserved_concurrency.start_recovery," in message
    assert "is all the detectors and StartRecovery can use" in message


@pytest.fixture(scope="module")
def reserving_stack():
    import aws_cdk as cdk

    from infra.config import validate
    from infra.stack import RecoveryStack

    context = cdk_context()
    config = validate({**context["recovery"], "reserved_concurrency": {"detectors": 3, "start_recovery": 7}})
    return RecoveryStack(cdk.App(context=context), config.stack_name, config=config)


def test_configured_reservations_go_to_every_detector_and_start_recovery_only(reserving_stack):
    from aws_cdk.assertions import Annotations, Match, Template

    # Given reserved_concurrency {"detectors": 3, "start_recovery": 7}
    resources = Template.from_stack(reserving_stack).to_json()["Resources"]
    detectors = {_logical_id(f) for f in reserving_stack.detection.detectors}
    start = _logical_id(reserving_stack.workflow.functions["StartRecovery"])

    # Then each detector reserves 3, StartRecovery 7, and no other function any (Admit, the actions:
    # the state machine retries them, and reserving for all would take the account's pool)
    assert len(detectors) >= 5
    assert _reserved(resources) == {**dict.fromkeys(detectors, 3), start: 7}
    # and the synth no longer warns, but says how much the account must have
    assert _warnings(reserving_stack) == []
    (info,) = Annotations.from_stack(reserving_stack).find_info("*", Match.string_like_regexp("reserved concurrency"))
    assert f"{3 * len(detectors) + 7} executions in all" in str(info.entry.data)
    assert f"at least {3 * len(detectors) + 7 + 100}" in str(info.entry.data)


def test_reserving_for_the_detectors_only_still_warns_about_start_recovery():
    # A recovery is started by StartRecovery: detection that is not starved can still be starved there.
    import aws_cdk as cdk

    from infra.config import ReservedConcurrency
    from infra.constructs.functions import FunctionFactory

    stack = cdk.Stack(cdk.App(), "Reserving")
    factory = FunctionFactory(stack, "Functions", log_retention_days=1, environment={})
    detector = factory.create("AlarmDetector", handler="detectors.alarm.handler", description="d")
    start = factory.create("StartRecovery", handler="orchestration.start.handler", description="s")

    factory.reserve(detectors=[detector], start_recovery=start, setting=ReservedConcurrency(detectors=2))

    assert detector.node.default_child.reserved_concurrent_executions == 2
    assert start.node.default_child.reserved_concurrent_executions is None
    (warning,) = _warnings(stack)
    message = str(warning.entry.data)
    assert "without reserved_concurrency.start_recovery, " in message and "is all StartRecovery can use" in message
    assert "reserved_concurrency.detectors" not in message


@pytest.mark.parametrize("field", ["detectors", "start_recovery"])
def test_a_reservation_of_zero_is_refused(field):
    # Lambda takes 0 as "throttle every invocation": never what a setting for availability means.
    from infra.config import ConfigError, validate

    raw = {**cdk_context()["recovery"], "reserved_concurrency": {field: 0}}
    expected = rf"reserved_concurrency\.{field}: must be at least 1 \(got 0\)"
    with pytest.raises(ConfigError, match=expected):
        validate(raw)
