"""The emulator's regional outage: which calls fail (the functions', in their handler's thread or
in threads they start; regional endpoints only) and which do not (the drill's own)."""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from recoveryctl.emulator import runtime
from recoveryctl.emulator.runtime import Emulator

pytestmark = pytest.mark.e2e


def _call(region: str, service: str = "autoscaling") -> object:
    client = boto3.client(service, region_name=region)
    if service == "route53":
        return client.list_hosted_zones()
    return client.describe_auto_scaling_groups()


def _in_thread(region: str) -> BaseException | None:
    caught: list[BaseException] = []

    def run() -> None:
        try:
            _call(region)
        except BaseException as exc:  # handed to the test
            caught.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return caught[0] if caught else None


def test_a_failed_region_fails_the_functions_calls_there_and_nothing_else(synthesized):
    with Emulator(synthesized.template_path) as emulator:
        emulator.fail_region("us-east-1")

        # The drill's own calls (its thread, outside any handler) still work
        assert emulator.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []

        # A handler's calls to the region fail as an unreachable endpoint does
        with runtime._in_handler(), pytest.raises(EndpointConnectionError):
            _call("us-east-1")
        # ...and so do those of a thread the handler starts (a probe of several regions at once)
        assert isinstance(_in_thread("us-east-1"), EndpointConnectionError)

        # Another region, and a global endpoint (Route 53), still answer the functions
        with runtime._in_handler():
            assert _call("us-west-2")["AutoScalingGroups"] == []
            assert "HostedZones" in _call("us-east-1", "route53")
        assert _in_thread("us-west-2") is None
