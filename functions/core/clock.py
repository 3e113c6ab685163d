"""The one source of "now". In Lambda it is the system clock. The local emulator runs the stack on
a virtual clock of its own (waits, retry back-offs and signals happen at virtual instants, so a
drill takes seconds while its MTTR still counts the waits a real recovery would make): it gives
this module that clock with use_source()."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)
# Where "now" comes from when it is not the system clock (the emulator's virtual clock).
_source: Callable[[], datetime] | None = None


def utc_now() -> datetime:
    return (_source() if _source is not None else datetime.now(UTC)) + _offset


def advance(seconds: float) -> None:
    """Move the clock forward (tests)."""
    global _offset
    _offset += timedelta(seconds=seconds)


def use_source(source: Callable[[], datetime] | None) -> None:
    """Read "now" from `source` instead of the system clock (emulator only; None: the system clock)."""
    global _source
    _source = source


def reset() -> None:
    global _offset, _source
    _offset = timedelta(0)
    _source = None
