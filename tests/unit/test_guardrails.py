"""The guardrails' decisions (core/guardrails.py): pure functions over the facts CheckGuardrails
gathers, so each rule is checked here on its edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import guardrails, history
from core.guardrails import BlastRadius, FailOpen, Flapping, Maintenance
from core.model import ValidationError


def _group(size: int, min_size: int = 1, desired: int | None = None, **extra) -> dict:
    return {
        "AutoScalingGroupName": "web",
        "MinSize": min_size,
        "DesiredCapacity": size if desired is None else desired,
        "Instances": [{"InstanceId": f"i-{n}", "LifecycleState": "InService"} for n in range(size)],
        **extra,
    }


@pytest.mark.parametrize(("size", "limit"), [(1, 1), (2, 1), (3, 1), (5, 1), (6, 2), (9, 3), (10, 3), (300, 100)])
def test_blast_radius_limit_is_a_third_rounded_down_but_at_least_one(size, limit):
    assert guardrails.blast_radius_limit(size, 1 / 3) == limit


def test_blast_radius_allows_the_share_and_defers_the_rest():
    group = _group(6, min_size=2)
    healthy = {f"i-{n}" for n in range(3, 6)}  # i-0..i-2 are the impaired ones

    allowed, deferred, trip = guardrails.blast_radius(["i-0", "i-1", "i-2"], set(), group, healthy, BlastRadius())

    assert allowed == ["i-0", "i-1"] and deferred == ["i-2"]
    assert trip is not None and trip.guardrail == "blast_radius"
    assert trip.evidence["limit"] == 2 and trip.evidence["deferred"] == ["i-2"]


def test_blast_radius_counts_what_other_recoveries_acted_on_in_the_window():
    group = _group(6, min_size=2)
    allowed, deferred, trip = guardrails.blast_radius(["i-2"], {"i-0", "i-1"}, group, set(), BlastRadius())
    assert allowed == [] and deferred == ["i-2"] and trip is not None


def test_blast_radius_never_takes_a_group_below_its_minimum_healthy_capacity():
    # Given a group of six that must keep five healthy (instance maintenance policy: 80 % of 6)
    group = _group(6, min_size=2, InstanceMaintenancePolicy={"MinHealthyPercentage": 80})
    healthy = {f"i-{n}" for n in range(6)}  # the load balancer says i-0 and i-1 are bad; the group does not

    allowed, deferred, trip = guardrails.blast_radius(["i-0", "i-1"], set(), group, healthy, BlastRadius())

    # Then one may go (five stay healthy), not two, though the share would allow two
    assert guardrails.minimum_healthy(group) == 5
    assert allowed == ["i-0"] and deferred == ["i-1"]
    assert trip is not None and trip.evidence["minimum_healthy"] == 5


def test_an_unhealthy_instance_does_not_count_against_the_minimum_healthy_capacity():
    group = _group(2, min_size=2)
    allowed, deferred, trip = guardrails.blast_radius(["i-0"], set(), group, {"i-1"}, BlastRadius())
    assert allowed == ["i-0"] and deferred == [] and trip is None


def test_a_retry_keeps_what_it_already_holds():
    group = _group(3)
    allowed, _, trip = guardrails.blast_radius(["i-0"], {"i-0"}, group, set(), BlastRadius())
    assert allowed == ["i-0"] and trip is None


@pytest.mark.parametrize(
    ("impaired", "fleet", "trips"),
    [(2, 4, False), (3, 4, True), (5, 8, True), (4, 8, False), (60, 100, True), (50, 100, False)],
)
def test_fail_open_when_more_than_half_a_fleet_of_four_or_more_looks_impaired(impaired, fleet, trips):
    trip = guardrails.fail_open({f"i-{n}" for n in range(impaired)}, {f"i-{n}" for n in range(fleet)}, FailOpen())
    assert (trip is not None) is trips
    if trip:
        assert trip.guardrail == "fail_open" and trip.evidence["fleet_size"] == fleet


@pytest.mark.parametrize(("impaired", "fleet"), [(1, 1), (2, 2), (2, 3), (3, 3)])
def test_a_small_fleet_is_recovered_whatever_its_share(impaired, fleet):
    # One instance of one is 100 %: below min_fleet (4) the share says nothing about a shared cause
    impaired_ids, fleet_ids = {f"i-{n}" for n in range(impaired)}, {f"i-{n}" for n in range(fleet)}
    assert guardrails.fail_open(impaired_ids, fleet_ids, FailOpen()) is None


def test_the_minimum_fleet_is_configurable():
    settings = FailOpen(min_fleet=2)
    trip = guardrails.fail_open({"i-0", "i-1"}, {"i-0", "i-1", "i-2"}, settings, group="web")
    assert trip is not None and trip.evidence["group"] == "web" and "of group web" in trip.reason


def test_a_count_bounds_a_large_fleet_whatever_its_share():
    # 30 of 100 is under half, but more than the 20 at once this deployment tolerates
    settings = FailOpen(max_impaired=20)
    fleet = {f"i-{n}" for n in range(100)}
    assert guardrails.fail_open({f"i-{n}" for n in range(20)}, fleet, settings) is None
    trip = guardrails.fail_open({f"i-{n}" for n in range(30)}, fleet, settings)
    assert trip is not None and "more than 20 at once" in trip.reason
    # and at any size: even a fleet below min_fleet
    assert guardrails.fail_open({"i-0", "i-1"}, {"i-0", "i-1"}, FailOpen(max_impaired=1)) is not None


def test_fail_open_ignores_instances_outside_the_fleet():
    fleet = {"i-0", "i-1", "i-2", "i-3"}
    assert guardrails.fail_open({"i-x", "i-y", "i-z", "i-0"}, fleet, FailOpen()) is None


def _recovered(n: int, minutes_ago: int, now: datetime, resource: str = "i-old", group: str = "web") -> dict:
    return {
        "impairment_id": f"prev-{n}",
        "outcome": "recovered",
        "resolved_at": (now - timedelta(minutes=minutes_ago)).isoformat(),
        "impairment": {
            "impairment_type": "instance_failure",
            "affected_resources": [{"resource_type": "ec2:instance", "resource_id": resource}],
            "scope": {"auto_scaling_group": group},
        },
    }


def _impairment(resource: str = "i-new", group: str | None = "web") -> dict:
    return {
        "impairment_id": "now",
        "impairment_type": "instance_failure",
        "affected_resources": [{"resource_type": "ec2:instance", "resource_id": resource}],
        "scope": {"auto_scaling_group": group} if group else {},
    }


def _checked(impairment: dict, previous: list[dict], now: datetime, settings: Flapping | None = None):
    """The flapping decision as CheckGuardrails makes it: from the history items Finalize wrote
    for each previous recovery (core/history.py), those the impairment is checked against."""
    items: dict[str, dict] = {}
    for record in previous:
        for key in history.noted_keys({**record["impairment"], "impairment_id": record["impairment_id"]}, None):
            items.setdefault(key, {})[history.RECOVERED + record["impairment_id"]] = record["resolved_at"]
    read = [items[k] for k in history.keys(impairment) if k in items]
    return guardrails.flapping(impairment, history.recoveries(read), settings or Flapping(), now)


def test_flapping_trips_after_the_limit_of_recoveries_of_the_same_group_in_the_window():
    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    previous = [_recovered(n, 10 * n + 5, now, resource=f"i-{n}") for n in range(3)]

    trip = _checked(_impairment(), previous, now)

    assert trip is not None and trip.guardrail == "flapping"
    assert sorted(trip.evidence["previous_recoveries"]) == ["prev-0", "prev-1", "prev-2"]
    assert "group web was recovered 3 times in the last 60 min" in trip.reason


def test_flapping_ignores_old_and_unrelated_recoveries():
    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    previous = [
        _recovered(0, 5, now),
        _recovered(1, 90, now),  # outside the hour
        _recovered(3, 5, now, resource="i-other", group="another-group"),  # another group
        {**_recovered(4, 5, now), "impairment": {**_recovered(4, 5, now)["impairment"], "impairment_type": "x"}},
    ]
    assert _checked(_impairment(), previous, now) is None
    # a 4th of the same group and kind within the hour, and a repeat of itself, make 2: still under 3
    assert (
        _checked(
            _impairment(), [*previous, _recovered(5, 1, now), {**_recovered(6, 1, now), "impairment_id": "now"}], now
        )
        is None
    )


def test_flapping_of_the_same_resource_without_a_group():
    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    previous = [_recovered(n, 5 + n, now, resource="db-1", group="x") for n in range(3)]
    trip = _checked(_impairment(resource="db-1", group=None), previous, now)
    assert trip is not None and "ec2:instance/db-1 was recovered 3 times" in trip.reason


def test_recoveries_counted_once_across_resource_and_group_items_and_stale_ones_listed():
    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    # the same recovery in its resource's item and its group's item: one repeat, not two
    previous = [_recovered(0, 5, now, resource="i-new"), _recovered(1, 6, now)]
    assert _checked(_impairment(), previous, now, Flapping(max_recoveries=2)) is not None
    assert _checked(_impairment(), previous[:1], now, Flapping(max_recoveries=2)) is None
    items = {
        "FLAP#group#web#instance_failure": {
            "pk": "x",
            "recovered#a": (now - timedelta(hours=2)).isoformat(),
            "recovered#b": now.isoformat(),
        }
    }
    assert history.stale(items, now - timedelta(hours=1)) == {"FLAP#group#web#instance_failure": ["recovered#a"]}


def test_a_groups_history_is_read_from_every_shard_and_noted_in_its_slots_one():
    impairment = {**_impairment(), "impairment_id": "a"}
    group = "FLAP#group#web#instance_failure"
    # every shard is read, shard 0 under the key of the version before the shards
    assert history.keys(impairment) == [
        "FLAP#ec2:instance/i-new",
        group,
        *(f"{group}#{i}" for i in range(1, history.GROUP_SHARDS)),
    ]
    # a recovery notes its group's shard of its concurrency slot's index: slots held at once
    # (distinct indexes) spread evenly, at most ceil(slots / shards) on one
    shards = [history.noted_keys(impairment, f"BUDGET#concurrency#{n}")[-1] for n in range(25)]
    assert set(shards) == set(history.keys(impairment)[1:])
    assert max(shards.count(k) for k in shards) == -(-25 // history.GROUP_SHARDS)
    # without a slot (a state from before), a hash of its id: the same each time
    assert history.noted_keys(impairment, None) == history.noted_keys(impairment, None)
    assert history.noted_keys(impairment, None)[-1] in history.keys(impairment)
    # no group: its resources only
    assert history.noted_keys(_impairment(group=None), "BUDGET#concurrency#3") == ["FLAP#ec2:instance/i-new"]


def test_check_guardrails_reads_a_six_instance_impairments_history_and_budgets_in_one_batch_get():
    from core import clock
    from core.guardrails import Guardrails
    from orchestration import check_guardrails
    from tests.builders import impairment

    # Given an impairment of six instances of a group (fail open's drill) and the default limits
    model = impairment(instances=[f"i-{n:017x}" for n in range(6)], scope={"auto_scaling_group": "web"})
    plan = {"name": "replace", "steps": [{"index": 0, "action": "replace_instance", "params": {}}]}
    claims = check_guardrails._claims(model, plan, Guardrails(), clock.utc_now(), 900)

    # Then its first read (every shard of the group's history with the budgets) is one
    # BatchGetItem: 100 keys at most
    keys = check_guardrails._first_read(model, claims)
    assert len(set(keys)) <= 100
    assert sum(1 for pk, _ in keys if pk.startswith("FLAP#group#")) == history.GROUP_SHARDS


def test_maintenance_windows_and_blocked_dates_in_the_workloads_time_zone():
    maintenance = Maintenance.model_validate(
        {
            "timezone": "Europe/Paris",
            "windows": [{"days": ["sun"], "start": "22:00", "end": "02:00"}],
            "blocked_dates": ["2026-12-24"],
        }
    )
    # Sunday 2026-11-22 23:30 in Paris is 22:30 UTC: inside the window
    assert "maintenance window" in maintenance.blocks(datetime(2026, 11, 22, 22, 30, tzinfo=UTC))
    # Monday 01:30 in Paris (00:30 UTC): still inside, past midnight
    assert maintenance.blocks(datetime(2026, 11, 23, 0, 30, tzinfo=UTC))
    # Monday 02:30 in Paris: outside
    assert maintenance.blocks(datetime(2026, 11, 23, 1, 30, tzinfo=UTC)) is None
    # Saturday 23:30: the window is on Sundays only
    assert maintenance.blocks(datetime(2026, 11, 21, 22, 30, tzinfo=UTC)) is None
    # 2026-12-24 00:30 in Paris is 2026-12-23 23:30 UTC: a blocked date in the workload's zone
    assert "blocked date" in maintenance.blocks(datetime(2026, 12, 23, 23, 30, tzinfo=UTC))
    assert maintenance.blocks(datetime(2026, 12, 23, 22, 30, tzinfo=UTC)) is None


def test_a_window_in_utc_is_judged_without_importing_zoneinfo_and_the_same_as_with_it():
    # zoneinfo (and the tz search path it reads at import) costs a first invocation several ms:
    # only a workload that names another zone pays for it.
    import os
    import subprocess
    import sys
    from pathlib import Path

    functions = Path(__file__).resolve().parents[2] / "functions"
    probe = (
        "import sys; from datetime import datetime, UTC; import orchestration.admit, orchestration.check_guardrails\n"
        "from core.guardrails import Maintenance\n"
        "m = Maintenance.model_validate({'windows': [{'days': ['sun'], 'start': '22:00', 'end': '02:00'}]})\n"
        "print(bool(m.blocks(datetime(2026, 11, 22, 23, 30, tzinfo=UTC))), 'zoneinfo' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(functions), "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["True", "False"]
    utc = Maintenance.model_validate(
        {"timezone": "Etc/UTC", "windows": [{"days": ["sun"], "start": "22:00", "end": "02:00"}]}
    )
    assert utc.blocks(datetime(2026, 11, 22, 23, 30, tzinfo=UTC))  # the same window through zoneinfo


def test_no_maintenance_configured_blocks_nothing():
    assert Maintenance().blocks(datetime(2026, 11, 24, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"timezone": "Mars/Olympus"},
        {"windows": [{"start": "02:00", "end": "02:00"}]},
        {"windows": [{"days": ["someday"], "start": "02:00", "end": "03:00"}]},
        {"windows": [{"days": [], "start": "02:00", "end": "03:00"}]},
        {"blocked_dates": ["24/12/2026"]},
        {"windows": [{"start": "2:00", "end": "03:00"}]},
        {"windows": [{"start": "02:00", "end": "24:00"}]},
        {"windows": [{"start": "02:00", "end": "02:00:00"}]},
    ],
)
def test_bad_maintenance_configuration_is_refused(raw):
    with pytest.raises(ValidationError):
        Maintenance.model_validate(raw)


def test_a_window_is_given_in_minutes_or_seconds_and_its_problems_have_their_paths():
    maintenance = Maintenance.model_validate(
        {"timezone": "Europe/Paris", "windows": [{"days": ["mon"], "start": "01:30", "end": "01:45:30"}]}
    )
    assert maintenance.blocks(datetime(2026, 11, 23, 0, 40, tzinfo=UTC)) is not None  # 01:40 in Paris
    assert maintenance.blocks(datetime(2026, 11, 23, 0, 46, tzinfo=UTC)) is None

    with pytest.raises(ValidationError) as raised:
        Maintenance.model_validate({"timezone": "Mars/Olympus", "windows": [{"start": "02:00", "end": "02:00"}]})
    assert [(e["loc"], e["msg"]) for e in raised.value.errors()] == [
        (("timezone",), "unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Paris)"),
        (("windows", 0), "a maintenance window's start and end must differ"),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        {"blast_radius": {"max_share": 0}},
        {"blast_radius": {"max_share": 1.5}},
        {"fail_open": {"impaired_share": 0}},
        {"rate_limits": {"max_concurrent": 0}},
        {"flapping": {"max_recoveries": 0}},
        {"unknown": {}},
    ],
)
def test_bad_guardrail_settings_are_refused(raw):
    with pytest.raises(ValidationError):
        guardrails.Guardrails.model_validate(raw)
