#!/usr/bin/env python3
"""CDK app: builds the recovery stack from configuration (cdk.json context "recovery")."""

import sys

import aws_cdk as cdk

from infra.config import ConfigError, load
from infra.stack import RecoveryStack


def main() -> None:
    app = cdk.App()
    try:
        config = load(app.node.try_get_context)
        RecoveryStack(app, config.stack_name, config=config)
    except ConfigError as exc:
        print(f"cdk synth: {exc}", file=sys.stderr)
        sys.exit(1)
    app.synth()


if __name__ == "__main__":
    main()
