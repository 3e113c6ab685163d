"""recoveryctl drill as a user runs it: built-in and user-written scenarios, JSON and timeline."""

from __future__ import annotations

import json

import pytest

from recoveryctl import cli

pytestmark = pytest.mark.e2e


def test_drill_json_has_what_scripts_rely_on(synthesized, capsys):
    # When
    code = cli.main(["drill", "--scenario", "instance-failure", "--json", "--template", str(synthesized.template_path)])

    # Then
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["scenario"] == "instance-failure"
    assert report["outcome"] == "recovered"
    assert set(report["execution"]) >= {"name", "status", "states"}
    assert report["execution"]["name"] == report["impairment_id"]
    assert report["actions"][0]["type"] == "replace_instance"
    assert report["executions_started"] == 1
    assert isinstance(report["transitions"], int) and report["transitions"] > 0
    assert isinstance(report["mttd_seconds"], float) and isinstance(report["mttr_seconds"], float)


def test_timeline_reads_from_signal_to_outcome(synthesized, capsys):
    code = cli.main(["drill", "--scenario", "instance-failure", "--template", str(synthesized.template_path)])

    out = capsys.readouterr().out
    assert code == 0
    order = [out.index(word) for word in ("signal", "detected", "execution", "ReplaceInstance", "outcome")]
    assert order == sorted(order)
    assert "recovered" in out and "MTTR" in out and "MTTD" in out


def test_user_written_scenario_file(synthesized, tmp_path, capsys):
    # Given a scenario of the user's own: two of six instances fail (a third of the group: within
    # the blast radius), a throttled first terminate call (retried by the state machine), and an
    # expectation
    path = tmp_path / "two-down.json"
    path.write_text(
        json.dumps(
            {
                "name": "two-down",
                "description": "two instances fail at once",
                "group": {"min_size": 2, "max_size": 8, "desired": 6},
                "instance_faults": [{"kind": "stop", "count": 2}],
                "api_faults": [
                    {
                        "service": "auto-scaling",
                        "operation": "TerminateInstanceInAutoScalingGroup",
                        "error_code": "Throttling",
                        "times": 1,
                    }
                ],
                "signals": [{"alarm": "{workload}-status-check"}],
                "expect": {"outcome": "recovered"},
            }
        )
    )

    # When
    code = cli.main(["drill", "--scenario", str(path), "--json", "--template", str(synthesized.template_path)])

    # Then both instances are replaced, after one retried throttle
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["outcome"] == "recovered"
    replaced = set(report["workload"]["impaired_instances"])
    assert len(replaced) == 2 and not replaced & set(report["workload"]["after"]["in_service"])
    assert any("Throttling" in e for e in report["lambda_errors"])


def test_unmet_expectation_exits_non_zero(synthesized, tmp_path, capsys):
    path = tmp_path / "wrong.json"
    path.write_text(
        json.dumps(
            {
                "name": "wrong",
                "instance_faults": [{"kind": "stop"}],
                "signals": [{"alarm": "{workload}-status-check"}],
                "expect": {"outcome": "escalated"},
            }
        )
    )
    assert cli.main(["drill", "--scenario", str(path), "--template", str(synthesized.template_path)]) == 1


@pytest.mark.parametrize(
    ("argument", "message"),
    [("no-such-scenario", "built-in scenarios: action-failure-rollback"), ("{bad}.json", "cannot read scenario")],
)
def test_bad_scenarios_are_explained(synthesized, argument, message, capsys):
    assert cli.main(["drill", "--scenario", argument, "--template", str(synthesized.template_path)]) == 2
    assert message in capsys.readouterr().err


def test_invalid_scenario_file_names_the_field(synthesized, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "signals": [{"alarm": "x", "state": "BROKEN"}]}))
    assert cli.main(["drill", "--scenario", str(path), "--template", str(synthesized.template_path)]) == 2
    assert "signals.0.state" in capsys.readouterr().err


def test_missing_cloud_assembly_says_what_to_do(tmp_path, capsys):
    assert cli.main(["drill", "--scenario", "instance-failure", "--cdk-out", str(tmp_path / "none")]) == 2
    assert "make synth" in capsys.readouterr().err


def test_an_event_whose_time_is_not_a_timestamp_is_placed_when_fired_and_said_so(synthesized, tmp_path, capsys):
    # Given a user's event signal whose time is any string
    state_change = {
        "version": "0",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "{account}",
        "time": "yesterday",
        "region": "{region}",
        "resources": ["arn:aws:ec2:{region}:{account}:instance/{instance}"],
        "detail": {"instance-id": "{instance}", "state": "stopped"},
    }
    path = tmp_path / "bad-time.json"
    path.write_text(
        json.dumps(
            {
                "name": "bad-time",
                "instance_faults": [{"kind": "stop"}],
                "signals": [{"event": state_change}],
                "expect": {"outcome": "nothing_started", "final_state": {"impaired_in_service": 1}},
            }
        )
    )

    # When it is drilled, as a timeline
    code = cli.main(["drill", "--scenario", str(path), "--template", str(synthesized.template_path)])

    # Then the timeline prints (the detector refuses such an event: nothing started), the signal
    # at the time the drill fired it, saying its own time is not one
    out, err = capsys.readouterr()
    assert code == 0, out
    assert "Traceback" not in out + err
    text = " ".join(out.split())
    assert (
        "signal event aws.ec2 EC2 Instance State-change Notification (its time 'yesterday' is not a timestamp)" in text
    )
    assert "outcome nothing started" in text


def test_a_drill_replays_with_its_seed_and_says_how(synthesized, capsys):
    # Given the two recoveries of one group at once, run with a seed and with several workers
    args = ["drill", "--scenario", "two-failures-at-once", "--template", str(synthesized.template_path)]
    cli.main([*args, "--json", "--seed", "7", "--workers", "4"])
    first = json.loads(capsys.readouterr().out)

    # When it runs again with the same seed, and once more printing the timeline
    cli.main([*args, "--json", "--seed", "7", "--workers", "4"])
    again = json.loads(capsys.readouterr().out)
    cli.main([*args, "--seed", "7", "--workers", "4"])
    timeline = capsys.readouterr().out

    # Then the report says which seed ran, and the same seed interleaved the same calls
    assert first["interleaving"]["seed"] == 7 and first["interleaving"]["workers"] == 4
    assert again["interleaving"] == first["interleaving"]
    assert again["outcomes"] == first["outcomes"]
    assert [e["outcome"] for e in again["executions"]] == [e["outcome"] for e in first["executions"]]
    assert f"seed 7, 4 workers: {first['interleaving']['api_calls']} AWS calls interleaved" in timeline
    assert f"(digest {first['interleaving']['digest']}); replay with --seed 7" in timeline


def test_workers_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        cli.main(["drill", "--scenario", "instance-failure", "--workers", "0"])
    assert "must be at least 1" in capsys.readouterr().err
