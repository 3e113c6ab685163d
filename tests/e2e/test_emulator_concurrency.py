"""The emulator runs like AWS, concurrently: handlers of different deliveries interleave at their
AWS calls, each with its own environment and Powertools state, in an order fixed by the seed; the
virtual clock moves only when nothing can run; executions announce their status changes and end
TIMED_OUT past their TimeoutSeconds. Small stacks built in the test (tests/e2e/emulated.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from recoveryctl.emulator.runtime import Emulator
from tests.e2e import emulated

pytestmark = pytest.mark.e2e

SEEDS = range(20)


@pytest.fixture
def probes(tmp_path: Path) -> Path:
    """Two functions, alpha and beta, each with its own PROBE_VALUE, each behind its own rule."""
    return emulated.template(
        tmp_path,
        {
            "Alpha": emulated.function("alpha", "probe", PROBE_VALUE="alpha"),
            "Beta": emulated.function("beta", "probe", PROBE_VALUE="beta"),
            "ToAlpha": emulated.rule("to-alpha", {"detail-type": ["alpha"]}, "alpha"),
            "ToBeta": emulated.rule("to-beta", {"detail-type": ["beta"]}, "beta"),
        },
    )


def _run_probes(template: Path, seed: int, workers: int = 8, **asked: Any) -> dict[str, Any]:
    """Deliver an alpha and a beta event at once; what the handlers saw, in order, and the trace."""
    emulated.SEEN.clear()
    with Emulator(template, seed=seed, workers=workers) as emulator:
        emulator.put_event(emulated.event("alpha", **asked))
        emulator.put_event(emulated.event("beta", **asked))
        emulator.pump()
        trace = [(s.fiber, s.actor.split("#")[0], s.call) for s in emulator.scheduler.trace]
        return {
            "seen": list(emulated.SEEN),
            "order": [s["function"] for s in emulated.SEEN],
            "trace": trace,
            "digest": emulator.interleaving()["digest"],
            "now": emulator.now,
            "invocations": list(emulator.invocations),
        }


def _interleaved(order: list[str]) -> bool:
    """More than two runs of the same function in a row: one ran between two calls of the other."""
    runs = sum(1 for i, name in enumerate(order) if i == 0 or order[i - 1] != name)
    return runs > 2


def _first_interleaving_seed(template: Path) -> tuple[int, dict[str, Any]]:
    for seed in SEEDS:
        run = _run_probes(template, seed)
        if _interleaved(run["order"]):
            return seed, run
    pytest.fail(f"no seed in {SEEDS} interleaved the two handlers")


def test_handlers_of_two_deliveries_interleave_at_their_aws_calls_within_the_workers(probes):
    # Given two events delivered at once to two functions that each make three AWS calls
    _, run = _first_interleaving_seed(probes)

    # Then one handler ran between two calls of the other (both were in flight at once)
    assert _interleaved(run["order"]), run["order"]
    assert sorted(run["order"]) == ["alpha"] * 3 + ["beta"] * 3
    # And with one worker (one invocation in flight at a time) they never interleave, whatever the seed
    for other in list(SEEDS)[:5]:
        assert not _interleaved(_run_probes(probes, other, workers=1)["order"])


def test_the_same_seed_replays_the_same_interleaving_and_another_seed_may_not(probes):
    seed, first = _first_interleaving_seed(probes)

    again = _run_probes(probes, seed)

    assert again["trace"] == first["trace"]
    assert again["order"] == first["order"]
    assert again["digest"] == first["digest"]
    others = {_run_probes(probes, other)["digest"] for other in SEEDS if other != seed}
    assert others - {first["digest"]}, "every seed gave the same interleaving"


def test_each_invocation_sees_its_own_functions_environment_while_they_interleave(probes):
    _, run = _first_interleaving_seed(probes)

    for seen in run["seen"]:
        # os.environ[...], os.getenv and a copy of the whole environment all agree
        assert seen["value"] == seen["getenv"] == seen["listed"] == seen["function"], seen
        assert seen["region"] == "us-east-1"
    assert [i.result["value"] for i in run["invocations"]] == [i.function for i in run["invocations"]]
    # and nothing leaked into the process's own environment
    assert "PROBE_VALUE" not in os.environ


def test_interleaved_invocations_flush_their_own_metrics_and_log_their_own_keys(tmp_path):
    template = emulated.template(
        tmp_path,
        {
            "One": emulated.function("one", "measured"),
            "Ten": emulated.function("ten", "measured"),
            "ToOne": emulated.rule("to-one", {"detail-type": ["one"]}, "one"),
            "ToTen": emulated.rule("to-ten", {"detail-type": ["ten"]}, "ten"),
        },
    )
    for seed in SEEDS:
        with Emulator(template, seed=seed) as emulator:
            emulator.put_event(emulated.event("one", value=1))
            emulator.put_event(emulated.event("ten", value=10))
            emulator.pump()
            calls = [s.actor.split("#")[0] for s in emulator.scheduler.trace]
            log = emulator.log.getvalue()
        if _interleaved(calls):
            break
    else:
        pytest.fail("the two invocations never interleaved")

    documents = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"_aws"' in line]
    # Each invocation flushed its own value, in a document of its own: none lost, none mixed
    assert sorted(d["ProbeValue"] for d in documents) == [[1.0], [10.0]]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"probe' in line]
    assert len(lines) == 4
    for line in lines:
        expected = {1: ("one", "event-one"), 10: ("ten", "event-ten")}[line["probe"]]
        assert (line["function_name"], line["correlation_id"]) == expected, line


def test_the_virtual_clock_moves_only_when_nothing_can_run(tmp_path):
    # Two executions wait 30 s each, at the same time; a handler sleeps 10 s
    template = emulated.template(
        tmp_path,
        {
            "Waiter": emulated.state_machine(
                "waiter",
                {
                    "StartAt": "Wait",
                    "States": {"Wait": {"Type": "Wait", "Seconds": 30, "Next": "Done"}, "Done": {"Type": "Succeed"}},
                },
            ),
            "Alpha": emulated.function("alpha", "probe", PROBE_VALUE="alpha"),
            "ToAlpha": emulated.rule("to-alpha", {"detail-type": ["alpha"]}, "alpha"),
        },
    )
    with Emulator(template, seed=1) as emulator:
        sfn = emulator.client("stepfunctions")
        arn = emulator.state_machine_arn
        for name in ("first", "second"):
            sfn.start_execution(stateMachineArn=arn, name=name, input="{}")
        emulator.put_event(emulated.event("alpha", calls=1, sleep=10))
        emulator.pump()

        # Then both ended 30 s later (not 60: they waited side by side), and the sleep took no longer
        assert {e["status"] for e in emulator.executions()} == {"SUCCEEDED"}
        assert emulator.now == 30
        described = [sfn.describe_execution(executionArn=e["executionArn"]) for e in emulator.executions()]
        took = {d["name"]: (d["stopDate"] - d["startDate"]).total_seconds() for d in described}
        assert took == {"first": 30, "second": 30}


@pytest.fixture
def machines(tmp_path: Path) -> Path:
    """State machines that succeed after a wait, fail in a task, or outlast their time-box, and a
    rule sending every Step Functions status change to a recording function."""
    wait_then = {
        "Wait": {"Type": "Wait", "Seconds": 30, "Next": "Done"},
        "Done": {"Type": "Succeed", "OutputPath": "$"},
    }
    return emulated.template(
        tmp_path,
        {
            "Waiter": emulated.state_machine("waiter", {"StartAt": "Wait", "States": wait_then}),
            "Boxed": emulated.state_machine(
                "boxed",
                {
                    "StartAt": "Wait",
                    "TimeoutSeconds": 50,
                    "States": {"Wait": {"Type": "Wait", "Seconds": 100, "Next": "Done"}, "Done": {"Type": "Succeed"}},
                },
            ),
            "Failing": emulated.state_machine(
                "failing",
                {
                    "StartAt": "Task",
                    "States": {
                        "Task": {
                            "Type": "Task",
                            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:failing",
                            "End": True,
                        }
                    },
                },
            ),
            "FailingFunction": emulated.function("failing", "fail"),
            "Recorder": emulated.function("recorder", "record"),
            "StatusChanges": emulated.rule(
                "status-changes",
                {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]},
                "recorder",
            ),
        },
    )


def _machine(emulator: Emulator, name: str) -> str:
    return f"arn:aws:states:us-east-1:123456789012:stateMachine:{name}"


def test_status_changes_are_announced_on_the_default_bus_and_routed_by_its_rules(machines):
    emulated.SEEN.clear()
    with Emulator(machines, seed=3) as emulator:
        sfn = emulator.client("stepfunctions")
        sfn.start_execution(stateMachineArn=_machine(emulator, "waiter"), name="succeeds", input='{"n": 1}')
        sfn.start_execution(stateMachineArn=_machine(emulator, "failing"), name="fails", input="{}")
        aborted = sfn.start_execution(stateMachineArn=_machine(emulator, "waiter"), name="aborted", input="{}")
        # An operator stops one 10 s in, during its wait
        emulator.schedule(10, lambda: sfn.stop_execution(executionArn=aborted["executionArn"]))
        emulator.pump()
        on_bus = [e for e in emulator.events if e["detail-type"] == "Step Functions Execution Status Change"]
        statuses = {
            e["name"]: e["status"]
            for m in ("waiter", "failing")
            for e in sfn.list_executions(stateMachineArn=_machine(emulator, m))["executions"]
        }

    assert statuses == {"succeeds": "SUCCEEDED", "fails": "FAILED", "aborted": "ABORTED"}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in on_bus:
        assert event["bus"] == "default" and event["source"] == "aws.states"
        assert event["resources"] == [event["detail"]["executionArn"]]
        by_name.setdefault(event["detail"]["name"], []).append(event["detail"])
    assert {n: [d["status"] for d in ds] for n, ds in by_name.items()} == {
        "succeeds": ["RUNNING", "SUCCEEDED"],
        "fails": ["RUNNING", "FAILED"],
        "aborted": ["RUNNING", "ABORTED"],
    }
    keys = {
        "executionArn",
        "stateMachineArn",
        "name",
        "status",
        "startDate",
        "stopDate",
        "input",
        "inputDetails",
        "output",
        "outputDetails",
        "error",
        "cause",
    }
    for details in by_name.values():
        running, ended = details
        assert set(running) == keys == set(ended)
        assert running["stopDate"] is None and isinstance(ended["stopDate"], int)
        assert isinstance(running["startDate"], int) and running["startDate"] == ended["startDate"]
    succeeded = by_name["succeeds"][1]
    assert (succeeded["input"], json.loads(succeeded["output"])) == ('{"n": 1}', {"n": 1})
    assert succeeded["stopDate"] - succeeded["startDate"] == 30_000  # epoch millis, on the virtual clock
    failed = by_name["fails"][1]
    assert failed["output"] is None and failed["error"] and "failed on purpose" in failed["cause"]
    assert by_name["aborted"][1]["stopDate"] - by_name["aborted"][1]["startDate"] == 10_000
    # And they were routed by the rule like any event: the recording function got each of them
    recorded = [s["event"]["detail"]["status"] for s in emulated.SEEN if s["function"] == "recorder"]
    assert sorted(recorded) == sorted(d["status"] for ds in by_name.values() for d in ds)


def test_an_execution_over_its_timeout_ends_timed_out_on_the_virtual_clock(machines):
    with Emulator(machines, seed=1) as emulator:
        sfn = emulator.client("stepfunctions")
        started = sfn.start_execution(stateMachineArn=_machine(emulator, "boxed"), name="boxed", input="{}")
        emulator.pump()
        described = sfn.describe_execution(executionArn=started["executionArn"])
        announced = [e["detail"] for e in emulator.events if e["source"] == "aws.states"]

    # TimeoutSeconds 50 with a 100 s wait: it times out 50 s in (virtual), not after 100
    assert described["status"] == "TIMED_OUT"
    assert emulator.now == 50
    assert [d["status"] for d in announced] == ["RUNNING", "TIMED_OUT"]
    assert announced[1]["stopDate"] - announced[1]["startDate"] == 50_000


def test_api_faults_slow_down_or_fail_after_some_calls_and_only_where_scoped(probes):
    def run(**fault: Any) -> tuple[list[Any], float]:
        emulated.SEEN.clear()
        with Emulator(probes, seed=1) as emulator:
            emulator.inject_fault("sqs", "ListQueues", **fault)
            # the drill's own calls are not affected
            emulator.client("sqs").list_queues()
            emulator.put_event(emulated.event("alpha"))
            emulator.pump()
            return [(i.ok, i.error) for i in emulator.invocations], emulator.now

    # 5 s of added latency per call: three calls take 15 s of virtual time
    assert run(error_code=None, latency_seconds=5) == ([(True, None)], 15)
    # fails after two successful calls, once: the third call of the first attempt fails, the retry succeeds
    outcomes, _ = run(error_code="Throttling", after=2, times=1)
    assert [ok for ok, _ in outcomes] == [False, True] and "Throttling" in outcomes[0][1]
    # scoped to another account, or to another region: nothing fails
    assert run(error_code="AccessDenied", account="999988887777")[0] == [(True, None)]
    assert run(error_code="AccessDenied", region="us-west-2")[0] == [(True, None)]
    assert run(error_code="AccessDenied", account="123456789012", region="us-east-1")[0][0][0] is False
