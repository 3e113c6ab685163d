"""What every stack of one emulator shares (docs/emulator.md): the stacks themselves, the
scheduler and its exit stack, the faults and outages a drill injects, and what the stacks
record (events, invocations). A region's or member account's stack joins the World."""

from __future__ import annotations

from typing import Any


class World:
    """The shared state; each stack's runtime reads and writes it through `Shared` attributes."""


class Shared:
    """An attribute of a stack's runtime that lives in its World, so that every stack of the
    emulator sees the same one (set on any stack, seen by all)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, runtime: Any, owner: type | None = None) -> Any:
        if runtime is None:
            return self
        try:
            return getattr(runtime.world, self.name)
        except AttributeError:
            raise AttributeError(self.name) from None

    def __set__(self, runtime: Any, value: Any) -> None:
        setattr(runtime.world, self.name, value)
