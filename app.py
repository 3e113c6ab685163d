#!/usr/bin/env python3
"""CDK app: builds the recovery stack from configuration (cdk.json context "recovery").

With `regions` configured, one stack per region: the primary's (named `stack_name`, it owns the
global table) and one per standby region (`<stack_name>-<region>`), deployed after it; and, for
workloads outside us-east-1 with Route 53 health checks, a us-east-1 stack of their health check
alarms (`<stack_name>-Route53Alarms`, infra/route53_alarms.py).
"""

import os
import sys

import aws_cdk as cdk

from infra.config import ConfigError, RecoveryConfig, load
from infra.member_stack import build_member_stacks
from infra.route53_alarms import build_route53_alarm_stacks
from infra.stack import RecoveryStack


def build(app: cdk.App, config: RecoveryConfig) -> list[RecoveryStack]:
    """The stacks of the configuration: one, region-agnostic, or one per configured region."""
    if config.regions is None:
        return [RecoveryStack(app, config.stack_name, config=config)]
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")  # None: left to the deployment's credentials
    stacks: list[RecoveryStack] = []
    for region in config.regions.all:
        name = config.stack_name_in(region)
        stack = RecoveryStack(app, name, config=config, env=cdk.Environment(account=account, region=region))
        if stacks:
            stack.add_stack_dependency(
                stacks[0], "the primary stack creates the global table this region's replica is part of"
            )
        stacks.append(stack)
    return stacks


def main() -> None:
    app = cdk.App()
    try:
        config = load(app.node.try_get_context)
        build(app, config)
        build_member_stacks(app, config)
        build_route53_alarm_stacks(app, config)
    except ConfigError as exc:
        print(f"cdk synth: {exc}", file=sys.stderr)
        sys.exit(1)
    app.synth()


if __name__ == "__main__":
    main()
