"""The threading primitives the emulator's scheduler patches while it runs (scheduler.py has the
scheduler itself): a fiber that waits on a Condition, sleeps, joins a thread or starts one must
give the baton up or be adopted, not block the world. Other threads see the real primitives.
docs/emulator.md ("The scheduler") tells why.
"""

from __future__ import annotations

import concurrent.futures.thread as futures_thread
import contextlib
import queue
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

from recoveryctl.emulator.scheduler import (
    EmulatorClosed,
    Fiber,
    Scheduler,
    context,
    current_fiber,
    install,
    installed,
    set_context,
    set_fiber,
)

_orig_wait = threading.Condition.wait
_orig_notify = threading.Condition.notify
_orig_start = threading.Thread.start
_orig_join = threading.Thread.join
_orig_sleep = time.sleep
_orig_monotonic = time.monotonic


def _cond_wait(condition: Any, timeout: float | None = None) -> bool:
    fiber = current_fiber()
    if fiber is None:
        return _orig_wait(condition, timeout)
    if not condition._is_owned():
        raise RuntimeError("cannot wait on un-acquired lock")
    if timeout is not None and timeout <= 0:
        return False  # a poll: nothing can have notified it without it giving up the baton
    scheduler = fiber.scheduler
    scheduler._enlist(condition, fiber)
    saved = condition._release_save()
    try:
        return scheduler.block(None if timeout is None else scheduler.now + timeout)
    finally:
        condition._acquire_restore(saved)


def _cond_notify(condition: Any, n: int = 1) -> None:
    scheduler = installed()
    if scheduler is not None:
        n -= scheduler._notify_fibers(condition, n)
    if n > 0:
        _orig_notify(condition, n)


def _cond_notify_all(condition: Any) -> None:
    scheduler = installed()
    if scheduler is not None:
        scheduler._notify_fibers(condition, None)
    # not the original notify_all: it calls self.notify, which would count fibers again
    _orig_notify(condition, len(condition._waiters))


def _thread_start(thread: threading.Thread) -> None:
    scheduler = installed()
    parent = current_fiber()
    if scheduler is None or scheduler.closing or not _adopted(scheduler, parent, thread):
        return _orig_start(thread)
    fiber = scheduler.spawn(getattr(thread, "emulator_name", None) or _name_of(thread))
    fiber.thread = thread  # type: ignore[attr-defined]
    # What the thread runs with, dropped when it ends: moto keeps every thread it started, and
    # an invocation's context holds its warm environment's clients.
    carried = {"context": context(), "run": thread.run}

    def run_as_fiber() -> None:
        set_fiber(fiber)
        set_context(carried["context"])
        try:
            scheduler.first_turn(fiber)
            carried["run"]()
        except EmulatorClosed:
            pass  # the emulator shut down while this thread was parked: it just ends
        finally:
            carried.clear()
            set_context(None)
            with contextlib.suppress(AttributeError):
                del thread.run  # the instance attribute: back to the class's
            scheduler.exit(fiber)

    thread.run = run_as_fiber  # type: ignore[method-assign]
    thread.emulator_fiber = fiber  # type: ignore[attr-defined]
    # Thread.start waits (on an Event) for the new thread to begin: a real wait, not a yield,
    # since the new thread signals it before it waits for the baton.
    set_fiber(None)
    try:
        _orig_start(thread)
    finally:
        set_fiber(parent)
    return None


def _adopted(scheduler: Scheduler, parent: Fiber | None, thread: threading.Thread) -> bool:
    """A thread started by a fiber runs as one; so do threads the kernel's thread starts for moto
    (an execution started by the drill's own StartExecution) or for the emulator (its workers).
    Other threads (a test's own) run free."""
    if parent is not None:
        return True
    if threading.get_ident() != scheduler.owner:
        return False
    if getattr(thread, "emulator_name", None):
        return True
    target = getattr(thread, "_target", None)
    owners = (getattr(target, "__module__", None), type(getattr(target, "__self__", None)).__module__)
    return any(str(module or "").startswith(("moto.", "recoveryctl.emulator.")) for module in owners)


def _name_of(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    return str(getattr(target, "__qualname__", None) or type(thread).__name__)


def _thread_join(thread: threading.Thread, timeout: float | None = None) -> None:
    me = current_fiber()
    target = getattr(thread, "emulator_fiber", None)
    if me is None or target is None or target.scheduler is not me.scheduler:
        return _orig_join(thread, timeout)
    scheduler = me.scheduler
    with scheduler._mutex:
        finished = target.done
        if not finished:
            target.joiners.append(me)
    if not finished:
        ended = scheduler.block(None if timeout is None else scheduler.now + timeout)
        if not ended:
            with scheduler._mutex:
                if me in target.joiners:
                    target.joiners.remove(me)
            return None
    # Past its last turn the thread only has to return: wait for that, so is_alive() is False.
    _orig_join(thread)
    return None


def _sleep(seconds: float) -> None:
    fiber = current_fiber()
    if fiber is None:
        return _orig_sleep(seconds)
    fiber.scheduler.sleep(seconds)
    return None


def _monotonic() -> float:
    fiber = current_fiber()
    return fiber.scheduler.monotonic() if fiber is not None else _orig_monotonic()


# concurrent.futures' workers wait on a SimpleQueue, which blocks in C: give them a queue that
# waits on a Condition, while the scheduler is active.
_futures_queue = types.SimpleNamespace(SimpleQueue=queue.Queue, Empty=queue.Empty, Queue=queue.Queue)


@contextlib.contextmanager
def active(scheduler: Scheduler) -> Iterator[Scheduler]:
    """Install the patched primitives for `scheduler` (the calling thread is its kernel)."""
    if installed() is not None:
        raise RuntimeError("another emulator is running in this process")
    scheduler.owner = threading.get_ident()
    patches = [
        (threading.Condition, "wait", _cond_wait),
        (threading.Condition, "notify", _cond_notify),
        (threading.Condition, "notify_all", _cond_notify_all),
        (threading.Thread, "start", _thread_start),
        (threading.Thread, "join", _thread_join),
        (time, "sleep", _sleep),
        (time, "monotonic", _monotonic),
        (futures_thread, "queue", _futures_queue),
    ]
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    install(scheduler)
    try:
        yield scheduler
    finally:
        try:
            scheduler.close()
        finally:
            install(None)
            for owner, name, original in saved:
                setattr(owner, name, original)
