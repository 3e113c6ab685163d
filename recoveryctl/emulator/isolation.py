"""Each Lambda invocation in the emulator gets what Lambda would give it, though many run
interleaved in one process: its function's environment variables, the clients of a warm
environment of its own, and its own Powertools state (metrics and log keys).

Without it, interleaved invocations would read each other's environment, share clients across
functions, and flush each other's metrics or log another's correlation id; the old remedy, a
lock around the process's environment, let only one handler run at a time.

Design: docs/emulator.md#what-each-invocation-gets-of-its-own
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from recoveryctl.emulator import scheduler

_UNSET = object()  # a variable the invocation deleted


@dataclass
class Invocation:
    """One Lambda invocation in flight."""

    number: int
    function: str
    environment: dict[str, Any]  # the function's variables, over the process's (_UNSET: deleted)
    caches: Any = None  # core.aws.Caches of the warm environment serving it
    # Powertools' state of this invocation: its metric set, dimensions, metadata, log keys
    powertools: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.function}#{self.number}"


def current() -> Invocation | None:
    """The invocation this thread runs (or a thread it started), if any."""
    value = scheduler.context()
    return value if isinstance(value, Invocation) else None


@contextlib.contextmanager
def running(invocation: Invocation | None) -> Iterator[None]:
    """This thread runs `invocation` within the block (None: no invocation, e.g. Step Functions'
    own threads, which moto starts from the handler that called StartExecution)."""
    previous = scheduler.set_context(invocation)
    try:
        yield
    finally:
        scheduler.set_context(previous)


# --- os.environ -------------------------------------------------------------------------------
class _ThreadAwareEnviron(os._Environ):  # type: ignore[name-defined,misc]
    """os.environ, read and written through the running invocation's variables when there is one."""

    def __getitem__(self, key: str) -> str:
        invocation = current()
        if invocation is not None and key in invocation.environment:
            value = invocation.environment[key]
            if value is _UNSET:
                raise KeyError(key)
            return value
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: str) -> None:
        invocation = current()
        if invocation is None:
            super().__setitem__(key, value)
            return
        self.encodekey(key)  # the same type checks as the real one
        self.encodevalue(value)
        invocation.environment[key] = value

    def __delitem__(self, key: str) -> None:
        invocation = current()
        if invocation is None:
            super().__delitem__(key)
            return
        if key not in self:
            raise KeyError(key)
        invocation.environment[key] = _UNSET

    def __iter__(self) -> Iterator[str]:
        invocation = current()
        base = list(super().__iter__())
        if invocation is None:
            yield from base
            return
        overlay = invocation.environment
        yield from (key for key in base if key not in overlay)
        yield from (key for key, value in list(overlay.items()) if value is not _UNSET)

    def __len__(self) -> int:
        if current() is None:
            return super().__len__()
        return sum(1 for _ in self)


@contextlib.contextmanager
def thread_aware_environ() -> Iterator[None]:
    environ = os.environ
    original = type(environ)
    environ.__class__ = _ThreadAwareEnviron
    try:
        yield
    finally:
        environ.__class__ = original


# --- Powertools -------------------------------------------------------------------------------
_PROVIDER_STATE = {
    "metric_set": dict,
    "dimension_set": dict,
    "metadata_set": dict,
    "dimension_sets": list,
    "timestamp": lambda: None,
}


def _per_invocation(name: str, make: Any) -> property:
    """An attribute kept per invocation (outside one: the object's own, in its __dict__)."""

    def get(self: Any) -> Any:
        invocation = current()
        if invocation is None:
            return self.__dict__.get(name)
        state = invocation.powertools
        if name not in state:
            base = self.__dict__.get(name)
            # an invocation starts from the object's defaults (a copy), as a fresh environment would
            state[name] = type(base)(base) if isinstance(base, dict | list) else make()
        return state[name]

    def set_(self: Any, value: Any) -> None:
        invocation = current()
        if invocation is None:
            self.__dict__[name] = value
        else:
            invocation.powertools[name] = value

    return property(get, set_)


@contextlib.contextmanager
def powertools_per_invocation(logger: Any, metrics: Any) -> Iterator[None]:
    """Keep `metrics`' metric state and `logger`'s log keys per invocation (see the module doc)."""
    provider = metrics.provider
    formatter = logger.registered_formatter
    originals = [(provider, type(provider)), (formatter, type(formatter))]
    provider.__class__ = type(
        f"PerInvocation{type(provider).__name__}",
        (type(provider),),
        {name: _per_invocation(name, make) for name, make in _PROVIDER_STATE.items()},
    )
    formatter.__class__ = type(
        f"PerInvocation{type(formatter).__name__}",
        (type(formatter),),
        {"log_format": _per_invocation("log_format", dict)},
    )
    try:
        yield
    finally:
        for obj, cls in originals:
            obj.__class__ = cls


# --- standard output --------------------------------------------------------------------------
class _Stdout(io.TextIOBase):
    """A handler's prints go to the emulator's log; everything else to the real stdout."""

    def __init__(self, real: Any, log: Any) -> None:
        self.real = real
        self.log = log

    def _target(self) -> Any:
        return self.log if current() is not None else self.real

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(getattr(self.real, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8")


@contextlib.contextmanager
def handler_stdout(log: Any) -> Iterator[None]:
    real = sys.stdout
    sys.stdout = _Stdout(real, log)
    try:
        yield
    finally:
        sys.stdout = real


def set_stream(handler: logging.StreamHandler, stream: Any) -> Any:
    """handler.setStream, also when the stream it had was closed meanwhile (a caller's captured
    stdout, gone with the caller): that one is not flushed, only replaced."""
    try:
        return handler.setStream(stream)
    except ValueError:
        previous, handler.stream = handler.stream, stream
        return previous
