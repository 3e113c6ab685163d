"""What every recoveryctl command shares (recoveryctl/cli.py and the command modules beside it):
the exit codes, the error a command raises, the target's backend and the actor's name."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # as a shell reports a command its closed pipe (SIGPIPE) ended
TARGET_ENV, STACK_ENV = "RECOVERYCTL_TARGET", "RECOVERYCTL_STACK"


class CommandError(RuntimeError):
    """A command cannot do what was asked; printed as `recoveryctl: <message>`."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def backend(args: argparse.Namespace) -> Any:
    """The target's backend: the deployed stack, or the local emulator's recorded state."""
    from recoveryctl.backends import DeployedBackend, LocalBackend
    from recoveryctl.state import LocalState

    if args.target == "deployed":
        return DeployedBackend(args.stack, args.region)
    return LocalBackend(LocalState(args.state_dir), template_path=args.template, cdk_out=args.cdk_out)


def actor(target: Any) -> str:
    """Who acts, as recorded: the caller's AWS identity when deployed, else the local user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    if target.target == "deployed":
        from recoveryctl.backends import BackendError

        try:
            return target.actor()
        except BackendError:
            return user
    return user


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
