"""The scheduled sweeps: Auto Scaling health and target health over every protected group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.contract import ImpairmentType, Severity
from core.errors import PermanentError, TransientError
from detectors.sweeps import handler, sweep, window_start
from tests.builders import (
    WORKLOAD,
    FakeResolver,
    RecordingPublisher,
    asg_instance,
    protected_group,
    scheduled_event,
    target,
)

TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-api/73e2d6bc24d8a067"
OTHER_TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/admin/0a1b2c3d4e5f6a7b"
SWEPT_AT = datetime(2026, 11, 22, 20, 7, tzinfo=UTC)
WINDOW = 300


def ids(n: int, start: int = 0) -> list[str]:
    return [f"i-{k:017x}" for k in range(start, start + n)]


def group(healths: list[str] | None = None, *, name: str = "web-api-asg", tgs: list[str] | None = None, **kwargs: Any):
    """A protected group whose instances have these health statuses (InService)."""
    instances = [asg_instance(i, h) for i, h in zip(ids(len(healths or [])), healths or [], strict=True)]
    return protected_group(name, instances=instances, target_group_arns=tgs if tgs is not None else [TG], **kwargs)


def targets(states: list[str]) -> list[dict[str, Any]]:
    return [
        target(i, s, "Target.FailedHealthChecks" if s == "unhealthy" else None)
        for i, s in zip(ids(len(states)), states, strict=True)
    ]


def run(inventory: FakeResolver, swept_at: datetime = SWEPT_AT):
    findings, _ = sweep(inventory, swept_at, WINDOW, swept_at + timedelta(seconds=2))
    return findings.detected


def healthy_world() -> FakeResolver:
    return FakeResolver(
        groups=[group(["Healthy"] * 3)],
        targets={TG: targets(["healthy"] * 3)},
    )


def test_a_healthy_fleet_emits_nothing():
    assert run(healthy_world()) == []


def test_the_api_calls_grow_with_groups_never_with_instances():
    # Given two protected groups of 3 and 300 instances, each behind its own target group
    small = group(["Healthy"] * 3, name="small", tgs=[TG])
    large = protected_group(
        "large", instances=[asg_instance(i) for i in ids(300, 1000)], target_group_arns=[OTHER_TG], workload="large"
    )
    inventory = FakeResolver(groups=[small, large], targets={TG: targets(["healthy"] * 3), OTHER_TG: []})

    # When the sweep runs
    run(inventory)

    # Then it made one group listing and one target health call per target group, nothing per instance
    assert inventory.calls == [("protected_groups", None), ("target_health", TG), ("target_health", OTHER_TG)]


def test_a_target_group_shared_by_groups_is_described_once():
    shared = [group(["Healthy"], name="a"), group(["Healthy"], name="b")]
    inventory = FakeResolver(groups=shared, targets={TG: targets(["healthy"])})
    run(inventory)
    assert inventory.calls.count(("target_health", TG)) == 1


# --- Auto Scaling health ----------------------------------------------------------------------


def test_unhealthy_in_service_instances_are_one_instance_failure_of_their_group():
    # Given one of three in-service instances is Unhealthy in its group
    the_group = group(["Healthy", "Unhealthy", "Healthy"], tgs=[])
    detected = run(FakeResolver(groups=[the_group]))

    # Then one high instance failure names it, scoped to its group
    (impairment,) = detected
    assert impairment.impairment_type is ImpairmentType.INSTANCE_FAILURE
    assert impairment.severity is Severity.HIGH
    assert impairment.workload == WORKLOAD
    assert [r.resource_id for r in impairment.affected_resources] == [ids(3)[1]]
    assert impairment.scope == {"auto_scaling_group": "web-api-asg"}
    assert impairment.signal.source == "aws.autoscaling"
    assert impairment.signal.id == the_group.arn
    assert impairment.metrics["fail_open"] == 0.0


def test_instances_the_group_is_already_replacing_do_not_count():
    # Given the only Unhealthy instance is already being terminated by its group
    instances = [
        asg_instance("i-0000000000000000a", "Unhealthy", "Terminating:Wait"),
        asg_instance("i-0000000000000000b"),
    ]
    the_group = protected_group(instances=instances)
    assert run(FakeResolver(groups=[the_group])) == []


def test_most_of_a_group_unhealthy_fails_open():
    # Given two of three instances Unhealthy at once
    detected = run(FakeResolver(groups=[group(["Unhealthy", "Unhealthy", "Healthy"], tgs=[])]))

    # Then the impairment is critical and says that a human decides
    (impairment,) = detected
    assert impairment.severity is Severity.CRITICAL
    assert impairment.metrics["fail_open"] == 1.0
    assert "failing open" in impairment.description


# --- target health ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "severity"),
    [
        (["healthy", "healthy", "healthy", "unhealthy"], Severity.HIGH),
        (["healthy", "healthy", "unhealthy", "unhealthy"], Severity.HIGH),  # half is not more than half
        (["healthy", "unhealthy", "unhealthy", "unhealthy"], Severity.CRITICAL),
        (["unhealthy"], Severity.CRITICAL),
    ],
)
def test_unhealthy_targets_are_a_service_degradation_critical_when_more_than_half(states, severity):
    inventory = FakeResolver(groups=[group(["Healthy"] * len(states))], targets={TG: targets(states)})
    (impairment,) = run(inventory)
    assert impairment.impairment_type is ImpairmentType.SERVICE_DEGRADATION
    assert impairment.severity is severity
    unhealthy = [i for i, s in zip(ids(len(states)), states, strict=True) if s == "unhealthy"]
    assert [r.resource_id for r in impairment.affected_resources] == unhealthy
    assert impairment.scope == {"auto_scaling_group": "web-api-asg", "target_group_arn": TG}
    assert impairment.metrics["unhealthy_targets"] == len(unhealthy)
    assert impairment.metrics["targets"] == len(states)
    assert impairment.metrics["fail_open"] == (1.0 if severity is Severity.CRITICAL else 0.0)
    assert ("failing open" in impairment.description) is (severity is Severity.CRITICAL)


def test_a_stopped_instance_behind_the_target_group_is_unhealthy_and_draining_ones_are_not_counted():
    health = [
        target(ids(4)[0], "healthy"),
        target(ids(4)[1], "unused", "Target.InvalidState"),  # the instance is stopped
        target(ids(4)[2], "draining", "Target.DeregistrationInProgress"),
        target(ids(4)[3], "initial", "Elb.RegistrationInProgress"),
    ]
    inventory = FakeResolver(groups=[group(["Healthy"] * 4)], targets={TG: health})
    (impairment,) = run(inventory)
    assert [r.resource_id for r in impairment.affected_resources] == [ids(4)[1]]
    assert impairment.metrics["targets"] == 3.0


def test_a_shared_target_group_counts_for_each_group_only_its_own_instances():
    # Given groups a and b behind one target group; a's only instance is unhealthy, b's is healthy
    a = protected_group("a", workload="a", instances=[asg_instance(ids(2)[0])], target_group_arns=[TG])
    b = protected_group("b", workload="b", instances=[asg_instance(ids(2)[1])], target_group_arns=[TG])
    inventory = FakeResolver(groups=[a, b], targets={TG: targets(["unhealthy", "healthy"])})

    # Then only a is impaired, with all of its fleet down
    (impairment,) = run(inventory)
    assert impairment.workload == "a"
    assert impairment.severity is Severity.CRITICAL


def test_a_target_group_that_cannot_be_described_does_not_stop_the_others():
    inventory = FakeResolver(
        groups=[group(["Healthy"] * 2, tgs=[OTHER_TG, TG])],
        targets={
            OTHER_TG: PermanentError("elasticloadbalancing:DescribeTargetHealth failed: TargetGroupNotFound"),
            TG: targets(["healthy", "unhealthy"]),
        },
    )
    findings, summary = sweep(inventory, SWEPT_AT, WINDOW, SWEPT_AT)
    assert [i.scope["target_group_arn"] for i in findings.detected] == [TG]
    assert summary["target_groups_failed"] == [OTHER_TG]


def test_a_transient_error_is_raised_for_the_asynchronous_retry():
    inventory = FakeResolver(groups=[group(["Healthy"])], targets={TG: TransientError("Throttling")})
    with pytest.raises(TransientError):
        run(inventory)


# --- stable ids -------------------------------------------------------------------------------


def unhealthy_world() -> FakeResolver:
    return FakeResolver(groups=[group(["Unhealthy", "Healthy", "Healthy"])], targets={TG: targets(["unhealthy"] * 1)})


def test_window_start_is_aligned_on_the_window():
    assert window_start(datetime(2026, 11, 22, 20, 9, 59, tzinfo=UTC), 300) == datetime(2026, 11, 22, 20, 5, tzinfo=UTC)
    assert window_start(datetime(2026, 11, 22, 20, 10, tzinfo=UTC), 300) == datetime(2026, 11, 22, 20, 10, tzinfo=UTC)


def test_every_sweep_of_an_ongoing_problem_within_a_window_gives_the_same_ids():
    # Given the same problem seen by the sweeps of 20:05, 20:07 and 20:09:59
    sightings = [
        run(unhealthy_world(), datetime(2026, 11, 22, 20, m, s, tzinfo=UTC)) for m, s in ((5, 0), (7, 0), (9, 59))
    ]

    # Then each gives the same two impairments (instance failure, service degradation), from the window's start
    id_sets = [sorted(i.impairment_id for i in found) for found in sightings]
    assert len(id_sets[0]) == 2
    assert id_sets[0] == id_sets[1] == id_sets[2]
    assert {i.signal.signal_time for found in sightings for i in found} == {datetime(2026, 11, 22, 20, 5, tzinfo=UTC)}


def test_the_next_window_reports_a_problem_that_is_still_there_under_new_ids():
    before = {i.impairment_id for i in run(unhealthy_world(), datetime(2026, 11, 22, 20, 9, 59, tzinfo=UTC))}
    after = {i.impairment_id for i in run(unhealthy_world(), datetime(2026, 11, 22, 20, 10, tzinfo=UTC))}
    assert before.isdisjoint(after)


# --- the handler ------------------------------------------------------------------------------


def test_the_handler_publishes_what_the_sweep_found(lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    publisher = RecordingPublisher()
    response = handler(scheduled_event(), lambda_context, inventory=unhealthy_world(), publisher=publisher)
    assert response["status"] == "published"
    assert response["groups"] == 1
    ((_, details),) = publisher.published
    assert sorted(d.impairment_id for d in details) == sorted(response["detected"])


def test_the_handler_publishes_nothing_for_a_healthy_fleet(lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    publisher = RecordingPublisher()
    response = handler(scheduled_event(), lambda_context, inventory=healthy_world(), publisher=publisher)
    assert response["status"] == "healthy"
    assert publisher.published == []


def test_the_window_comes_from_the_environment(lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    monkeypatch.setenv("SWEEP_WINDOW_SECONDS", "900")
    response = handler(scheduled_event("2026-11-22T20:07:00Z"), lambda_context, inventory=healthy_world())
    assert response["window_start"] == "2026-11-22T20:00:00+00:00"
