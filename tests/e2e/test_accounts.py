"""Cross-account through the emulator: a workload in a member account is recovered from the
central account through the assumed member role; an event from an account outside the
configuration changes nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from recoveryctl.emulator import workload as workloads
from recoveryctl.emulator.runtime import Emulator
from tests.conftest import cdk_context, load_event

pytestmark = pytest.mark.e2e

CENTRAL = "123456789012"  # the emulator's (and moto's default) account
MEMBER = "111122223333"
STRANGER = "999988887777"
MANAGED_TAG = ("recovery:managed", "true")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The central stack, synthesized with one member account that runs the web-api workload."""
    import aws_cdk as cdk

    from infra.config import validate
    from infra.stack import RecoveryStack

    raw = copy.deepcopy(cdk_context()["recovery"])
    raw["accounts"] = {
        "organization_id": "o-a1b2c3d4e5",
        "central_account_id": CENTRAL,
        "members": [{"account_id": MEMBER, "name": "shop"}],
    }
    next(w for w in raw["workloads"] if w["name"] == "web-api")["account_id"] = MEMBER
    config = validate(raw)
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")), context=cdk_context())
    stack = RecoveryStack(app, config.stack_name, config=config)
    return Path(app.synth().get_stack_artifact(stack.artifact_id).template_full_path)


def _web_api(emulator: Emulator) -> dict[str, Any]:
    declared = emulator.template.metadata["ImpairmentRecovery"]["workloads"]
    return next(w for w in declared if w["name"] == "web-api")


def _stopped(instance_id: str, account: str, region: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("ec2-instance-state-change-stopped.json"))
    event["account"] = account
    event["region"] = region
    event["detail"]["instance-id"] = instance_id
    event["resources"] = [f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"]
    return event


def _group(emulator: Emulator, name: str, account: str | None) -> list[dict[str, Any]]:
    groups = emulator.client("autoscaling", account=account).describe_auto_scaling_groups()["AutoScalingGroups"]
    return [g for g in groups if g["AutoScalingGroupName"] == name]


def test_an_instance_failure_in_a_member_account_is_recovered_through_the_assumed_role(template):
    with Emulator(template) as emulator:
        # Given the web-api group built in the member account (as its configuration declares)
        web_api = _web_api(emulator)
        assert web_api["account_id"] == MEMBER
        workloads.build(emulator, web_api, workloads.WorkloadShape(), MANAGED_TAG)
        group = web_api["auto_scaling_group"]
        assert _group(emulator, group, account=None) == [], "nothing of it in the central account"
        (member_group,) = _group(emulator, group, account=MEMBER)
        failed = sorted(i["InstanceId"] for i in member_group["Instances"])[0]
        emulator.client("ec2", account=MEMBER).stop_instances(InstanceIds=[failed])

        # When the member's EC2 state change arrives on the central default bus (forwarded)
        emulator.put_event(_stopped(failed, MEMBER, emulator.region))
        emulator.pump()

        # Then one recovery ran and succeeded, for an impairment in the member account
        (execution,) = emulator.executions()
        assert execution["status"] == "SUCCEEDED", emulator.history(execution["executionArn"])[-3:]
        started = json.loads(emulator.history(execution["executionArn"])[0]["executionStartedEventDetails"]["input"])
        assert started["impairment"]["account_id"] == MEMBER
        # and the failed instance was replaced in the member's group
        (after,) = _group(emulator, group, account=MEMBER)
        in_service = {i["InstanceId"] for i in after["Instances"] if i["LifecycleState"] == "InService"}
        assert failed not in in_service
        assert len(in_service) == member_group["DesiredCapacity"]


def test_an_event_from_an_account_outside_the_organisation_changes_nothing(template):
    with Emulator(template) as emulator:
        web_api = _web_api(emulator)
        workloads.build(emulator, web_api, workloads.WorkloadShape(), MANAGED_TAG)
        group = web_api["auto_scaling_group"]
        (before,) = _group(emulator, group, account=MEMBER)
        instance = sorted(i["InstanceId"] for i in before["Instances"])[0]

        # When a state change claiming an unknown account arrives
        emulator.put_event(_stopped(instance, STRANGER, emulator.region))
        emulator.pump()

        # Then the detector refused it: nothing on the recovery bus, no execution, no change
        detector = [i for i in emulator.invocations if "Ec2StateDetector" in i.function]
        assert [i.result["status"] for i in detector] == ["refused"]
        assert emulator.executions() == []
        assert not any(e["bus"] != "default" for e in emulator.events)
        (after,) = _group(emulator, group, account=MEMBER)
        assert {i["InstanceId"] for i in after["Instances"]} == {i["InstanceId"] for i in before["Instances"]}
        assert after["DesiredCapacity"] == before["DesiredCapacity"]


def test_the_cross_account_drill_recovers_a_member_workload_from_the_central_account(synthesized):
    # Given the built-in scenario against the deployment's own template: web-api in a member account
    from recoveryctl import drill, scenario

    with drill.Drill(scenario.load("cross-account"), synthesized.template_path) as run:
        report = run.run()
        (execution,) = run.emulator.executions()
        first = run.emulator.history(execution["executionArn"])[0]
        started = json.loads(first["executionStartedEventDetails"]["input"])
        central_groups = run.emulator.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]

    # Then it is recovered, in the member account, through the member role
    assert report["expectation_met"] and report["outcome"] == "recovered"
    assert report["workload"]["account"] == MEMBER
    assert started["impairment"]["account_id"] == MEMBER
    (failed,) = report["workload"]["impaired_instances"]
    assert failed not in report["workload"]["after"]["in_service"]
    assert len(report["workload"]["after"]["in_service"]) == 3
    assert central_groups == [], "nothing was built or changed in the central account"


