"""boto3 clients, created lazily (never at import, so tests under moto see them) and reused
across invocations of a warm Lambda."""

from __future__ import annotations

from typing import Any

_clients: dict[tuple[str, int], Any] = {}


def client(service: str, *, max_attempts: int = 3) -> Any:
    """A client with botocore's standard retry mode.

    Recovery actions pass max_attempts=1: retries there belong to one layer, the state machine,
    which retries TransientError with backoff and jitter.
    """
    key = (service, max_attempts)
    if key not in _clients:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=5,
            read_timeout=20,
            user_agent_extra="impairment-recovery",
        )
        _clients[key] = boto3.client(service, config=config)
    return _clients[key]


def reset() -> None:
    """Forget cached clients (tests, emulator)."""
    _clients.clear()
