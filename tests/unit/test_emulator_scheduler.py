"""The emulator's scheduler on plain threads: one runs at a time, switching at yield points in an
order the seed fixes; sleeps, timed waits, joins and thread pools run on the virtual clock; the
clock moves only when nothing can run; closing ends the threads that are still parked."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from recoveryctl.emulator import primitives, scheduler

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _start(name: str, target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.emulator_name = name  # the kernel's own threads are fibers when named so
    thread.start()
    return thread


def _two_workers(seed: int) -> tuple[list, float]:
    log: list = []
    sched = scheduler.Scheduler(seed, workers=4, epoch=EPOCH)
    with primitives.active(sched):

        def work(name: str) -> None:
            for step in range(4):
                sched.checkpoint(f"{name}:{step}")
                log.append((name, step, sched.now))
            done = threading.Event()

            def child() -> None:
                time.sleep(10)  # virtual
                log.append((name, "child", sched.now))
                done.set()

            helper = threading.Thread(target=child)
            helper.start()
            done.wait()
            helper.join()
            with ThreadPoolExecutor(2) as pool:
                ends = list(pool.map(lambda seconds: (time.sleep(seconds), sched.now)[1], [1, 2, 3]))
            log.append((name, "pool", ends))

        for name in "AB":
            _start(name, work, name)
        sched.call_at(5, lambda: log.append(("kernel", "at 5", sched.now)))
        sched.run(timeout=30)
        return log, sched.now


def test_threads_interleave_in_an_order_the_seed_fixes():
    first, _ = _two_workers(seed=1)
    again, _ = _two_workers(seed=1)
    others = {str(_two_workers(seed)[0]) for seed in range(2, 8)}

    assert first == again
    assert others - {str(first)}, "no other seed interleaved differently"
    order = [name for name, step, _ in first if isinstance(step, int)]
    assert sorted(order) == ["A"] * 4 + ["B"] * 4


def test_sleeps_waits_joins_and_pools_run_on_the_virtual_clock():
    log, now = _two_workers(seed=3)

    # Both children slept 10 s side by side (not 20); the kernel's callback came at 5 s; the pool
    # of two ran 1, 2 and 3 s jobs in 1, 2 and 4 s
    assert ("kernel", "at 5", 5) in log
    assert sorted(entry for entry in log if entry[1] == "child") == [("A", "child", 10.0), ("B", "child", 10.0)]
    assert sorted(entry[2] for entry in log if entry[1] == "pool") == [[11.0, 12.0, 14.0]] * 2
    assert now == 14


def test_a_timed_wait_times_out_on_the_virtual_clock_and_a_notify_wakes_it_earlier():
    sched = scheduler.Scheduler(1, workers=1, epoch=EPOCH)
    seen = {}
    with primitives.active(sched):
        event = threading.Event()

        def waits(name: str, timeout: float) -> None:
            seen[name] = (event.wait(timeout), sched.now)

        def sets() -> None:
            time.sleep(50)
            event.set()

        _start("short", waits, "short", 20)
        _start("long", waits, "long", 100)
        _start("setter", sets)
        sched.run(timeout=30)

    assert seen == {"short": (False, 20.0), "long": (True, 50.0)}
    assert sched.utc_now() == datetime(2026, 1, 1, 0, 0, 50, tzinfo=UTC)


def test_run_until_stops_the_clock_there_and_closing_ends_parked_threads():
    sched = scheduler.Scheduler(1, workers=1, epoch=EPOCH)
    ended = []
    with primitives.active(sched):

        def forever() -> None:
            try:
                threading.Event().wait()  # nobody will set it
            finally:
                ended.append("unwound")

        thread = _start("forever", forever)
        sched.run(until=60, timeout=30)
        assert sched.now == 60
    # leaving the block closed the scheduler: the parked thread unwound and ended
    thread.join(5)
    assert ended == ["unwound"] and not thread.is_alive()


def test_slots_bound_the_work_in_flight():
    sched = scheduler.Scheduler(1, workers=2, epoch=EPOCH)
    in_flight, most = [0], [0]
    with primitives.active(sched):

        def job() -> None:
            sched.acquire_slot()
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            time.sleep(1)
            in_flight[0] -= 1
            sched.release_slot()

        for number in range(5):
            _start(f"job {number}", job)
        sched.run(timeout=30)

    assert most[0] == 2
    assert sched.now == 3  # five 1 s jobs, two at a time


def test_only_the_fiber_holding_the_baton_may_yield():
    sched = scheduler.Scheduler(1, workers=1, epoch=EPOCH)
    with primitives.active(sched), pytest.raises(RuntimeError, match="baton"):
        sched.checkpoint("from the kernel")
