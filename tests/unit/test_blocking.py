"""Blocking conditions (core/blocking.py): the decisions, and the reads with the real API shapes
(botocore Stubber where moto lacks the call: instance refreshes, ECS rolloutState)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from core import blocking
from core.blocking import Blocking

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REFRESH = {"InstanceRefreshId": "08b91cf7-8fa6-48af-b6a6-d227f40f1b9b", "AutoScalingGroupName": "web-asg"}


def _deployment(status: str, rollout: str) -> dict:
    return {"id": f"ecs-svc/{status}{rollout}", "status": status, "rolloutState": rollout, "desiredCount": 2}


@pytest.mark.parametrize("status", sorted(blocking.REFRESH_ACTIVE))
def test_a_refresh_not_over_blocks_with_its_id_and_status(status):
    condition = blocking.refresh_condition("web-asg", [{**REFRESH, "Status": status, "PercentageComplete": 40}])
    assert condition["condition"] == "instance_refresh" and condition["resource"] == "autoscaling:group/web-asg"
    assert condition["evidence"]["instance_refresh_id"] == REFRESH["InstanceRefreshId"]
    assert condition["evidence"]["status"] == status


@pytest.mark.parametrize("status", ["Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"])
def test_a_refresh_that_is_over_does_not_block(status):
    assert blocking.refresh_condition("web-asg", [{**REFRESH, "Status": status}]) is None


@pytest.mark.parametrize(
    ("deployments", "breaker", "why"),
    [
        ([_deployment("PRIMARY", "COMPLETED")], False, None),
        ([_deployment("PRIMARY", "IN_PROGRESS")], False, "rolling out"),
        ([_deployment("PRIMARY", "COMPLETED"), _deployment("ACTIVE", "COMPLETED")], False, "2 deployments"),
        ([_deployment("PRIMARY", "IN_PROGRESS"), _deployment("ACTIVE", "FAILED")], True, "circuit breaker"),
        # a failed roll-out the breaker does not roll back: still two deployments running
        ([_deployment("PRIMARY", "FAILED"), _deployment("ACTIVE", "COMPLETED")], False, "2 deployments"),
    ],
)
def test_an_ecs_service_blocks_while_deployed_or_rolled_back(deployments, breaker, why):
    service = {
        "serviceName": "api",
        "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/main/api",
        "deployments": deployments,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": breaker, "rollback": breaker}},
    }
    condition = blocking.deployment_condition(service)
    if why is None:
        assert condition is None
    else:
        assert why in condition["reason"]
        assert [d["rollout_state"] for d in condition["evidence"]["deployments"]] == [
            d["rolloutState"] for d in deployments
        ]


def test_a_blocked_recovery_waits_a_check_interval_then_what_is_left_of_the_bound():
    settings = Blocking(max_wait_seconds=150, check_every_seconds=60)
    condition = blocking.refresh_condition("web-asg", [{**REFRESH, "Status": "InProgress"}])
    first = blocking.decide([condition], settings, None, NOW)
    assert first.wait_seconds == 60 and first.record["since"] == NOW.isoformat()
    later = blocking.decide([condition], settings, first.record, NOW + timedelta(seconds=120))
    assert later.wait_seconds == 30  # never past the bound
    assert later.record["since"] == NOW.isoformat() and later.record["blocked_by"] == [condition]


@pytest.mark.parametrize(("then", "outcome"), [("escalate", "escalated"), ("act", "acted_while_blocked")])
def test_after_the_bound_it_acts_or_escalates_as_configured(then, outcome):
    settings = Blocking(max_wait_seconds=300, then=then)
    condition = blocking.alarm_conditions([{"AlarmName": "payments-errors", "StateValue": "ALARM"}])
    first = blocking.decide(condition, settings, None, NOW)
    verdict = blocking.decide(condition, settings, first.record, NOW + timedelta(seconds=300))
    assert verdict.wait_seconds == 0 and verdict.record["outcome"] == outcome
    if then == "escalate":
        assert "still blocked after 300 s" in verdict.escalate and "payments-errors" in verdict.escalate
    else:
        assert verdict.escalate is None


def test_a_wait_that_cleared_is_recorded_and_a_new_block_starts_a_new_wait():
    settings = Blocking()
    condition = blocking.refresh_condition("web-asg", [{**REFRESH, "Status": "Baking"}])
    blocked = blocking.decide([condition], settings, None, NOW)
    cleared = blocking.decide([], settings, blocked.record, NOW + timedelta(seconds=200))
    assert cleared.wait_seconds == 0 and cleared.record["outcome"] == "cleared"
    assert blocking.decide([], settings, None, NOW).record is None  # never blocked: nothing to record
    # blocked again after an approval: the bound counts from then, not from the first wait
    again = blocking.decide([condition], settings, cleared.record, NOW + timedelta(seconds=900))
    assert again.wait_seconds == 60 and again.record["since"] == (NOW + timedelta(seconds=900)).isoformat()


def test_no_wait_allowed_acts_or_escalates_at_once():
    condition = blocking.refresh_condition("web-asg", [{**REFRESH, "Status": "InProgress"}])
    assert blocking.decide([condition], Blocking(max_wait_seconds=0), None, NOW).escalate


def test_instance_refreshes_are_read_with_the_real_shape():
    client = boto3.client("autoscaling", region_name="us-east-1")
    refresh = {**REFRESH, "Status": "InProgress", "StartTime": NOW, "PercentageComplete": 20}
    with Stubber(client) as stub:
        stub.add_response(
            "describe_instance_refreshes",
            {"InstanceRefreshes": [refresh]},
            {"AutoScalingGroupName": "web-asg", "MaxRecords": 10},
        )
        assert blocking.instance_refreshes(client, "web-asg") == [refresh]


def test_an_ecs_deployment_rolling_back_is_read_with_the_real_shape():
    client = boto3.client("ecs", region_name="us-east-1")
    service = {
        "serviceName": "api",
        "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/main/api",
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
        "deployments": [
            {"id": "ecs-svc/1", "status": "PRIMARY", "rolloutState": "IN_PROGRESS", "rolloutStateReason": "rollback"},
            {"id": "ecs-svc/2", "status": "ACTIVE", "rolloutState": "FAILED", "rolloutStateReason": "circuit breaker"},
        ],
    }
    with Stubber(client) as stub:
        stub.add_response(
            "describe_services", {"services": [service], "failures": []}, {"cluster": "main", "services": ["api"]}
        )
        described = blocking.ecs_service(client, "main", "api")
    assert "circuit breaker" in blocking.deployment_condition(described)["reason"]


@mock_aws
def test_blocking_alarms_in_alarm_are_read_100_names_a_call():
    client = boto3.client("cloudwatch", region_name="us-east-1")
    names = [f"blocker-{i:03d}" for i in range(130)]
    for name in names:
        client.put_metric_alarm(
            AlarmName=name,
            MetricName="Errors",
            Namespace="App",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    client.set_alarm_state(AlarmName="blocker-007", StateValue="ALARM", StateReason="errors")
    client.set_alarm_state(AlarmName="blocker-120", StateValue="ALARM", StateReason="errors")  # in the 2nd batch

    found = blocking.alarm_conditions(blocking.alarms(client, names))
    # a deployment's own check: the names it configures (at most 100: one call)
    assert blocking.conditions(Blocking(instance_refresh=False, alarms=names[:10]), [], None, None)[0] == found[0]

    assert [c["evidence"]["alarm"] for c in found] == ["blocker-007", "blocker-120"]
    assert all(c["condition"] == "alarm" for c in found)


def test_an_alarm_named_twice_or_too_many_do_not_validate():
    with pytest.raises(ValueError, match="named twice"):
        Blocking(alarms=["a", "a"])
    with pytest.raises(ValueError):
        Blocking(alarms=[f"a{i}" for i in range(101)])
