"""Speed-ups of moto for fleets of a thousand instances, applied by the idle and storm benches.

They change how fast moto answers, never what it answers: moto's EC2 backend finds one instance
by copying every reservation first (`all_reservations`), and the load balancer's target health
looks instances up that way once or twice per target, so one DescribeTargetHealth of 1,000
targets took 20 s. Counts of API calls do not depend on this; wall times do, and the ones the
bench reports are with these speed-ups (docs/performance.md says so).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock


def _get_instance_by_id(backend: Any, instance_id: str) -> Any:
    for reservation in list(backend.reservations.values()):
        for instance in reservation.instances:
            if instance.id == instance_id:
                return instance
    return None


@contextlib.contextmanager
def faster_moto() -> Iterator[None]:
    from moto.ec2.models.instances import InstanceBackend

    with mock.patch.object(InstanceBackend, "get_instance_by_id", _get_instance_by_id):
        yield
