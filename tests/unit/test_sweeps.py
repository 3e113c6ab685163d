"""The scheduled sweeps: Auto Scaling health and target health over every protected group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.contract import ImpairmentType, Severity
from core.errors import PermanentError, TransientError
from detectors.sweeps import SWEEP_TIME_MARGIN_MS, SweepFailed, accounts_in_order, handler, sweep, window_start
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
    assert "likely a shared cause" in impairment.description


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
    assert ("likely a shared cause" in impairment.description) is (severity is Severity.CRITICAL)


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


# --- member accounts --------------------------------------------------------------------------

MEMBER = "111122223333"
OTHER_MEMBER = "444455556666"


def test_an_impairment_of_a_member_carries_the_account_and_an_id_of_its_own():
    # Given the same unhealthy world (same group names, same ARNs) in this account and in a member
    here = run(unhealthy_world())
    findings, _ = sweep(unhealthy_world(), SWEPT_AT, WINDOW, SWEPT_AT, account_id=MEMBER)

    # Then the member's impairments name it, and none shares an id with this account's
    assert {i.account_id for i in here} == {None}
    assert {i.account_id for i in findings.detected} == {MEMBER}
    assert len(findings.detected) == len(here) == 2
    assert {i.impairment_id for i in here}.isdisjoint(i.impairment_id for i in findings.detected)
    # and a member's ids are as stable within a window as this account's
    again, _ = sweep(unhealthy_world(), SWEPT_AT + timedelta(minutes=1), WINDOW, SWEPT_AT, account_id=MEMBER)
    assert sorted(i.impairment_id for i in again.detected) == sorted(i.impairment_id for i in findings.detected)


def test_this_account_is_swept_first_and_the_members_in_an_order_that_turns_every_minute():
    assert accounts_in_order([], SWEPT_AT) == [None]
    minute = SWEPT_AT.replace(minute=0)  # 20:00: an even minute since the epoch
    orders = [accounts_in_order([MEMBER, OTHER_MEMBER], minute + timedelta(minutes=m)) for m in range(3)]
    assert orders == [[None, MEMBER, OTHER_MEMBER], [None, OTHER_MEMBER, MEMBER], [None, MEMBER, OTHER_MEMBER]]


class Context:
    """A Lambda context with a given time left."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms
        self.function_name = "sweep"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sweep"
        self.aws_request_id = "r"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def with_members(monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    monkeypatch.setenv("MEMBER_ROLE_NAME", "ImpairmentRecoveryMember")
    monkeypatch.setenv("MEMBER_ACCOUNTS", f'["{MEMBER}", "{OTHER_MEMBER}"]')


class Unreachable(FakeResolver):
    """An account whose first look-up fails (its role cannot be assumed, throttling, a bug)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def protected_groups(self):
        raise self.error


def members_world(failing: dict[str, Exception]):
    """Each member's inventory: unhealthy, or failing with the given error."""
    return lambda account: Unreachable(failing[account]) if account in failing else unhealthy_world()


def test_a_member_that_cannot_be_swept_is_skipped_and_the_others_are_swept(lambda_context, with_members):
    # Given a member whose role cannot be assumed
    denied = PermanentError("sts:AssumeRole failed: AccessDenied: not authorized", code="AccessDenied")
    publisher = RecordingPublisher()

    # When the sweep runs
    response = handler(
        scheduled_event(),
        lambda_context,
        inventory=healthy_world(),
        publisher=publisher,
        member_inventory=members_world({MEMBER: denied}),
    )

    # Then this account and the other member were swept, and what the other member has is published
    assert response["status"] == "published"
    assert response["accounts"] == 2
    assert response["accounts_failed"] == [{"account": MEMBER, "error": str(denied)}]
    details = [d for _, batch in publisher.published for d in batch]
    assert {d.account_id for d in details} == {OTHER_MEMBER}
    assert sorted(d.impairment_id for d in details) == sorted(response["detected"])


def test_when_no_account_can_be_swept_the_invocation_fails(lambda_context, with_members):
    throttled = TransientError("autoscaling:DescribeAutoScalingGroups failed: Throttling", code="Throttling")
    publisher = RecordingPublisher()
    own = FakeResolver(groups=[group(["Healthy"])], targets={TG: throttled})

    with pytest.raises(SweepFailed, match=r"no account could be swept: central: .*Throttling") as error:
        handler(
            scheduled_event(),
            lambda_context,
            inventory=own,
            publisher=publisher,
            member_inventory=members_world({MEMBER: throttled, OTHER_MEMBER: ValueError("a bug")}),
        )

    assert error.value.__cause__ is throttled
    failed = {f["account"]: f["error"] for f in error.value.details["accounts_failed"]}
    assert failed == {"central": str(throttled), MEMBER: str(throttled), OTHER_MEMBER: "a bug"}
    assert publisher.published == []


def test_without_members_a_failure_of_this_account_still_fails_the_invocation(lambda_context, monkeypatch):
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    denied = PermanentError("autoscaling:DescribeAutoScalingGroups failed: AccessDenied", code="AccessDenied")
    broken = Unreachable(denied)
    with pytest.raises(SweepFailed, match="central: autoscaling:DescribeAutoScalingGroups failed: AccessDenied"):
        handler(scheduled_event(), lambda_context, inventory=broken, publisher=RecordingPublisher())


def test_a_member_is_not_started_with_too_little_time_left(with_members):
    # Given an invocation with less than the margin left after this account's sweep
    started = []

    def of(account: str):
        started.append(account)
        return unhealthy_world()

    response = handler(
        scheduled_event(),
        Context(SWEEP_TIME_MARGIN_MS - 1),
        inventory=unhealthy_world(),
        publisher=RecordingPublisher(),
        member_inventory=of,
    )

    # Then this account was swept and published; the members wait for the next run, counted as not swept
    assert started == []
    assert response["status"] == "published"
    assert response["accounts"] == 1
    assert sorted(f["account"] for f in response["accounts_failed"]) == [MEMBER, OTHER_MEMBER]
