"""Deterministic concurrency for the emulator: real threads, one running at a time, on a virtual
clock, the next one chosen at each yield point by a seeded generator, so that races between
concurrent recoveries show and a drill that showed one replays exactly with its seed.
primitives.py patches Python's threading primitives onto it while it runs (`primitives.active`).
docs/emulator.md ("The scheduler") tells how.
"""

from __future__ import annotations

import _thread
import heapq
import itertools
import random
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Per thread: .fiber (the Fiber the thread is), .context (what a handler's threads share: the
# running invocation, see isolation.py; copied to threads it starts).
_local = threading.local()
# The scheduler whose patches are installed (one emulator at a time in a process; primitives.py
# installs them).
_active: Scheduler | None = None

# The real monotonic clock (time.monotonic is the virtual one for fibers while a scheduler runs).
_orig_monotonic = time.monotonic


class EmulatorClosed(SystemExit):
    """Raised in a fiber's thread when the emulator shuts down while it is parked: its thread
    unwinds and ends. A SystemExit, so that the `except Exception` of the code it unwinds through
    (handlers, moto) does not catch it."""


class Fiber:
    """One thread under the scheduler: it runs only while it holds the baton."""

    def __init__(self, scheduler: Scheduler, number: int, name: str) -> None:
        self.scheduler = scheduler
        self.number = number  # creation order: deterministic, unlike thread idents and names
        self.name = name
        self._turn = _thread.allocate_lock()  # released by whoever hands this fiber the baton
        self._turn.acquire()
        self.token = 0  # changes at every wake-up, so that an older timeout entry is ignored
        self.notified = False
        self.waiting_on: Any = None  # the Condition whose waiters list holds this fiber
        self.done = False
        self.joiners: list[Fiber] = []
        self.busy = 0.0  # real seconds this fiber held the baton
        self._since = 0.0

    def __repr__(self) -> str:
        return f"<fiber {self.number} {self.name}>"


@dataclass(frozen=True)
class Step:
    """A yield point in the interleaving: at virtual second `at`, fiber `fiber` (running `actor`,
    a handler invocation or the emulator's own thread) was about to make `call`."""

    at: float
    fiber: int
    actor: str
    call: str
    params: Any = None


class Scheduler:
    """The baton, the virtual clock and the agenda. See the module docstring."""

    def __init__(self, seed: int, workers: int, epoch: datetime, trace_params: bool = True) -> None:
        self.seed = seed
        # Whether the trace keeps each call's parameters (tests read them; a storm's would fill memory)
        self.trace_params = trace_params
        self.workers = workers  # Lambda invocations in flight at once
        self.epoch = epoch  # the virtual clock's second 0
        self.now = 0.0  # virtual seconds since the epoch
        self._rng = random.Random(seed)
        self._mutex = _thread.allocate_lock()  # guards everything below; never held while parked
        self._ready: list[Fiber] = []
        self._agenda: list[tuple[float, int, Any]] = []  # (when, order, entry)
        self._order = itertools.count()
        self._numbers = itertools.count(1)
        self._live: dict[int, Fiber] = {}
        self._running: Fiber | None = None
        self._kernel = _thread.allocate_lock()  # released when the baton comes back to the kernel
        self._kernel.acquire()
        self._in_run = False
        self._waiters: dict[Any, deque[Fiber]] = {}  # Condition -> fibers waiting on it
        self._free_slots = workers
        self._slot_queue: deque[Fiber] = deque()
        self._monotonic_base = _orig_monotonic()
        self.owner = threading.get_ident()  # the thread that runs the kernel
        self.closing = False
        self.switches = 0  # times the baton went to another fiber
        self.trace: list[Step] = []

    # --- the virtual clock -------------------------------------------------------------------
    def utc_now(self) -> datetime:
        """The virtual wall clock (core.clock reads it while the emulator runs)."""
        return self.epoch + timedelta(seconds=self.now)

    def monotonic(self) -> float:
        return self._monotonic_base + self.now

    # --- the kernel --------------------------------------------------------------------------
    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run `callback` in the kernel at virtual second `when` (now, if that has passed), while
        every fiber is parked. Callbacks due at the same instant run in the order scheduled."""
        with self._mutex:
            heapq.heappush(self._agenda, (max(when, self.now), next(self._order), ("call", callback)))

    def run(
        self,
        until: float | None = None,
        timeout: float | None = None,
        idle: Callable[[], None] | None = None,
    ) -> None:
        """Run fibers until none can run and nothing is scheduled, advancing the clock from one
        scheduled instant to the next; with `until`, stop (the clock at `until`) before passing
        it. `idle` runs whenever no fiber can run, before the clock moves. Raises TimeoutError
        when `timeout` real seconds pass first (a fiber holding the baton for too long)."""
        if self._in_run:
            raise RuntimeError("the emulator's scheduler is already running")
        if self._running is not None:
            raise RuntimeError(f"{self._running} still holds the baton (an earlier run timed out)")
        deadline = None if timeout is None else _orig_monotonic() + timeout
        self._in_run = True
        try:
            while True:
                with self._mutex:
                    chosen = self._pick() if self._ready else None
                    if chosen is not None:
                        self._grant(chosen)
                if chosen is not None:
                    self._await_baton(deadline)
                    continue
                if idle is not None:
                    idle()
                    with self._mutex:
                        if self._ready:  # the hook made something runnable (put an event, say)
                            continue
                with self._mutex:
                    when = self._next_instant()
                    if when is None or (until is not None and when > until):
                        if until is not None:
                            self.now = max(self.now, until)
                        return
                    self.now = max(self.now, when)
                    due = self._pop_due()
                for entry in due:
                    self._fire(entry)
                if deadline is not None and _orig_monotonic() > deadline:
                    raise TimeoutError(f"the emulator did not settle within {timeout} s\n{self.describe()}")
        finally:
            self._in_run = False

    def _await_baton(self, deadline: float | None) -> None:
        wait = -1 if deadline is None else max(0.0, deadline - _orig_monotonic())
        if not self._kernel.acquire(timeout=wait):
            raise TimeoutError(f"the emulator did not settle in time\n{self.describe()}")

    def _next_instant(self) -> float | None:
        """The earliest live entry's instant (timeout entries of fibers woken since are dropped)."""
        while self._agenda:
            when, _, entry = self._agenda[0]
            if entry[0] == "wake" and entry[1].token != entry[2]:
                heapq.heappop(self._agenda)
                continue
            return when
        return None

    def _pop_due(self) -> list[Any]:
        due = []
        while self._agenda and self._agenda[0][0] <= self.now:
            due.append(heapq.heappop(self._agenda)[2])
        return due

    def _fire(self, entry: Any) -> None:
        if entry[0] == "call":
            entry[1]()
            return
        _, fiber, token = entry
        with self._mutex:
            if fiber.token != token or fiber.done:
                return
            if fiber.waiting_on is not None:  # a wait with a timeout: it timed out
                waiters = self._waiters.get(fiber.waiting_on)
                if waiters is not None and fiber in waiters:
                    waiters.remove(fiber)
                    if not waiters:
                        del self._waiters[fiber.waiting_on]
            self._wake(fiber, notified=False)

    def close(self, timeout: float = 5.0) -> None:
        """End every fiber: each is handed the baton in turn and raises EmulatorClosed where it
        is parked, so its thread unwinds and ends."""
        self.closing = True
        if self._running is not None and not self._kernel.acquire(timeout=timeout):
            return  # a fiber still holds the baton (a run timed out): leave the threads behind
        while True:
            with self._mutex:
                pending = sorted((f for f in self._live.values() if not f.done), key=lambda f: f.number)
                if not pending:
                    return
                fiber = pending[0]
                self._running = fiber
                fiber._turn.release()
            if not self._kernel.acquire(timeout=timeout):
                return  # it did not unwind; its thread is a daemon and is left behind

    def describe(self) -> str:
        """What every live fiber is doing (for a timeout's message)."""
        frames = sys._current_frames()
        lines = [f"virtual second {self.now:.3f}; seed {self.seed}"]
        with self._mutex:
            running = self._running
            fibers = sorted(self._live.values(), key=lambda f: f.number)
        for fiber in fibers:
            state = "RUNNING" if fiber is running else ("ready" if fiber in self._ready else "parked")
            lines.append(f"  fiber {fiber.number} {fiber.name}: {state}")
            thread = getattr(fiber, "thread", None)
            if fiber is running and thread is not None and thread.ident in frames:
                stack = traceback.format_stack(frames[thread.ident])[-8:]
                lines.extend("      " + line.rstrip().replace("\n", "\n      ") for line in stack)
        return "\n".join(lines)

    # --- baton hand-over (the mutex held) ----------------------------------------------------
    def _pick(self) -> Fiber:
        count = len(self._ready)
        return self._ready.pop(self._rng.randrange(count) if count > 1 else 0)

    def _grant(self, fiber: Fiber) -> None:
        self._running = fiber
        fiber._since = time.perf_counter()
        fiber._turn.release()

    def _wake(self, fiber: Fiber, notified: bool) -> None:
        fiber.token += 1
        fiber.notified = notified
        fiber.waiting_on = None
        self._ready.append(fiber)

    def _give_up(self, me: Fiber, ready: bool) -> bool:
        """Hand the baton on (to a ready fiber chosen by the seeded generator, else to the
        kernel); False when the choice fell on `me` again and it just goes on."""
        me.busy += time.perf_counter() - me._since
        if ready:
            self._ready.append(me)
        if not self._ready:
            self._running = None
            self._kernel.release()
            return True
        chosen = self._pick()
        if chosen is me:
            me._since = time.perf_counter()
            return False
        self.switches += 1
        self._grant(chosen)
        return True

    def _wait_turn(self, me: Fiber) -> None:
        me._turn.acquire()
        if self.closing:
            raise EmulatorClosed()

    # --- what fibers call --------------------------------------------------------------------
    def spawn(self, name: str) -> Fiber:
        """A new fiber, ready to run (its thread waits for the baton before running)."""
        with self._mutex:
            fiber = Fiber(self, next(self._numbers), name)
            self._live[fiber.number] = fiber
            self._ready.append(fiber)
        return fiber

    def first_turn(self, fiber: Fiber) -> None:
        """A new fiber's thread waits here for the baton before running anything."""
        self._wait_turn(fiber)

    def exit(self, fiber: Fiber) -> None:
        """The fiber's thread is done: wake its joiners and hand the baton on."""
        with self._mutex:
            fiber.done = True
            self._live.pop(fiber.number, None)
            for joiner in fiber.joiners:
                self._wake(joiner, notified=True)
            fiber.joiners.clear()
            if self.closing or self._running is not fiber:
                if self._running is fiber:
                    self._running = None
                    self._kernel.release()
                return
            self._give_up(fiber, ready=False)

    def checkpoint(self, call: str, actor: str = "", params: Any = None) -> None:
        """A yield point: let another ready fiber (or this one) run next. `call` (and `actor`,
        `params`) go into the trace of the interleaving."""
        me = self._me()
        with self._mutex:
            must_wait = self._give_up(me, ready=True)
        if must_wait:
            self._wait_turn(me)
        # recorded once the call goes ahead: the trace is the order in which calls were made
        self.trace.append(Step(self.now, me.number, actor or me.name, call, params if self.trace_params else None))

    def block(self, deadline: float | None = None) -> bool:
        """Park the running fiber until it is woken (True) or the clock reaches `deadline` (False)."""
        me = self._me()
        with self._mutex:
            me.token += 1
            me.notified = False
            if deadline is not None:
                heapq.heappush(self._agenda, (max(deadline, self.now), next(self._order), ("wake", me, me.token)))
            self._give_up(me, ready=False)
        self._wait_turn(me)
        return me.notified

    def sleep(self, seconds: float) -> None:
        """Virtual sleep: the fiber wakes when the clock has moved `seconds` on."""
        if seconds <= 0:
            self.checkpoint("sleep")
        else:
            self.block(self.now + seconds)

    def acquire_slot(self) -> None:
        """One of the `workers` Lambda invocations that may be in flight at once (FIFO)."""
        me = self._me()
        with self._mutex:
            if self._free_slots > 0:
                self._free_slots -= 1
                return
            self._slot_queue.append(me)
        self.block()  # release_slot hands its slot over when it wakes this fiber

    def release_slot(self) -> None:
        with self._mutex:
            if self._slot_queue:
                self._wake(self._slot_queue.popleft(), notified=True)
            else:
                self._free_slots += 1

    def busy_seconds(self) -> float:
        """Real seconds the running fiber has held the baton so far (its own work, not others')."""
        fiber = current_fiber()
        if fiber is None:
            return time.perf_counter()
        return fiber.busy + (time.perf_counter() - fiber._since)

    def _me(self) -> Fiber:
        if self.closing:
            raise EmulatorClosed()
        fiber = current_fiber()
        if fiber is None or fiber is not self._running:
            raise RuntimeError("only the fiber holding the baton can yield")
        return fiber

    # --- conditions ---------------------------------------------------------------------------
    def _enlist(self, condition: Any, fiber: Fiber) -> None:
        with self._mutex:
            self._waiters.setdefault(condition, deque()).append(fiber)
            fiber.waiting_on = condition

    def _notify_fibers(self, condition: Any, count: int | None) -> int:
        """Wake up to `count` (None: all) fibers waiting on `condition`, first come first."""
        with self._mutex:
            waiters = self._waiters.get(condition)
            if not waiters:
                return 0
            woken = 0
            while waiters and (count is None or woken < count):
                self._wake(waiters.popleft(), notified=True)
                woken += 1
            if not waiters:
                del self._waiters[condition]
            return woken


def current_fiber() -> Fiber | None:
    """The fiber this thread is, while its scheduler is active."""
    fiber = getattr(_local, "fiber", None)
    return fiber if fiber is not None and fiber.scheduler is _active and not fiber.done else None


def context() -> Any:
    """What this thread shares with the threads it starts (isolation.py keeps the running
    invocation here)."""
    return getattr(_local, "context", None)


def set_context(value: Any) -> Any:
    """Set this thread's context; returns the previous one."""
    previous = getattr(_local, "context", None)
    _local.context = value
    return previous


def set_fiber(fiber: Fiber | None) -> None:
    """Make this thread `fiber` (None: a free thread again); primitives.py does, for the threads it
    adopts."""
    _local.fiber = fiber


def installed() -> Scheduler | None:
    """The scheduler whose patched primitives are installed, if any."""
    return _active


def install(value: Scheduler | None) -> None:
    """Make `value` the installed scheduler (None: none); primitives.active does, with its patches."""
    global _active
    _active = value