def test_the_sweep_drill_finds_a_member_workloads_unhealthy_target_from_the_central_account(synthesized):
    # Given web-api in a member account, one of whose targets fails its health check with no alarm
    from recoveryctl import drill, scenario

    with drill.Drill(scenario.load("cross-account-sweep"), synthesized.template_path) as run:
        report = run.run()
        (execution,) = run.emulator.executions()
        first = run.emulator.history(execution["executionArn"])[0]
        started = json.loads(first["executionStartedEventDetails"]["input"])
        sweeps = [i.result for i in run.emulator.invocations if "Sweep" in i.function]
        central_groups = run.emulator.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]

    # Then the central account's sweep found it in the member, and it was recovered there
    assert report["expectation_met"] and report["outcome"] == "recovered"
    assert [(s["accounts"], s["accounts_failed"]) for s in sweeps] == [(2, [])]
    assert started["impairment"]["account_id"] == MEMBER
    assert started["impairment"]["impairment_type"] == "service_degradation"
    (failed,) = report["workload"]["impaired_instances"]
    assert failed not in report["workload"]["after"]["in_service"]
    assert len(report["workload"]["after"]["in_service"]) == 3
    assert central_groups == [], "nothing was built or changed in the central account"


def test_the_cross_account_drill_from_an_unknown_account_changes_nothing(synthesized):
    from recoveryctl import drill, scenario

    with drill.Drill(scenario.load("cross-account-unknown"), synthesized.template_path) as run:
        report = run.run()
        refused = [i.result["status"] for i in run.emulator.invocations if "Ec2StateDetector" in i.function]

    assert report["expectation_met"] and report["executions_started"] == 0
    assert refused == ["refused"]
    assert report["workload"]["after"]["in_service"] == report["workload"]["before"]["in_service"]
    assert report["detections"] == 0


def test_a_member_stacks_alarm_is_forwarded_to_the_central_account_and_recovered(drill_synth_cache):
    # Given the deployment with the member account: the central stack and the member's stack
    from recoveryctl import drill, scenario

    with drill.Drill(scenario.load("cross-account-alarm"), None, drill_synth_cache) as run:
        report = run.run()
        assert run.emulator is not None
        central_alarms = run.emulator.client("cloudwatch").describe_alarms(AlarmNamePrefix="web-api-")
        member_alarms = run.emulator.client("cloudwatch", account=MEMBER).describe_alarms(AlarmNamePrefix="web-api-")

    # Then the workload's alarms are the member stack's, in the member account only
    assert central_alarms["MetricAlarms"] == []
    assert "web-api-status-check" in {a["AlarmName"] for a in member_alarms["MetricAlarms"]}
    # And its state change, forwarded by the member's rule to the central bus, started the recovery there
    assert report["expectation_met"], report
    assert report["outcome"] == "recovered"
    assert report["workload"]["account"] == MEMBER
    alarm_events = [e for e in report["signals"] if e.get("alarm") == "web-api-status-check"]
    assert alarm_events
    (replaced,) = [a for a in report["actions"] if a["type"] == "replace_instance"]
    assert replaced["target"] == report["workload"]["impaired_instances"][0]
