"""Pages must reach someone: a configuration that subscribes no one to the escalation topic warns
at every synth, and can be made to fail it (require_escalation_subscriber)."""

from __future__ import annotations

import pytest

from tests.conftest import cdk_context
from tests.infra import cfn


def _no_subscriber_warnings(stack) -> list:
    from aws_cdk.assertions import Annotations, Match

    return Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("PAGES GO NOWHERE"))


def _escalation_stack(emails: list[str]):
    import aws_cdk as cdk

    from infra.constructs.escalation import Escalation

    stack = cdk.Stack(cdk.App(), "Escalations")
    Escalation(stack, "Escalation", emails=emails)
    return stack


def test_the_shipped_configuration_subscribes_no_one_and_the_synth_says_so_loudly(synthesized):
    # Given cdk.json's configuration, whose escalation_emails is empty
    assert synthesized.config.escalation_emails == []

    # Then the synthesized stack carries the warning (cdk synth prints it), on the escalation construct
    (warning,) = _no_subscriber_warnings(synthesized.stack)
    assert warning.id.endswith("/Escalation")
    assert "escalation_emails" in str(warning.entry.data) and "require_escalation_subscriber" in str(warning.entry.data)
    # and the topic indeed has no subscription
    assert not cfn.of_type(synthesized.resources, "AWS::SNS::Subscription")


def test_a_configured_subscriber_is_subscribed_and_silences_the_warning():
    from aws_cdk.assertions import Template

    stack = _escalation_stack(["oncall@example.com"])

    assert _no_subscriber_warnings(stack) == []
    (subscription,) = Template.from_stack(stack).find_resources("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "oncall@example.com"


def test_without_a_subscriber_the_escalation_construct_warns():
    assert len(_no_subscriber_warnings(_escalation_stack([]))) == 1


def test_require_escalation_subscriber_fails_the_synth_without_one():
    from infra.config import ConfigError, validate

    raw = {**cdk_context()["recovery"], "escalation_emails": [], "require_escalation_subscriber": True}

    with pytest.raises(ConfigError, match="require_escalation_subscriber: no escalation subscriber is configured"):
        validate(raw)


def test_require_escalation_subscriber_passes_with_one():
    from infra.config import validate

    raw = {**cdk_context()["recovery"], "escalation_emails": ["oncall@example.com"]}

    assert validate({**raw, "require_escalation_subscriber": True}).require_escalation_subscriber is True


def test_a_configuration_file_that_requires_a_subscriber_is_refused_when_loaded(tmp_path):
    # What app.py loads (`cdk synth -c recovery_config=FILE`); it prints the ConfigError and exits 1
    import json

    from infra.config import ConfigError, load

    path = tmp_path / "recovery.json"
    path.write_text(json.dumps({**cdk_context()["recovery"], "require_escalation_subscriber": True}))
    context = {"recovery_config": str(path)}

    with pytest.raises(ConfigError, match="require_escalation_subscriber"):
        load(context.get)
