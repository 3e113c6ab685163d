"""Reading the CloudWatch embedded metric format (EMF) documents a function wrote to stdout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Datapoint:
    """One metric value as CloudWatch would extract it: name, unit, value and dimensions."""

    name: str
    unit: str
    value: float
    dimensions: dict[str, str]
    namespace: str


def datapoints(output: str) -> list[Datapoint]:
    """Every metric value of every EMF document in `output` (other lines are ignored)."""
    found: list[Datapoint] = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            document: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        meta = document.get("_aws")
        if not isinstance(meta, dict):
            continue
        for directive in meta["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = {name: str(document[name]) for name in dimension_set}
                for metric in directive["Metrics"]:
                    values = document[metric["Name"]]
                    for value in values if isinstance(values, list) else [values]:
                        found.append(
                            Datapoint(metric["Name"], metric["Unit"], float(value), dimensions, directive["Namespace"])
                        )
    return found


def named(points: list[Datapoint], name: str, **dimensions: str) -> list[Datapoint]:
    """The datapoints of one metric whose dimensions are exactly the service's and `dimensions`."""
    wanted = {"service": "impairment-recovery", **dimensions}
    return [p for p in points if p.name == name and p.dimensions == wanted]
