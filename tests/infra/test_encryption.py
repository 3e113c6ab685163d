"""encryption.customer_managed_key: one customer managed key of the stack encrypts the table,
every queue, every log group and the escalation topic, and its policy lets the services that
write with it do so (issue 17)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import ConfigError, validate
from tests.conftest import cdk_context
from tests.infra import cfn


def _raw(**extra: Any) -> dict[str, Any]:
    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["encryption"] = {"customer_managed_key": True}
    raw.update(extra)
    return raw


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory) -> tuple[Any, dict[str, dict[str, Any]]]:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.stack import RecoveryStack

    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out.cmk")), context=cdk_context())
    stack = RecoveryStack(app, "ImpairmentRecovery", config=validate(_raw()))
    return stack, Template.from_stack(stack).to_json()["Resources"]


def _key(resources) -> str:
    (key_id,) = cfn.of_type(resources, "AWS::KMS::Key")  # one key: the topic's is this one too
    return key_id


def _is_key(value: Any, key_id: str) -> bool:
    return isinstance(value, dict) and cfn.get_att(value) == key_id


def test_the_table_uses_the_key(encrypted):
    _, resources = encrypted
    key_id = _key(resources)
    _, table = cfn.only(resources, "AWS::DynamoDB::GlobalTable")
    assert table["Properties"]["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    (replica,) = table["Properties"]["Replicas"]
    assert _is_key(replica["SSESpecification"]["KMSMasterKeyId"], key_id)


def test_every_queue_log_group_and_the_topic_use_the_key(encrypted):
    _, resources = encrypted
    key_id = _key(resources)
    queues = cfn.of_type(resources, "AWS::SQS::Queue").values()
    assert queues and all(_is_key(q["Properties"]["KmsMasterKeyId"], key_id) for q in queues)
    assert not [q for q in queues if "SqsManagedSseEnabled" in q["Properties"]]
    groups = cfn.of_type(resources, "AWS::Logs::LogGroup")
    assert len(groups) > 10  # the functions' and the state machines'
    assert {k for k, g in groups.items() if not _is_key(g["Properties"].get("KmsKeyId"), key_id)} == set()
    _, topic = cfn.only(resources, "AWS::SNS::Topic")
    assert _is_key(topic["Properties"]["KmsMasterKeyId"], key_id)


def _policy_by_principal(resources) -> dict[str, dict[str, Any]]:
    _, key = cfn.only(resources, "AWS::KMS::Key")
    found = {}
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        principal = statement["Principal"]
        name = principal.get("Service") if isinstance(principal, dict) else principal
        found[cfn.resolve(name) if not isinstance(name, str) else name] = statement
    return found


def test_the_key_policy_lets_logs_events_alarms_and_sqs_use_it_for_this_account_only(encrypted):
    _, resources = encrypted
    policy = _policy_by_principal(resources)
    logs = next(s for p, s in policy.items() if isinstance(p, str) and p.startswith("logs."))
    context = cfn.resolve(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert context.endswith(":log-group:*") and ":logs:" in context
    assert set(cfn.as_list(policy["events.amazonaws.com"]["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert "aws:SourceAccount" in policy["events.amazonaws.com"]["Condition"]["StringEquals"]
    assert "aws:SourceAccount" in policy["cloudwatch.amazonaws.com"]["Condition"]["StringEquals"]
    # the topic delivers to an encrypted queue (paging's notifier): SNS must use the key, this account's only
    assert set(cfn.as_list(policy["sns.amazonaws.com"]["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert "aws:SourceAccount" in policy["sns.amazonaws.com"]["Condition"]["StringEquals"]
    sqs = next(s for s in policy.values() if s["Principal"] == {"AWS": "*"})
    assert set(sqs["Condition"]["StringEquals"]) == {"kms:CallerAccount", "kms:ViaService"}


def test_the_tables_users_may_use_the_key_through_dynamodb(encrypted):
    """As with an AWS managed key: any principal of the account, through DynamoDB (and SQS) only;
    who may use the table is its IAM grants' business."""
    _, resources = encrypted
    (through,) = [s for s in _policy_by_principal(resources).values() if s["Principal"] == {"AWS": "*"}]
    services = [cfn.resolve(v) for v in through["Condition"]["StringEquals"]["kms:ViaService"]]
    assert sorted(v.split(".")[0] for v in services) == ["dynamodb", "sqs"]
    assert set(cfn.as_list(through["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_cdk_nag_finds_no_unsuppressed_error_with_the_key(encrypted):
    from aws_cdk.assertions import Annotations, Match

    stack, _ = encrypted
    errors = Annotations.from_stack(stack).find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert errors == [], "\n".join(f"{e.id}: {e.entry.data}" for e in errors)


def test_by_default_nothing_changes(resources):
    _, table = cfn.only(resources, "AWS::DynamoDB::GlobalTable")
    assert "KMSMasterKeyId" not in str(table["Properties"].get("Replicas"))
    assert all("KmsKeyId" not in g["Properties"] for g in cfn.of_type(resources, "AWS::Logs::LogGroup").values())
    assert all(q["Properties"].get("SqsManagedSseEnabled") for q in cfn.of_type(resources, "AWS::SQS::Queue").values())


def test_with_regions_the_key_is_refused_naming_both_settings(tmp_path):
    import aws_cdk as cdk

    import app as cdk_app

    config = validate(_raw(regions={"primary": "us-east-1", "standby": ["us-west-2"]}))
    with pytest.raises(ConfigError, match=r"customer_managed_key.*`regions`"):
        cdk_app.build(cdk.App(outdir=str(tmp_path), context=cdk_context()), config)


def test_an_unknown_encryption_setting_is_refused():
    with pytest.raises(ConfigError, match="encryption"):
        validate(_raw(encryption={"customer_managed_keys": True}))
