"""The local emulator: the synthesized stack, running on this machine.

It reads the template from cdk.out and creates its resources in moto; routes EventBridge events
to the rules' targets using the rules' own event patterns (moto does not deliver to Lambda or
Step Functions); runs Lambda handlers in process with the environment the template gives them;
and runs the real state machine definition in moto's Step Functions executor, whose Lambda tasks
are dispatched to the same in-process handlers. Step Functions waits and retry back-offs are
fast-forwarded on a virtual clock (functions/core/clock.py), so a drill takes seconds while its
MTTR still counts the waits a real recovery would make.

Several regions: `Emulator(primary_template, region=..., peers={"us-west-2": standby_template})`
runs each region's stack in that region of the same moto world (one clock, one lock, one event
queue; events are routed to the stack of the region they were put in). `peer(region)` gives the
emulator of a region. A global table's replicas are created in every region the emulator runs;
they are not replicated to each other (a drill reads the region it asks about). `fail_region`
makes every regional AWS endpoint of a region unreachable for the functions, as a regional
outage does; global endpoints (Route 53, IAM) keep answering.

Member accounts: `members=[(account, region, member_template)]` deploys each member stack in its
account (its alarms, and its rules forwarding signals to the central default bus, which the
emulator delivers across accounts as EventBridge does: the event keeps its source account).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import tempfile
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from recoveryctl import FUNCTIONS_DIR  # noqa: F401 - puts functions/ on sys.path
from recoveryctl.emulator.template import Template, TemplateError

ACCOUNT = "123456789012"
REGION = "us-east-1"
_ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries
# Whether this thread runs a function's handler (a region outage fails only the functions' calls).
_handler = threading.local()


@dataclass
class FunctionSpec:
    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    dead_letter_arn: str | None = None


@dataclass
class Route:
    rule: str
    bus: str
    pattern: Any
    targets: list[dict[str, Any]]


@dataclass
class Invocation:
    function: str
    source: str  # "event" (asynchronous, from a rule) or "task" (from the state machine)
    ok: bool
    error: str | None = None
    result: Any = None
    at: str = ""


@dataclass
class Fault:
    """Makes one AWS API operation fail, as a scenario asks (e.g. AccessDenied on terminate)."""

    service: str
    operation: str
    error_code: str
    message: str = "injected by the drill"
    status: int = 400
    times: int | None = None  # None: every call
    calls: int = 0


class _Context:
    """The parts of the Lambda context object that Powertools reads."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = "emulator"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Emulator:
    template_path: Path
    region: str = REGION
    account: str = ACCOUNT
    log: io.StringIO = field(default_factory=io.StringIO)
    # Other regions' stacks (region -> template), run beside this one (the primary).
    peers: dict[str, Path] = field(default_factory=dict)
    # Member accounts' stacks: (account, region, template).
    members: list[tuple[str, str, Path]] = field(default_factory=list)

    def __post_init__(self) -> None:
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
        self.invocations: list[Invocation] = []
        self.events: list[dict[str, Any]] = []  # every event put on any bus, in order
        self.faults: list[Fault] = []
        self.virtual_seconds = 0.0
        # Events put on a bus, to route: (bus name, event, the stack whose bus it is)
        self._queue: deque[tuple[str, dict[str, Any], Emulator]] = deque()
        self._lock = threading.RLock()
        self._stack = contextlib.ExitStack()
        self.outputs: dict[str, str] = {}
        self.escalation_inbox: str | None = None
        self._alarm_states: dict[str, dict[str, str]] = {}
        # Called while executions run and no event waits: e.g. a drill answering an approval.
        self.idle_hooks: list[Any] = []
        # Multi-account: the account client() works in (None: the emulator's own, the central
        # account), and the credentials of each other account (moto's sts.assume_role gives
        # credentials of the role's account).
        self._acting_as: str | None = None
        self._account_credentials: dict[str, dict[str, str]] = {}
        # Several regions: the emulator that entered moto (the root) and every region's emulator.
        self._root: Emulator = self
        self._regions: dict[str, Emulator] = {self.region: self}
        # Every stack, the members' included, by (account, region): whose bus an event is on.
        self._stacks: dict[tuple[str, str], Emulator] = {(self.account, self.region): self}
        # Regions whose regional endpoints the functions cannot reach (fail_region).
        self.failed_regions: set[str] = set()
        self.failed_global_services: set[str] = set()  # global endpoints failing with a region

    # --- lifecycle ---
    def __enter__(self) -> Emulator:
        from moto import mock_aws

        from core import aws as core_aws
        from core import clock

        env = {
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "emulator",
            "AWS_SECRET_ACCESS_KEY": "emulator",
            "AWS_SESSION_TOKEN": "emulator",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
            "MOTO_ALLOW_NONEXISTENT_REGION": "true",
            # the workload launches from an image id of its own: no need for moto's public AMIs
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        }
        self._stack.enter_context(_environment(env))
        self._stack.enter_context(
            mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
        )
        self._patch_moto()
        for noisy in ("moto.stepfunctions", "moto.stepfunctions.parser"):
            logger = logging.getLogger(noisy)
            self._stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.CRITICAL)
        clock.reset()
        core_aws.reset()
        # The functions' JSON logs go to the emulator's log, wherever they were first imported.
        from core.observability import logger as function_logger

        previous = function_logger.registered_handler.setStream(self.log)
        self._stack.callback(function_logger.registered_handler.setStream, previous)
        self._install_fault_hook()
        from recoveryctl.emulator import behaviour

        self.zonal_shifts = behaviour.install(self)
        self._install_region_outages()
        self.deploy()
        for region, template_path in self.peers.items():
            self._join(Emulator(template_path, region=region, account=self.account)).deploy()
        for account, region, template_path in self.members:
            member = Emulator(template_path, region=region, account=account)
            member._acting_as = account  # its client() works in the member account
            self._join(member, member=True).deploy()
        return self

    def __exit__(self, *exc: Any) -> None:
        from core import aws as core_aws
        from core import clock

        self.wait_for_executions(timeout=5, quiet=True)
        core_aws.reset()
        clock.reset()
        self._stack.close()

    def client(self, service: str, account: str | None = None) -> Any:
        """A client in the central account, or in `account` (default: the one as_account() set)."""
        import boto3

        account = account or self._acting_as
        if account is None or account == self._root.account:
            return boto3.client(service, region_name=self.region)
        if account not in self._account_credentials:
            credentials = boto3.client("sts", region_name=self.region).assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/emulator-set-up", RoleSessionName="emulator"
            )["Credentials"]
            self._account_credentials[account] = {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            }
        return boto3.client(service, region_name=self.region, **self._account_credentials[account])

    @property
    def acting_account(self) -> str:
        """The account client() works in now."""
        return self._acting_as or self.account

    # --- several regions ---
    def _join(self, peer: Emulator, member: bool = False) -> Emulator:
        """Run `peer` (another region's stack, or a member account's) in this emulator's moto
        world: the same lock, clock, event queue, log, faults and hooks."""
        key = (peer.account, peer.region)
        if key in self._stacks or (not member and peer.region in self._regions):
            raise TemplateError(f"the emulator runs a stack in {peer.account}/{peer.region} already")
        peer._root = self
        peer._regions = self._regions
        peer._stacks = self._stacks
        self._stacks[key] = peer
        if not member:
            self._regions[peer.region] = peer
        for shared in (
            "_lock",
            "_stack",
            "_queue",
            "log",
            "faults",
            "idle_hooks",
            "failing_health_checks",
            "failing_target_groups",
            "health_check_targets",
            "on_traffic_moved",
            "invocations",
            "events",
            "failed_regions",
            "failed_global_services",
            "zonal_shifts",
            "routing_controls",
        ):
            setattr(peer, shared, getattr(self, shared))
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
        from core import aws as core_aws

        self.failed_regions.add(region)
        self.failed_global_services.update(global_services)
        core_aws.reset()

    def traffic_moved(self) -> None:
        """Traffic moves (behaviour.py calls this on a DNS change or a routing control switch)."""
        for hook in list(self.on_traffic_moved):
            hook()

    def _install_region_outages(self) -> None:
        import boto3
        from botocore.exceptions import EndpointConnectionError

        session = boto3._get_default_session()
        failed, failed_global = self.failed_regions, self.failed_global_services

        owner = threading.get_ident()  # the drill's (and the emulator's own) thread

        def before_call(model: Any, request_signer: Any = None, **kwargs: Any) -> None:
            if not failed or request_signer is None:
                return
            if getattr(_handler, "exempt", 0) or (not getattr(_handler, "depth", 0) and threading.get_ident() == owner):
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

    @contextlib.contextmanager
    def as_account(self, account: str | None) -> Iterator[None]:
        """Within the block, client() works in `account` (a member account; None: the central one)."""
        previous, self._acting_as = self._acting_as, account
        try:
            yield
        finally:
            self._acting_as = previous

    # --- patches: Lambda dispatch, virtual waits, event routing ---
    def _patch_moto(self) -> None:
        from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup
        from moto.events.models import EventsBackend
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function
        from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint
        from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

        emulator = self

        def invoke(
            backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: dict[str, str]
        ) -> bytes | None:
            name = function_name.split(":function:")[-1].split(":")[0]
            payload = json.loads(body) if body else {}
            ok, result = emulator._owner_of(name).invoke(name, payload, source="task")
            if not ok:
                response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(result, default=str).encode()

        def wait_interval(component: Any, env: Any, wait_seconds: int) -> None:
            emulator._advance(wait_seconds)

        class _VirtualTime:
            @staticmethod
            def sleep(seconds: float) -> None:
                emulator._advance(seconds)

            time = staticmethod(time.time)

        original_put_events = EventsBackend.put_events

        def put_events(backend: Any, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            results = original_put_events(backend, entries)
            target = emulator._stacks.get((backend.account_id, backend.region_name))
            for entry, result in zip(entries, results, strict=False):
                if result.get("EventId") and target is not None:  # no stack of ours in that region
                    target._accept(entry, result["EventId"], backend)
            return results

        def update_attached_target_groups(backend: Any, group_name: str) -> None:
            # Fidelity: an Auto Scaling group registers its running instances with its target
            # groups; moto re-registers every instance and so fails on a stopped (impaired) one.
            group = backend.autoscaling_groups[group_name]
            if not group.target_group_arns:
                return
            running = sorted(s.instance.id for s in group.instance_states if s.instance.state == "running")
            for target_group in backend.elbv2_backend.describe_target_groups(
                target_group_arns=group.target_group_arns, load_balancer_arn=None, names=None
            ):
                if running:
                    backend.elbv2_backend.register_targets(
                        target_group.arn, [{"Id": i, "Port": target_group.port} for i in running]
                    )

        original_launch = FakeAutoScalingGroup.replace_autoscaling_group_instances

        def balanced_launch(group: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
            # Fidelity: a group spreads its instances across its zones; moto launches every
            # instance into the first subnet, so a zone outage would take the whole group.
            subnets = group.vpc_zone_identifier.split(",") if group.vpc_zone_identifier else []
            if len(subnets) < 2:
                return original_launch(group, count_needed, propagated_tags)
            saved = group.vpc_zone_identifier
            try:
                for _ in range(count_needed):
                    load = {s: sum(1 for st in group.instance_states if st.instance.subnet_id == s) for s in subnets}
                    group.vpc_zone_identifier = min(subnets, key=lambda s: (load[s], subnets.index(s)))
                    original_launch(group, 1, dict(propagated_tags))
            finally:
                group.vpc_zone_identifier = saved
            return None

        original_health = FakeTargetGroup.health_for

        def health_for(target_group: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
            # A running instance whose application fails the load balancer's health check.
            status = original_health(target_group, target, ec2_backend)
            instance = ec2_backend.get_instance_by_id(target["Id"]) if target["Id"].startswith("i-") else None
            if instance is not None and instance.state in ("shutting-down", "terminated"):
                # A terminated instance is being deregistered (moto reports it healthy).
                return FakeHealthStatus(
                    target["Id"],
                    status.port,
                    status.health_check_port,
                    "draining",
                    "Target.DeregistrationInProgress",
                    "Target deregistration is in progress",
                )
            failing = target["Id"] in emulator.failing_health_checks
            failing = failing or target_group.arn in emulator.failing_target_groups
            if failing and status.status == "healthy":
                return FakeHealthStatus(
                    target["Id"],
                    status.port,
                    status.health_check_port,
                    "unhealthy",
                    "Target.FailedHealthChecks",
                    "Health checks failed",
                )
            return status

        def callback_wait(endpoint: Any, timeout: float | None = None) -> Any:
            # A task waiting for its token (a human's approval) times out on the virtual clock:
            # a drill answers it, or moves the clock past its time-box.
            from core import clock

            deadline = None if timeout is None else clock.utc_now().timestamp() + float(timeout)
            while not endpoint._notify_event.wait(timeout=0.02):
                if deadline is not None and clock.utc_now().timestamp() >= deadline:
                    break
            return endpoint._outcome

        # Step Functions' executor threads make a boto3 client per Lambda task; making a client
        # iterates os.environ, which a handler changes in another thread: make them under the lock.
        import sys as _sys

        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils  # noqa: F401
        from moto.stepfunctions.parser.asl.utils import boto_client as sfn_clients

        made_by = sfn_clients.boto_client_for

        def boto_client_for(*args: Any, **kwargs: Any) -> Any:
            with emulator._lock:
                return made_by(*args, **kwargs)

        for name, module in list(_sys.modules.items()):
            if name.startswith("moto.stepfunctions.parser") and getattr(module, "boto_client_for", None) is made_by:
                self._stack.enter_context(mock.patch.object(module, "boto_client_for", boto_client_for))
        self._stack.enter_context(mock.patch.object(CallbackEndpoint, "wait", callback_wait))
        # An execution's history is stamped on the virtual clock, as the functions' records are:
        # a state's entry, exit and duration then read as a real recovery's would (a 30 s wait
        # lasts 30 s), in the same time as the signals and the audit trail.
        self._stack.enter_context(mock.patch.object(EventManager, "_get_current_timestamp", staticmethod(_virtual_now)))
        self._stack.enter_context(mock.patch.object(FakeTargetGroup, "health_for", health_for))
        self._stack.enter_context(
            mock.patch.object(FakeAutoScalingGroup, "replace_autoscaling_group_instances", balanced_launch)
        )
        self._stack.enter_context(
            mock.patch.object(AutoScalingBackend, "update_attached_target_groups", update_attached_target_groups)
        )
        self._stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", invoke))
        self._stack.enter_context(mock.patch.object(wait_function.WaitFunction, "_wait_interval", wait_interval))
        self._stack.enter_context(mock.patch.object(retrier_decl, "time", _VirtualTime))
        self._stack.enter_context(mock.patch.object(EventsBackend, "put_events", put_events))

    def _advance(self, seconds: float) -> None:
        from core import clock

        if self._root is not self:
            self._root._advance(seconds)
            return
        with self._lock:
            self.virtual_seconds += float(seconds)
            clock.advance(float(seconds))

    def _install_fault_hook(self) -> None:
        import boto3
        from botocore.awsrequest import AWSResponse

        session = boto3._get_default_session()

        def before_call(model: Any, **kwargs: Any) -> Any:
            service = model.service_model.service_id.hyphenize()
            for fault in self.faults:
                if fault.service == service and fault.operation == model.name:
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
        error_code: str,
        message: str = "injected by the drill",
        status: int = 400,
        times: int | None = None,
    ) -> Fault:
        """Make `service`'s `operation` (botocore names, e.g. auto-scaling / SetInstanceHealth) fail."""
        from core import aws as core_aws

        fault = Fault(service, operation, error_code, message, status, times)
        self.faults.append(fault)
        core_aws.reset()  # clients copy the session's hooks when they are created
        return fault

    # --- deployment ---
    def deploy(self) -> None:
        t = self.template
        ddb, sns, sqs, events, sfn, cw = (
            self.client(s) for s in ("dynamodb", "sns", "sqs", "events", "stepfunctions", "cloudwatch")
        )
        for logical_id in t.of_type("AWS::SQS::Queue"):
            sqs.create_queue(QueueName=t.names[logical_id])
        for logical_id in t.of_type("AWS::SNS::Topic"):
            sns.create_topic(Name=t.names[logical_id])
        for kind in ("AWS::DynamoDB::GlobalTable", "AWS::DynamoDB::Table"):
            for logical_id, resource in t.of_type(kind).items():
                self._create_table(ddb, t.names[logical_id], resource["Properties"])
        if self._root is not self:
            # The primary's global table has a replica here (a standby stack declares no table).
            root = self._root.template
            for logical_id, resource in root.of_type("AWS::DynamoDB::GlobalTable").items():
                replicas = [r.get("Region") for r in resource["Properties"].get("Replicas", [])]
                if self.region in replicas:
                    self._create_table(ddb, root.names[logical_id], resource["Properties"])
        for logical_id in t.of_type("AWS::Events::EventBus"):
            events.create_event_bus(Name=t.names[logical_id])
        for logical_id, resource in t.of_type("AWS::Lambda::Function").items():
            props = t.resolve(resource["Properties"])
            spec = FunctionSpec(
                name=t.names[logical_id],
                arn=t.arn(logical_id),
                handler=props["Handler"],
                environment={k: str(v) for k, v in (props.get("Environment") or {}).get("Variables", {}).items()},
                dead_letter_arn=(props.get("DeadLetterConfig") or {}).get("TargetArn"),
            )
            self.functions[spec.name] = spec
        self._install_runtime_config()
        for logical_id, resource in t.of_type("AWS::StepFunctions::StateMachine").items():
            props = t.resolve(resource["Properties"])
            definition = props.get("DefinitionString")
            if not isinstance(definition, str):
                definition = json.dumps(definition)
            sfn.create_state_machine(
                name=t.names[logical_id], definition=definition, roleArn=props["RoleArn"], type="STANDARD"
            )
        for logical_id, resource in t.of_type("AWS::Events::Rule").items():
            props = t.resolve(resource["Properties"])
            if props.get("State", "ENABLED") != "ENABLED":
                continue
            from moto.events.models import EventPattern

            bus = props.get("EventBusName", "default").split("/")[-1]
            if "EventPattern" not in props:
                # A schedule: fired on demand (fire_schedules), not by events.
                self.schedules.append(
                    Route(t.names[logical_id], bus, props.get("ScheduleExpression"), props.get("Targets", []))
                )
                continue
            self.routes.append(
                Route(
                    t.names[logical_id],
                    bus,
                    EventPattern.load(json.dumps(props["EventPattern"])),
                    props.get("Targets", []),
                )
            )
        for resource in t.of_type("AWS::CloudWatch::Alarm").values():
            self._create_alarm(cw, t.resolve(resource["Properties"]))
        self.outputs = {k: str(t.resolve(v["Value"])) for k, v in t.body.get("Outputs", {}).items()}
        # A human's inbox for escalations: an SQS queue subscribed to every topic.
        inbox = sqs.create_queue(QueueName="escalation-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for logical_id in t.of_type("AWS::SNS::Topic"):
            sns.subscribe(
                TopicArn=t.arn(logical_id),
                Protocol="sqs",
                Endpoint=inbox_arn,
                Attributes={"RawMessageDelivery": "true"},
            )
        self.escalation_inbox = inbox

    def _install_runtime_config(self) -> None:
        """The functions read plans and guardrails from a file in their code asset
        (core/runtime_config.py); the emulator writes the same configuration, from the template's
        metadata, into a file of its own and points the functions at it."""
        if not any("RECOVERY_CONFIG" in f.environment for f in self.functions.values()):
            return
        folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="recovery-emulator-")))
        self.runtime_config_path = folder / "recovery-config.json"
        self.write_runtime_config()
        for function in self.functions.values():
            if "RECOVERY_CONFIG" in function.environment:
                function.environment["RECOVERY_CONFIG"] = str(self.runtime_config_path)

    def write_runtime_config(self, **overrides: Any) -> None:
        """(Re)write the functions' recovery configuration; `overrides` replace its parts
        (plans, guardrails, maintenance), e.g. a drill scenario's own plans."""
        from core import runtime_config

        declared = self.template.metadata.get("ImpairmentRecovery", {})
        parts = {
            "plans": declared.get("plans", []),
            "guardrails": _json_or_value(declared.get("guardrails", {})),
            "maintenance": {w["name"]: w.get("maintenance") or {} for w in declared.get("workloads", [])},
            "probes": declared.get("probes", []),  # a standby region's probes of the regions it stands by for
            **overrides,
        }
        config = runtime_config.build(parts["plans"], parts["guardrails"], parts["maintenance"], parts["probes"])
        self.runtime_config_path.write_text(config.to_json())

    @staticmethod
    def _create_table(ddb: Any, name: str, props: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        indexes = [
            {
                "IndexName": g["IndexName"],
                "KeySchema": g["KeySchema"],
                "Projection": g.get("Projection", {"ProjectionType": "ALL"}),
            }
            for g in props.get("GlobalSecondaryIndexes", [])
        ]
        if indexes:
            kwargs["GlobalSecondaryIndexes"] = indexes
        ddb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )

    @staticmethod
    def _create_alarm(cw: Any, props: dict[str, Any]) -> None:
        keys = (
            "AlarmName",
            "AlarmDescription",
            "MetricName",
            "Namespace",
            "Statistic",
            "Period",
            "Threshold",
            "ComparisonOperator",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "TreatMissingData",
            "Dimensions",
            "Metrics",
            "Tags",
            "ExtendedStatistic",
            "Unit",
        )
        cw.put_metric_alarm(**{k: props[k] for k in keys if k in props})

    # --- Lambda ---
    def invoke(self, function_name: str, payload: Any, source: str = "task") -> tuple[bool, Any]:
        """Run a function's handler in process with its environment; returns (ok, result or
        the error payload Lambda would return)."""
        from core import aws as core_aws

        spec = self.functions.get(function_name)
        if spec is None:
            raise TemplateError(f"the template has no function {function_name}")
        module_name, _, attribute = spec.handler.rpartition(".")
        runtime = {"AWS_LAMBDA_FUNCTION_NAME": spec.name, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        with (
            self._lock,
            _environment({**spec.environment, **runtime}),
            _in_handler(),
            contextlib.redirect_stdout(self.log),
            warnings.catch_warnings(),
        ):
            # Powertools warns on stderr when an invocation emits no metric: noise in a drill.
            warnings.simplefilter("ignore", UserWarning)
            core_aws.reset()
            try:
                handler = getattr(importlib.import_module(module_name), attribute)
                result = handler(payload, _Context(spec))
                self.invocations.append(Invocation(spec.name, source, True, result=result, at=_now()))
                return True, result
            except Exception as exc:  # noqa: BLE001 - reported as Lambda reports it
                error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
                self.invocations.append(
                    Invocation(spec.name, source, False, error=f"{type(exc).__name__}: {exc}", at=_now())
                )
                return False, error

    def _owner_of(self, function_name: str) -> Emulator:
        """The emulator (region) whose stack has this function."""
        for emulator in self._regions.values():
            if function_name in emulator.functions:
                return emulator
        raise TemplateError(f"no stack in the emulator has a function {function_name}")

    # --- EventBridge ---
    def _accept(self, entry: dict[str, Any], event_id: str, backend: Any) -> None:
        bus = (entry.get("EventBusName") or "default").split("/")[-1]
        event = {
            "version": "0",
            "id": event_id,
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": self.account,
            "time": _now(),
            "region": self.region,
            "resources": entry.get("Resources", []),
            "detail": json.loads(entry["Detail"]),
        }
        with self._lock:
            self.events.append({"bus": bus, **event})
            self._queue.append((bus, event, self))

    def put_event(self, event: dict[str, Any], bus: str = "default") -> None:
        """Deliver an event exactly as AWS would have put it on `bus` (e.g. an alarm state change
        on the default bus); it is routed on the next pump()."""
        with self._lock:
            self.events.append({"bus": bus, **event})
            self._queue.append((bus, event, self))

    def pump(self, timeout: float = 120.0) -> None:
        """Deliver queued events to their targets until nothing is left to deliver and no
        execution is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                item = self._queue.popleft() if self._queue else None
            if item is not None:
                bus, event, owner = item
                with self._lock:
                    owner._route(bus, event)
                continue
            if not self._running_executions():
                with self._lock:
                    if not self._queue:
                        return
                continue
            with self._lock:  # not while a handler changes os.environ (see _environment)
                for hook in list(self.idle_hooks):
                    hook()
            time.sleep(0.02)
        raise TimeoutError(f"the emulator did not settle within {timeout} s")

    def fire_schedules(self) -> int:
        """Deliver one "Scheduled Event" to the target of every schedule rule (a sweep's tick);
        returns how many rules fired. Run pump() afterwards."""
        from core import clock

        for schedule in self.schedules:
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": self.account,
                "time": clock.utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region,
                "resources": [
                    self.template.arn(k)
                    for k, v in self.template.of_type("AWS::Events::Rule").items()
                    if self.template.names[k] == schedule.rule
                ],
                "detail": {},
            }
            for target in schedule.targets:
                if ":function:" in target["Arn"]:
                    self._deliver_to_function(target["Arn"].split(":function:")[-1], event, target)
        return len(self.schedules)

    def _route(self, bus: str, event: dict[str, Any]) -> None:
        """Deliver an event on this stack's `bus` to the targets of the rules that match it."""
        for route in self.routes:
            if route.bus != bus or not route.pattern.matches_event(event):
                continue
            for target in route.targets:
                arn = target["Arn"]
                if ":function:" in arn:
                    self._deliver_to_function(arn.split(":function:")[-1], event, target)
                elif ":stateMachine:" in arn:
                    self.client("stepfunctions").start_execution(stateMachineArn=arn, input=json.dumps(event))
                elif ":event-bus/" in arn:
                    self._forward(arn, event)
                elif ":sqs:" in arn:
                    url = self.client("sqs").get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
                    self.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(event))

    def _forward(self, bus_arn: str, event: dict[str, Any]) -> None:
        """An event bus target (a member forwarding to the central account): the event goes on
        that bus as it is, its source account kept, as EventBridge delivers across accounts."""
        _, _, _, region, account, resource = bus_arn.split(":", 5)
        target = self._stacks.get((account, region))
        if target is None:
            return  # a bus outside the emulator: nothing listens there
        with self._lock:
            target.events.append({"bus": resource.split("/", 1)[1], **event})
            self._queue.append((resource.split("/", 1)[1], json.loads(json.dumps(event)), target))

    def _deliver_to_function(self, name: str, event: dict[str, Any], target: dict[str, Any]) -> None:
        """Asynchronous invocation: retried, then sent to the function's dead-letter queue."""
        spec = self.functions[name]
        error = None
        for _ in range(_ASYNC_ATTEMPTS):
            ok, result = self.invoke(name, event, source="event")
            if ok:
                return
            error = result
        dead_letter = spec.dead_letter_arn or (target.get("DeadLetterConfig") or {}).get("Arn")
        if dead_letter:
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=dead_letter.rsplit(":", 1)[-1])["QueueUrl"]
            sqs.send_message(
                QueueUrl=url,
                MessageBody=json.dumps(event),
                MessageAttributes={"ErrorMessage": {"DataType": "String", "StringValue": json.dumps(error)[:1000]}},
            )

    def dead_letter_count(self) -> int:
        """Messages waiting in the stack's dead-letter queues (events nothing could process)."""
        sqs = self.client("sqs")
        count = 0
        for url in sqs.list_queues().get("QueueUrls", []):
            if "DeadLetter" in url:
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
                count += int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        return count

    # --- Step Functions ---
    @property
    def state_machine_arn(self) -> str:
        return self.outputs.get("RecoveryStateMachineArn") or next(
            self.template.arn(k) for k in self.template.of_type("AWS::StepFunctions::StateMachine")
        )

    def executions(self) -> list[dict[str, Any]]:
        with self._lock:  # a client is created here: not while a handler changes os.environ
            sfn = self.client("stepfunctions")
            found: list[dict[str, Any]] = []
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn):
                found.extend(page["executions"])
            return found

    def _running_executions(self) -> bool:
        """In any region."""
        return any(e["status"] == "RUNNING" for emulator in self.every_region() for e in emulator.executions())

    def wait_for_executions(self, timeout: float = 120.0, quiet: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while self._running_executions():
            if time.monotonic() > deadline:
                if quiet:
                    return
                raise TimeoutError("executions still running")
            time.sleep(0.02)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        with self._lock:
            sfn = self.client("stepfunctions")
            events: list[dict[str, Any]] = []
            for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
                events.extend(page["events"])
            return events

    # --- CloudWatch: an alarm changes state the way CloudWatch announces it ---
    def set_alarm_state(
        self,
        alarm_name: str,
        state: str,
        reason: str = "Threshold Crossed: injected by a drill",
        deliveries: int = 1,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Put the alarm into `state` and put its "CloudWatch Alarm State Change" event on the
        default bus (`deliveries` times: EventBridge delivers at least once)."""
        from core import clock

        cw = self.client("cloudwatch")
        alarms = cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        if not alarms:
            raise TemplateError(f"no alarm named {alarm_name}")
        alarm = alarms[0]
        # The previous state as CloudWatch announced it (its timestamp is part of the impairment id).
        previous = self._alarm_states.get(alarm_name) or {
            "value": alarm.get("StateValue", "INSUFFICIENT_DATA"),
            "reason": alarm.get("StateReason", "Unchecked: Initial alarm creation"),
            "timestamp": _cw_time(alarm.get("StateUpdatedTimestamp") or clock.utc_now()),
        }
        cw.set_alarm_state(AlarmName=alarm_name, StateValue=state, StateReason=reason)
        now = at or clock.utc_now()
        current = {"value": state, "reason": reason, "timestamp": _cw_time(now)}
        self._alarm_states[alarm_name] = current
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": self.account,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [alarm["AlarmArn"]],
            "detail": {
                "alarmName": alarm_name,
                "state": current,
                "previousState": previous,
                "configuration": _alarm_configuration(alarm),
            },
        }
        for _ in range(deliveries):
            self.put_event(json.loads(json.dumps(event)))
        return event

    def escalations(self) -> list[dict[str, Any]]:
        """Messages a human received on the escalation topic."""
        sqs = self.client("sqs")
        messages = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.escalation_inbox, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                body = message["Body"]
                with contextlib.suppress(ValueError):
                    body = json.loads(body)
                messages.append(body)
                sqs.delete_message(QueueUrl=self.escalation_inbox, ReceiptHandle=message["ReceiptHandle"])


def _alarm_configuration(alarm: dict[str, Any]) -> dict[str, Any]:
    if alarm.get("Metrics"):
        metrics = []
        for query in alarm["Metrics"]:
            item: dict[str, Any] = {"id": query["Id"], "returnData": query.get("ReturnData", True)}
            if "Expression" in query:
                item["expression"] = query["Expression"]
            if "MetricStat" in query:
                stat = query["MetricStat"]
                item["metricStat"] = {
                    "metric": {
                        "namespace": stat["Metric"]["Namespace"],
                        "name": stat["Metric"]["MetricName"],
                        "dimensions": {d["Name"]: d["Value"] for d in stat["Metric"].get("Dimensions", [])},
                    },
                    "period": stat["Period"],
                    "stat": stat["Stat"],
                }
            metrics.append(item)
    else:
        metrics = [
            {
                "id": "m1",
                "metricStat": {
                    "metric": {
                        "namespace": alarm.get("Namespace"),
                        "name": alarm.get("MetricName"),
                        "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                    },
                    "period": alarm.get("Period"),
                    "stat": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
                },
                "returnData": True,
            }
        ]
    return {"description": alarm.get("AlarmDescription", ""), "metrics": metrics}


def _cw_time(value: datetime) -> str:
    """CloudWatch's timestamp format in alarm events: 2026-11-20T09:14:31.104+0000."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Any:
    """Set these variables for a handler and put each back after, key by key. (mock.patch.dict
    restores by clearing os.environ and filling it again: another thread could read an empty
    environment in between.) Changing keys while another thread iterates os.environ (botocore
    does, to find proxies, whenever it creates a client) still breaks that thread: handlers run
    under the emulator's lock, and so must the emulator's own client calls made while executions
    run (executions(), history(), the idle hooks)."""
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


def _json_or_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _now() -> str:
    return _virtual_now().isoformat()


def _virtual_now() -> datetime:
    from core import clock

    return clock.utc_now()
