"""Botocore hooks the runtime installs on the default session: every API call a fiber makes is a
scheduler checkpoint; a failed region's endpoints are unreachable for the functions; injected
faults fail or slow the calls they match. The drill's own calls are exempt."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from recoveryctl.emulator import isolation, scheduler

# Per thread: whether it runs a function's handler (a region outage fails only the functions'
# calls), and whether the emulator's own calls are exempt from outages and faults.
_handler = threading.local()


@dataclass
class Fault:
    """Makes one AWS API operation fail or slow down, as a scenario asks (e.g. AccessDenied on
    terminate, or 5 s more per DescribeTargetHealth). Only the functions' calls (and Step
    Functions' own) are affected, not the drill's."""

    service: str
    operation: str  # or "*": every operation of the service
    error_code: str | None  # None: the call is only slowed down
    message: str = "injected by the drill"
    status: int = 400
    times: int | None = None  # fail only this many calls (None: every one)
    calls: int = 0  # calls failed so far
    after: int = 0  # the first `after` matching calls succeed
    seen: int = 0  # matching calls so far
    account: str | None = None  # only calls made in this account
    region: str | None = None  # only calls to this region
    latency_seconds: float = 0.0  # each matching call takes this much longer (virtual time)


class Hooks:
    """The runtime's botocore hooks and injected faults (a mixin of the runtime, runtime.py)."""

    def _install_checkpoints(self) -> None:
        """Every AWS API call a fiber makes is a yield point of the scheduler (registered first,
        so that faults, outages and behaviours act when the call is made, after the switch)."""
        import boto3

        session = boto3._get_default_session()
        sched = self.scheduler
        assert sched is not None

        def before_call(model: Any, context: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if getattr(_handler, "atomic", 0) or scheduler.current_fiber() is None:
                return
            invocation = isolation.current()
            sched.checkpoint(
                f"{model.service_model.service_id.hyphenize()}:{model.name}",
                invocation.label if invocation is not None else "",
                (context or {}).get("emulator_api_params"),
            )

        session.events.register_first("before-call.*.*", before_call, unique_id="recovery-emulator-checkpoints")
        self._stack.callback(session.events.unregister, "before-call.*.*", unique_id="recovery-emulator-checkpoints")

    def _install_region_outages(self) -> None:
        import boto3
        from botocore.exceptions import EndpointConnectionError

        session = boto3._get_default_session()
        failed, failed_global = self.failed_regions, self.failed_global_services

        def before_call(model: Any, request_signer: Any = None, **kwargs: Any) -> None:
            if not failed or request_signer is None or self._drill_call():
                return  # the drill building or reading the workload (or the emulator's own look), not a function
            # (a function's call: in its handler's thread, or in a thread the handler started)
            service = model.service_model
            if service.metadata.get("globalEndpoint"):
                # Route 53, IAM, ...: served from outside the region, unless their control plane failed
                if service.endpoint_prefix in failed_global:
                    raise EndpointConnectionError(endpoint_url=f"https://{service.metadata['globalEndpoint']}")
                return
            region = request_signer.region_name
            if region in failed:
                raise EndpointConnectionError(endpoint_url=f"https://{service.endpoint_prefix}.{region}.amazonaws.com")

        session.events.register_first("before-call.*.*", before_call, unique_id="recovery-emulator-outages")
        self._stack.callback(session.events.unregister, "before-call.*.*", unique_id="recovery-emulator-outages")

    def _drill_call(self) -> bool:
        """Whether the call being made is the drill's or the emulator's own (exempt from region
        outages and faults): made outside any handler by the thread that entered the emulator,
        or in an outage_exempt() block."""
        if getattr(_handler, "exempt", 0):
            return True
        sched = self._root.scheduler
        owner = sched.owner if sched is not None else None
        return not getattr(_handler, "depth", 0) and threading.get_ident() == owner

    def account_of(self, request_signer: Any) -> str:
        """The account a call is made in, from its credentials (as moto tells them apart)."""
        from moto.iam.models import get_account_id_from

        credentials = getattr(request_signer, "_credentials", None)
        access_key = getattr(credentials, "access_key", None) or ""
        if access_key not in self._root._access_key_accounts:
            self._root._access_key_accounts[access_key] = get_account_id_from(access_key)
        return self._root._access_key_accounts[access_key]

    def _install_fault_hook(self) -> None:
        import boto3
        from botocore.awsrequest import AWSResponse

        session = boto3._get_default_session()

        def before_call(model: Any, request_signer: Any = None, **kwargs: Any) -> Any:
            if not self.faults or self._drill_call():
                return None
            service = model.service_model.service_id.hyphenize()
            for fault in self.faults:
                if fault.service != service or fault.operation not in ("*", model.name):
                    continue
                if fault.region is not None and getattr(request_signer, "region_name", None) != fault.region:
                    continue
                if fault.account is not None and self.account_of(request_signer) != fault.account:
                    continue
                fault.seen += 1
                if fault.latency_seconds and scheduler.current_fiber() is not None:
                    self._root.scheduler.sleep(fault.latency_seconds)  # type: ignore[union-attr]
                if fault.error_code is None or fault.seen <= fault.after:
                    continue
                if fault.times is not None and fault.calls >= fault.times:
                    continue
                fault.calls += 1
                parsed = {
                    "Error": {"Code": fault.error_code, "Message": fault.message},
                    "ResponseMetadata": {"HTTPStatusCode": fault.status, "RequestId": "emulator"},
                }
                return AWSResponse("https://emulator", fault.status, {}, None), parsed
            return None

        session.events.register("before-call.*.*", before_call, unique_id="recovery-emulator-faults")
        self._stack.callback(session.events.unregister, "before-call.*.*", unique_id="recovery-emulator-faults")

    def inject_fault(
        self,
        service: str,
        operation: str,
        error_code: str | None,
        message: str = "injected by the drill",
        status: int = 400,
        times: int | None = None,
        *,
        after: int = 0,
        account: str | None = None,
        region: str | None = None,
        latency_seconds: float = 0.0,
    ) -> Fault:
        """Make `service`'s `operation` (botocore names, e.g. auto-scaling / SetInstanceHealth;
        "*" for all) fail with `error_code` (None: only slower), after `after` successful calls,
        at most `times` times, for calls in `account` and to `region` only if given, each
        `latency_seconds` of virtual time slower."""
        fault = Fault(
            service,
            operation,
            error_code,
            message,
            status,
            times,
            after=after,
            account=account,
            region=region,
            latency_seconds=latency_seconds,
        )
        self.faults.append(fault)
        return fault


@contextlib.contextmanager
def outage_exempt() -> Iterator[None]:
    """The emulator's own calls made while a handler runs (say, to answer a health check's status
    from a target group): a region outage does not fail them."""
    _handler.exempt = getattr(_handler, "exempt", 0) + 1
    try:
        yield
    finally:
        _handler.exempt -= 1


@contextlib.contextmanager
def _in_handler() -> Iterator[None]:
    """Marks this thread as running a function's handler (a region outage fails its calls)."""
    _handler.depth = getattr(_handler, "depth", 0) + 1
    try:
        yield
    finally:
        _handler.depth -= 1
