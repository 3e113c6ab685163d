"""The local emulator: the synthesized stack, running in moto on this machine, with its events
routed by the template's rules, its Lambda handlers run in process and its state machine run by
moto's executor, concurrently under a seeded scheduler on a virtual clock. docs/emulator.md
tells how (World, runtimes, fidelity patches, time, regions, accounts).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import logging
import os
import random
import secrets
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recoveryctl import FUNCTIONS_DIR  # noqa: F401 - puts functions/ on sys.path
from recoveryctl.emulator import fidelity, isolation, primitives, scheduler
from recoveryctl.emulator.hooks import Fault, Hooks, _in_handler
from recoveryctl.emulator.resources import FunctionSpec, Resources, Route
from recoveryctl.emulator.routing import Delivery, Routing
from recoveryctl.emulator.template import Template, TemplateError
from recoveryctl.emulator.world import Shared, World

ACCOUNT = "123456789012"
REGION = "us-east-1"
DEFAULT_WORKERS = 8  # Lambda invocations in flight at once


@dataclass
class Invocation:
    function: str
    source: str  # "event" (asynchronous, from a rule) or "task" (from the state machine)
    ok: bool
    error: str | None = None
    result: Any = None
    at: str = ""


class _Context:
    """The parts of the Lambda context object that Powertools reads."""

    def __init__(self, spec: FunctionSpec, request_id: str) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = 256
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = "emulator"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Emulator(Resources, Routing, Hooks):
    template_path: Path
    region: str = REGION
    account: str = ACCOUNT
    log: io.StringIO = field(default_factory=io.StringIO)
    # Other regions' stacks (region -> template), run beside this one (the primary).
    peers: dict[str, Path] = field(default_factory=dict)
    # Member accounts' stacks: (account, region, template).
    members: list[tuple[str, str, Path]] = field(default_factory=list)
    # The interleaving's seed (None: a random one, kept in `seed` once the emulator starts).
    seed: int | None = None
    workers: int = DEFAULT_WORKERS  # Lambda invocations in flight at once
    start: datetime | None = None  # the virtual clock's start (default: now)
    # Whether the interleaving's trace keeps each call's parameters (off for storms: memory)
    trace_params: bool = True

    # Shared by every stack of the emulator (a region's, a member account's): they live in the World.
    _stack = Shared()
    faults = Shared()
    idle_hooks = Shared()
    failing_health_checks = Shared()
    failing_target_groups = Shared()
    health_check_targets = Shared()
    on_traffic_moved = Shared()
    execution_listeners = Shared()
    invocations = Shared()
    events = Shared()
    failed_regions = Shared()
    failed_global_services = Shared()
    zonal_shifts = Shared()
    routing_controls = Shared()
    zone_faults = Shared()
    scaling_activities = Shared()
    instance_refreshes = Shared()
    scheduler = Shared()
    _regions = Shared()
    _stacks = Shared()

    def __post_init__(self) -> None:
        self.world = World()
        self.template = Template.load(self.template_path, self.region, self.account)
        self.functions: dict[str, FunctionSpec] = {}
        self.routes: list[Route] = []
        self.schedules: list[Route] = []
        self.failing_health_checks: set[str] = set()  # targets that fail their health check
        self.failing_target_groups: set[str] = set()  # target groups whose every target fails it
        # Route 53 health checks the emulator answers from an endpoint's state: id -> (region, target group)
        self.health_check_targets: dict[str, tuple[str, str]] = {}
        # Called when traffic moves (a DNS change, a routing control switched): a drill's "under load" fault.
        self.on_traffic_moved: list[Any] = []
        # Called with each "Step Functions Execution Status Change" event, as it is put on its bus.
        self.execution_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.invocations: list[Invocation] = []
        self.events: list[dict[str, Any]] = []  # every event put on any bus, in order
        self.faults: list[Fault] = []
        # Availability Zones (names) where new instances fail to launch ("insufficient_capacity")
        # or come up failing their health checks ("unhealthy").
        self.zone_faults: dict[str, str] = {}
        # Auto Scaling launches, as DescribeScalingActivities answers them: (account, region, group) -> newest first
        self.scaling_activities: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.instance_refreshes: dict[tuple[str, str, str], list[dict[str, Any]]] = {}  # behaviour.py
        self._stack = contextlib.ExitStack()
        self.outputs: dict[str, str] = {}
        self.escalation_inbox: str | None = None
        self._alarm_states: dict[str, dict[str, str]] = {}
        # Called when nothing can run, before the virtual clock moves: e.g. a drill noticing an approval.
        self.idle_hooks: list[Any] = []
        # Multi-account: the account client() works in (None: the emulator's own, the central
        # account), and the credentials of each other account (moto's sts.assume_role gives
        # credentials of the role's account).
        self._acting_as: str | None = None
        self._account_credentials: dict[str, dict[str, str]] = {}
        self._clients: dict[tuple[str, str | None], Any] = {}
        # Several regions: the emulator that entered moto (the root) and every region's emulator.
        self._root: Emulator = self
        self._regions: dict[str, Emulator] = {self.region: self}
        # Every stack, the members' included, by (account, region): whose bus an event is on.
        self._stacks: dict[tuple[str, str], Emulator] = {(self.account, self.region): self}
        # Regions whose regional endpoints the functions cannot reach (fail_region).
        self.failed_regions: set[str] = set()
        self.failed_global_services: set[str] = set()  # global endpoints failing with a region
        # The root's: the scheduler, the deliveries waiting for a worker, warm environments.
        self.scheduler: scheduler.Scheduler | None = None
        self._deliveries: deque[Delivery] = deque()
        self._delivery_ready = threading.Condition()
        self._worker_errors: list[BaseException] = []
        self._warm: dict[str, list[tuple[int, Any]]] = {}  # function -> (generation, core.aws caches)
        self._warm_generation = 0
        self._invocation_numbers = itertools.count(1)
        self._ids = random.Random()
        self._access_key_accounts: dict[str, str] = {}

    # --- lifecycle ---
    def __enter__(self) -> Emulator:
        from moto import mock_aws
        from moto.moto_api._internal import mock_random

        from core import aws as core_aws
        from core import clock
        from core.observability import logger as function_logger
        from core.observability import metrics as function_metrics

        if self.seed is None:
            self.seed = secrets.randbelow(2**31)
        self._ids.seed(self.seed)
        self.scheduler = scheduler.Scheduler(
            self.seed, self.workers, self.start or datetime.now(UTC).replace(microsecond=0), self.trace_params
        )
        env = {
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "emulator",
            "AWS_SECRET_ACCESS_KEY": "emulator",
            "AWS_SESSION_TOKEN": "emulator",
            "POWERTOOLS_DEV": "false",
            "MOTO_ALLOW_NONEXISTENT_REGION": "true",
            # the workload launches from an image id of its own: no need for moto's public AMIs
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        }
        self._stack.enter_context(_environment(env))
        self._stack.enter_context(
            mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
        )
        # Replays: moto's ids (instances, tokens) and the jitter of retries come from seeded generators.
        mock_random.seed(self.seed)
        saved_random = random.getstate()
        self._stack.callback(random.setstate, saved_random)
        random.seed(self.seed)
        for noisy in ("moto.stepfunctions", "moto.stepfunctions.parser"):
            logger = logging.getLogger(noisy)
            self._stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.CRITICAL)
        clock.reset()
        clock.use_source(self.scheduler.utc_now)
        self._stack.callback(clock.reset)
        core_aws.use_caches(_invocation_caches)
        self._stack.callback(core_aws.use_caches, None)
        # The functions' JSON logs go to the emulator's log, wherever they were first imported.
        previous = isolation.set_stream(function_logger.registered_handler, self.log)
        self._stack.callback(isolation.set_stream, function_logger.registered_handler, previous)
        self._stack.enter_context(isolation.thread_aware_environ())
        self._stack.enter_context(isolation.powertools_per_invocation(function_logger, function_metrics))
        self._stack.enter_context(isolation.handler_stdout(self.log))
        self._stack.enter_context(warnings.catch_warnings())
        # Powertools warns when an invocation emits no metric: noise in a drill.
        warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
        self._install_checkpoints()
        self._install_fault_hook()
        from recoveryctl.emulator import behaviour

        self.zonal_shifts = behaviour.install(self)
        self._install_region_outages()
        fidelity.install(self)
        # Last in, first out: the scheduler ends every fiber before anything above is undone.
        self._stack.enter_context(primitives.active(self.scheduler))
        self.deploy()
        for region, template_path in self.peers.items():
            self._join(Emulator(template_path, region=region, account=self.account)).deploy()
        for account, region, template_path in self.members:
            member = Emulator(template_path, region=region, account=account)
            member._acting_as = account  # its client() works in the member account
            self._join(member, member=True).deploy()
        for number in range(1, self.workers + 1):
            worker = threading.Thread(target=self._worker, daemon=True)
            worker.emulator_name = f"delivery worker {number}"  # type: ignore[attr-defined]
            worker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.wait_for_executions(timeout=5, quiet=True)
        except Exception:
            if exc[0] is None:
                raise  # the emulator's own failure; while another unwinds, that one is the news
        finally:
            self._stack.close()

    def client(self, service: str, account: str | None = None) -> Any:
        """A client in the central account, or in `account` (default: the one as_account() set)."""
        import boto3

        account = account or self._acting_as
        if account is None or account == self._root.account:
            account = None
        key = (service, account)
        if key in self._clients:
            return self._clients[key]
        if account is None:
            made = boto3.client(service, region_name=self.region)
        else:
            if account not in self._account_credentials:
                credentials = self.client("sts", account=self._root.account).assume_role(
                    RoleArn=f"arn:aws:iam::{account}:role/emulator-set-up", RoleSessionName="emulator"
                )["Credentials"]
                self._account_credentials[account] = {
                    "aws_access_key_id": credentials["AccessKeyId"],
                    "aws_secret_access_key": credentials["SecretAccessKey"],
                    "aws_session_token": credentials["SessionToken"],
                }
            made = boto3.client(service, region_name=self.region, **self._account_credentials[account])
        self._clients[key] = made
        return made

    @property
    def acting_account(self) -> str:
        """The account client() works in now."""
        return self._acting_as or self.account

    # --- several regions ---
    def _join(self, peer: Emulator, member: bool = False) -> Emulator:
        """Run `peer` (another region's stack, or a member account's) in this emulator's moto
        world: the same scheduler, clock, delivery queue, log, faults and hooks."""
        key = (peer.account, peer.region)
        if key in self._stacks or (not member and peer.region in self._regions):
            raise TemplateError(f"the emulator runs a stack in {peer.account}/{peer.region} already")
        peer._root = self
        peer.world = self.world
        peer.log, peer.seed, peer.workers = self.log, self.seed, self.workers  # the root's settings
        self._stacks[key] = peer
        if not member:
            self._regions[peer.region] = peer
        return peer

    def peer(self, region: str) -> Emulator:
        """The emulator of the stack in `region`."""
        try:
            return self._regions[region]
        except KeyError:
            raise TemplateError(f"the emulator runs no stack in {region} ({', '.join(self._regions)})") from None

    @property
    def regions(self) -> list[str]:
        """The regions the emulator runs a stack in, the primary first."""
        return list(self._regions)

    def every_region(self) -> list[Emulator]:
        """The emulator of each region's recovery stack, the primary's first."""
        return list(self._regions.values())

    def every_stack(self) -> list[Emulator]:
        """Every stack the emulator runs: each region's, then each member account's."""
        return list(self._stacks.values())

    def stack(self, account: str, region: str) -> Emulator | None:
        """The stack the emulator runs in `account` and `region` (a region's, or a member
        account's), if any."""
        return self._stacks.get((account, region))

    def on_exit(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call `callback(*args, **kwargs)` when the emulator exits (with the moto world it
        patched): what installed a hook on the emulator's world removes it there."""
        self._stack.callback(callback, *args, **kwargs)

    def store(self) -> Any:
        """This stack's recovery table (in several regions: this region's replica)."""
        from core.store import RecoveryStore

        return RecoveryStore(self.outputs["RecoveryTableName"], self.client("dynamodb"))

    def fail_region(self, region: str, global_services: tuple[str, ...] = ()) -> None:
        """From now on, every call the functions make to `region`'s regional endpoints fails as
        when the region cannot be reached (EndpointConnectionError): calls from a handler's
        thread, or from any thread but the one that entered the emulator (a handler's worker
        threads). The drill's own calls (to build and inspect the workload) still work.

        A global service's endpoint keeps answering unless it is in `global_services` (botocore
        endpoint prefixes, e.g. "route53"): those whose control plane runs in this region, as
        Route 53's and IAM's run in us-east-1, fail with it."""
        self.failed_regions.add(region)
        self.failed_global_services.update(global_services)
        self.reset_clients()

    def traffic_moved(self) -> None:
        """Traffic moves (behaviour.py calls this on a DNS change or a routing control switch)."""
        for hook in list(self.on_traffic_moved):
            hook()

    def reset_clients(self) -> None:
        """Warm environments are discarded: every invocation from now on makes new clients (they
        copy the default session's hooks when they are made, e.g. a meter registered since)."""
        root = self._root
        root._warm.clear()
        root._warm_generation += 1

    @contextlib.contextmanager
    def as_account(self, account: str | None) -> Iterator[None]:
        """Within the block, client() works in `account` (a member account; None: the central one)."""
        previous, self._acting_as = self._acting_as, account
        try:
            yield
        finally:
            self._acting_as = previous

    # --- the virtual clock ---
    @property
    def now(self) -> float:
        """Virtual seconds since the emulator started."""
        sched = self._root.scheduler
        return sched.now if sched is not None else 0.0

    @property
    def virtual_seconds(self) -> float:
        """Virtual time that has passed (the waits a real recovery would have made)."""
        return self.now

    def schedule(self, at: float, callback: Callable[[], None]) -> None:
        """Run `callback` at virtual second `at` (now, if that has passed), while no handler runs:
        a drill's signal or action. It runs during pump()."""
        sched = self._root.scheduler
        assert sched is not None, "the emulator is not running"
        sched.call_at(at, callback)

    def advance(self, seconds: float, timeout: float = 120.0) -> None:
        """Let `seconds` of virtual time pass, running whatever is due meanwhile."""
        self._root._run(until=self.now + float(seconds), timeout=timeout)

    def running_seconds(self) -> float:
        """Real seconds the calling thread has run as a fiber so far (a handler's own work,
        without the time others ran while it was parked); outside a fiber, a perf counter."""
        sched = self._root.scheduler
        if sched is None:
            import time

            return time.perf_counter()
        return sched.busy_seconds()

    def interleaving(self) -> dict[str, Any]:
        """The seed, the workers and a digest of the interleaving (which fiber made which call,
        in order): the same seed gives the same digest."""
        import hashlib

        sched = self._root.scheduler
        assert sched is not None
        digest = hashlib.sha256()
        for step in sched.trace:
            digest.update(f"{step.fiber}|{step.actor.split('#')[0]}|{step.call}\n".encode())
        return {
            "seed": sched.seed,
            "workers": sched.workers,
            "api_calls": len(sched.trace),
            "switches": sched.switches,
            "digest": digest.hexdigest()[:16],
        }

    def new_id(self) -> str:
        """A uuid from the emulator's seeded generator (event ids, request ids: replays repeat them)."""
        return str(uuid.UUID(int=self._root._ids.getrandbits(128), version=4))

    # --- Lambda ---
    def invoke(self, function_name: str, payload: Any, source: str = "task") -> tuple[bool, Any]:
        """Run a function's handler in process, as Lambda would: with its environment, in a warm
        environment of its own (reused by later invocations of the function), within the
        concurrency of `workers` invocations at once; returns (ok, result or the error payload
        Lambda would return). Called from a fiber (a delivery worker, a Step Functions task), the
        handler interleaves with others at its AWS calls."""
        spec = self.functions.get(function_name)
        if spec is None:
            raise TemplateError(f"the template has no function {function_name}")
        module_name, _, attribute = spec.handler.rpartition(".")
        root = self._root
        sched = root.scheduler
        in_fiber = sched is not None and scheduler.current_fiber() is not None
        if in_fiber:
            sched.acquire_slot()  # type: ignore[union-attr]
        generation, caches = root._take_warm(spec.name)
        runtime = {"AWS_LAMBDA_FUNCTION_NAME": spec.name, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        invocation = isolation.Invocation(
            next(root._invocation_numbers), spec.name, {**spec.environment, **runtime}, caches
        )
        try:
            with isolation.running(invocation), _in_handler():
                try:
                    handler = getattr(importlib.import_module(module_name), attribute)
                    result = handler(payload, _Context(spec, self.new_id()))
                    self.invocations.append(Invocation(spec.name, source, True, result=result, at=_now()))
                    return True, result
                except Exception as exc:  # noqa: BLE001 - reported as Lambda reports it
                    error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
                    self.invocations.append(
                        Invocation(spec.name, source, False, error=f"{type(exc).__name__}: {exc}", at=_now())
                    )
                    return False, error
        finally:
            root._return_warm(spec.name, generation, caches)
            if in_fiber:
                sched.release_slot()  # type: ignore[union-attr]

    def _take_warm(self, function: str) -> tuple[int, Any]:
        """A warm environment of the function (its core.aws caches), or a new one (a cold start)."""
        from core import aws as core_aws

        pool = self._warm.setdefault(function, [])
        if pool:
            return pool.pop()
        return self._warm_generation, core_aws.Caches()

    def _return_warm(self, function: str, generation: int, caches: Any) -> None:
        if generation == self._warm_generation:  # not when reset_clients() discarded them meanwhile
            self._warm.setdefault(function, []).append((generation, caches))

    def _owner_of(self, function_name: str) -> Emulator:
        """The emulator (region) whose stack has this function."""
        for emulator in self._regions.values():
            if function_name in emulator.functions:
                return emulator
        raise TemplateError(f"no stack in the emulator has a function {function_name}")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Any:
    """Set the process's variables the emulator runs with (before any handler runs; a handler
    sees its function's over these, isolation.py) and put each back after, key by key."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _invocation_caches() -> Any:
    """core.aws's caches for the running invocation: its warm environment's (None: the process's)."""
    invocation = isolation.current()
    return invocation.caches if invocation is not None else None


def _now() -> str:
    return fidelity.virtual_now().isoformat()
