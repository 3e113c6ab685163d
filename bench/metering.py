"""Counts what the Lambda code does in the emulator: AWS API calls by service and operation,
DynamoDB write and read units, custom events put on a bus, invocations and their durations.

Only the handlers' calls count, not the emulator's own bookkeeping: the meter marks the thread
while a handler runs (it wraps `Emulator.invoke`) and a botocore hook counts a call only from a
marked thread. Durations are the time a handler's own thread ran.

Design: docs/performance.md#2-cost-per-recovery
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench import prices
from bench.hot_items import ItemWrites

_HOOK = "provide-client-params.*.*"
_HOOK_ID = "recovery-bench-meter"


@dataclass
class Meter:
    """Install on a running Emulator with `install(emulator)`; read the counts any time."""

    api_calls: Counter = field(default_factory=Counter)  # (service, operation) -> calls
    calls_by_function: Counter = field(default_factory=Counter)  # function -> calls
    ops_by_function: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    invocations: Counter = field(default_factory=Counter)  # function -> invocations
    durations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    custom_events: int = 0
    dynamodb_writes: int = 0  # items written
    write_units: float = 0.0
    read_units: float = 0.0
    items: ItemWrites = field(default_factory=ItemWrites)  # writes per item, per emulated second
    _local: threading.local = field(default_factory=threading.local)

    def install(self, emulator: Any) -> Meter:
        """Wrap the handler dispatch of every region's stack and register the call counter."""
        import boto3

        from core import aws as core_aws

        for region in emulator.every_region():
            self._wrap(region)
        self.items.clock = lambda: float(emulator.now)
        session = boto3._get_default_session()
        session.events.register(_HOOK, self._count, unique_id=_HOOK_ID)
        emulator.on_exit(session.events.unregister, _HOOK, unique_id=_HOOK_ID)
        # clients copy the session's hooks when they are created: none made before may serve a handler
        core_aws.reset()
        emulator.reset_clients()
        return self

    def _wrap(self, emulator: Any) -> None:
        original = emulator.invoke
        running = getattr(emulator, "running_seconds", time.perf_counter)
        meter = self

        def invoke(function_name: str, payload: Any, source: str = "task") -> tuple[bool, Any]:
            previous = getattr(meter._local, "function", None)
            meter._local.function = function_name
            started = running()
            try:
                return original(function_name, payload, source=source)
            finally:
                meter.durations[function_name].append(running() - started)
                meter.invocations[function_name] += 1
                meter._local.function = previous

        emulator.invoke = invoke  # instance attribute: the emulator's patches call self.invoke

    def cost(self, billed_transitions: int, memory: dict[str, int]) -> Any:
        """The estimated dollars of what was metered (bench/prices.py), with these transitions."""
        from bench import prices

        return prices.estimate(
            transitions=billed_transitions,
            durations_by_memory=self.durations_by_memory(memory),
            custom_events=self.custom_events,
            write_units=self.write_units,
            read_units=self.read_units,
        )

    def _count(self, params: dict[str, Any], model: Any, context: Any = None, **kwargs: Any) -> None:
        function = getattr(self._local, "function", None)
        if function is None:
            return  # the emulator's own call
        if (context or {}).get("is_presign_request"):
            return  # a presigned URL (the EKS token) is signed here, never sent: no call
        service = model.service_model.service_id.hyphenize()
        operation = model.name
        self.record(function, service, operation, params)

    def record(self, function: str, service: str, operation: str, params: dict[str, Any]) -> None:
        """Count one API call a handler made."""
        self.api_calls[(service, operation)] += 1
        self.calls_by_function[function] += 1
        self.ops_by_function[function][f"{service}:{operation}"] += 1
        if service == "eventbridge" and operation == "PutEvents":
            self.custom_events += len(params.get("Entries") or [])
        if service == "dynamodb":
            units = prices.write_units(operation, params)
            if units:
                self.dynamodb_writes += _items_written(operation, params)
                self.write_units += units
            self.read_units += prices.read_units(operation, params)
            self.items.record(operation, params)

    @contextlib.contextmanager
    def as_function(self, function: str) -> Any:
        """Count calls made in this block as made by `function` (tests)."""
        previous = getattr(self._local, "function", None)
        self._local.function = function
        try:
            yield
        finally:
            self._local.function = previous

    # --- reading ---
    @property
    def total_calls(self) -> int:
        return sum(self.api_calls.values())

    @property
    def total_invocations(self) -> int:
        return sum(self.invocations.values())

    def calls_by_operation(self) -> dict[str, int]:
        return {f"{s}:{o}": n for (s, o), n in sorted(self.api_calls.items())}

    def calls_by_service(self) -> dict[str, int]:
        out: Counter = Counter()
        for (service, _), n in self.api_calls.items():
            out[service] += n
        return dict(sorted(out.items()))

    def durations_by_memory(self, memory_of: dict[str, int]) -> dict[int, list[float]]:
        out: dict[int, list[float]] = defaultdict(list)
        for function, values in self.durations.items():
            out[memory_of.get(function, 128)].extend(values)
        return dict(out)

    def snapshot(self) -> dict[str, Any]:
        return {
            "api_calls": self.total_calls,
            "api_calls_by_service": self.calls_by_service(),
            "api_calls_by_operation": self.calls_by_operation(),
            "api_calls_by_function": dict(sorted(self.calls_by_function.items())),
            "api_calls_by_function_operation": {
                f: dict(sorted(c.items())) for f, c in sorted(self.ops_by_function.items())
            },
            "lambda_invocations": self.total_invocations,
            "invocations_by_function": dict(sorted(self.invocations.items())),
            "eventbridge_custom_events": self.custom_events,
            "dynamodb_writes": self.dynamodb_writes,
            "dynamodb_write_units": self.write_units,
            "dynamodb_read_units": self.read_units,
        }


def _items_written(operation: str, params: dict[str, Any]) -> int:
    if operation == "BatchWriteItem":
        return sum(len(v) for v in (params.get("RequestItems") or {}).values())
    if operation == "TransactWriteItems":
        return len(params.get("TransactItems") or [])
    return 1


def function_memory(emulator: Any) -> dict[str, int]:
    """Function name -> MemorySize (MB) from every region's template (Lambda's default is 128)."""
    out = {}
    for region in emulator.every_region():
        template = region.template
        for logical_id, resource in template.of_type("AWS::Lambda::Function").items():
            out[template.names[logical_id]] = int(resource["Properties"].get("MemorySize", 128))
    return out


def transitions(emulator: Any) -> dict[str, int]:
    """State transitions of every execution, from their histories: each state entered, plus each
    retry of a task (Step Functions bills retries as transitions)."""
    entered = retries = 0
    for region, execution in ((r, e) for r in emulator.every_region() for e in r.executions()):
        attempts: Counter = Counter()
        current = None
        for event in region.history(execution["executionArn"]):
            kind = event["type"]
            if kind.endswith("StateEntered"):
                entered += 1
                current = event["stateEnteredEventDetails"]["name"]
                attempts[current] = 0
            elif kind in ("TaskScheduled", "LambdaFunctionScheduled") and current is not None:
                attempts[current] += 1
                if attempts[current] > 1:
                    retries += 1
    return {"entered": entered, "retries": retries, "billed": entered + retries}
