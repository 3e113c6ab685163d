"""The moto patches the emulator runs under: what it does that moto does not (Lambda tasks run
by the in-process handlers, Step Functions on the virtual clock and the scheduler, execution
status events, Auto Scaling zone spreading and launch activities, target health), each patch
in the group of the service it fixes. behaviour.py answers the calls moto does not model."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from recoveryctl.emulator import isolation, scheduler


def install(emulator: Any) -> None:
    """Patch moto for the emulator's lifetime (undone when it exits)."""
    _step_functions_clients(emulator)
    _step_functions_history(emulator)
    _target_health(emulator)
    _auto_scaling(emulator)
    _lambda_dispatch(emulator)
    _step_functions_executor(emulator)
    _eventbridge(emulator)


def _patch(emulator: Any, target: Any, attribute: str, value: Any) -> None:
    patcher = mock.patch.object(target, attribute, value)
    patcher.start()
    emulator.on_exit(patcher.stop)


def _lambda_dispatch(emulator: Any) -> None:
    """A Step Functions Lambda task invokes the function's in-process handler."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def invoke(
        backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: dict[str, str]
    ) -> bytes | None:
        name = function_name.split(":function:")[-1].split(":")[0]
        payload = json.loads(body) if body else {}
        ok, result = emulator._owner_of(name).invoke(name, payload, source="task")
        if not ok:
            response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(result, default=str).encode()

    _patch(emulator, LambdaSimpleBackend, "invoke", invoke)


def _step_functions_executor(emulator: Any) -> None:
    """Executions wait on the virtual clock, run as fibers of the scheduler, stop at once on
    StopExecution, and announce each status change (announce_execution)."""
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp, wait_function
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    from core import clock

    def wait_interval(component: Any, env: Any, wait_seconds: int) -> None:
        # A Wait state waits on the virtual clock; StopExecution (and a time-out) interrupt it.
        if wait_seconds > 0 and env.is_running():
            env.program_state_event.wait(wait_seconds)

    def timestamp_wait_seconds(component: Any, env: Any) -> int:
        # A Wait until a timestamp counts from the virtual clock (moto reads the host's local
        # time); the timestamp is UTC ('Z'), as Step Functions requires.
        component.string.eval(env=env)
        text: str = env.stack.pop()
        until = component._from_timestamp_string(timestamp=text)
        if until is None:
            from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
                FailureEventException,
            )

            raise FailureEventException(component._create_failure_event(env, text))
        return int((until.replace(tzinfo=UTC) - clock.utc_now()).total_seconds())

    original_execution_logic = ExecutionWorker._execution_logic

    def execution_logic(worker: Any) -> None:
        # moto starts an execution's thread from the thread that called StartExecution (say,
        # a handler): the execution is not part of that invocation.
        fiber = scheduler.current_fiber()
        if fiber is not None:
            fiber.name = f"execution {worker._evaluation_details.execution_details.name}"
        with isolation.running(None):
            original_execution_logic(worker)

    original_start = Execution.start

    def start(execution: Any) -> None:
        execution.start_date = clock.utc_now()  # virtual, like every date a drill reports
        original_start(execution)
        announce_execution(emulator, execution)

    original_stop = Execution.stop

    def stop(execution: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        # StopExecution: the execution is ABORTED at once, as in AWS (a task in flight finishes
        # on its own; its result is dropped when the executor next looks at the status).
        original_stop(execution, stop_date, error, cause)
        if execution.status == "RUNNING":
            from moto.stepfunctions.parser.api import ExecutionStatus

            execution.exec_status = ExecutionStatus.ABORTED
            execution.stop_date = clock.utc_now()
            execution.error = error or None
            execution.cause = cause or None
            execution.emulator_aborted = True
            announce_execution(emulator, execution)

    original_terminated = BaseExecutionWorkerCommunication.terminated

    def terminated(communication: Any) -> None:
        execution = communication.execution
        if getattr(execution, "emulator_aborted", False):
            return  # stopped: already ABORTED and announced
        original_terminated(communication)
        execution.stop_date = clock.utc_now()
        announce_execution(emulator, execution)

    _patch(emulator, wait_function.WaitFunction, "_wait_interval", wait_interval)
    _patch(emulator, timestamp.Timestamp, "_get_wait_seconds", timestamp_wait_seconds)
    _patch(emulator, ExecutionWorker, "_execution_logic", execution_logic)
    _patch(emulator, Execution, "start", start)
    _patch(emulator, Execution, "stop", stop)
    _patch(emulator, BaseExecutionWorkerCommunication, "terminated", terminated)


def _step_functions_clients(emulator: Any) -> None:
    """Step Functions' executor makes a boto3 client per Lambda task (about 10 ms each): the
    same client serves every task of a region."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils  # noqa: F401
    from moto.stepfunctions.parser.asl.utils import boto_client as sfn_clients

    made_by = sfn_clients.boto_client_for
    cache: dict[tuple[str, str], Any] = {}

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if state_credentials is not None:
            return made_by(region, service, state_credentials)
        key = (region, service)
        if key not in cache:
            cache[key] = made_by(region, service)
        return cache[key]

    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and getattr(module, "boto_client_for", None) is made_by:
            _patch(emulator, module, "boto_client_for", boto_client_for)


def _step_functions_history(emulator: Any) -> None:
    """An execution's history is stamped on the virtual clock, as the functions' records are:
    a state's entry, exit and duration then read as a real recovery's would (a 30 s wait lasts
    30 s), in the same time as the signals and the audit trail."""
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    _patch(emulator, EventManager, "_get_current_timestamp", staticmethod(virtual_now))


def _eventbridge(emulator: Any) -> None:
    """An event put on a bus of one of the emulator's stacks is routed by that stack's rules."""
    from moto.events.models import EventsBackend

    original_put_events = EventsBackend.put_events

    def put_events(backend: Any, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = original_put_events(backend, entries)
        target = emulator.stack(backend.account_id, backend.region_name)
        for entry, result in zip(entries, results, strict=False):
            if result.get("EventId") and target is not None:  # no stack of ours in that region
                target._accept(entry, result["EventId"], backend)
        return results

    _patch(emulator, EventsBackend, "put_events", put_events)


def _auto_scaling(emulator: Any) -> None:
    """A group registers only its running instances with its target groups, spreads its
    launches across its zones, and fails a launch in a zone without capacity."""
    from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup

    def update_attached_target_groups(backend: Any, group_name: str) -> None:
        # moto re-registers every instance and so fails on a stopped (impaired) one.
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
        # moto launches every instance into the first subnet, so a zone outage would take the
        # whole group; a zone that has no capacity fails the launch there
        # (InsufficientInstanceCapacity): the group tries its other zones, as Auto Scaling does.
        subnets = group.vpc_zone_identifier.split(",") if group.vpc_zone_identifier else []
        if not subnets:
            return original_launch(group, count_needed, propagated_tags)
        ec2 = group.autoscaling_backend.ec2_backend
        zone_of = {s: ec2.get_subnet(s).availability_zone for s in subnets}
        saved = group.vpc_zone_identifier
        try:
            for _ in range(count_needed):
                load = {s: sum(1 for st in group.instance_states if st.instance.subnet_id == s) for s in subnets}
                for subnet in sorted(subnets, key=lambda s: (load[s], subnets.index(s))):
                    zone = zone_of[subnet]
                    if emulator.zone_faults.get(zone) == "insufficient_capacity":
                        _launch_activity(emulator, group, subnet, zone, None)
                        continue
                    known = {st.instance.id for st in group.instance_states}
                    group.vpc_zone_identifier = subnet
                    original_launch(group, 1, dict(propagated_tags))
                    launched = [st.instance.id for st in group.instance_states if st.instance.id not in known]
                    for instance_id in launched:
                        _launch_activity(emulator, group, subnet, zone, instance_id)
                    if emulator.zone_faults.get(zone) == "unhealthy":
                        emulator.failing_health_checks.update(launched)
                    break
                else:
                    return None  # no zone has capacity: the group stays short, as in AWS
        finally:
            group.vpc_zone_identifier = saved
        return None

    _patch(emulator, FakeAutoScalingGroup, "replace_autoscaling_group_instances", balanced_launch)
    _patch(emulator, AutoScalingBackend, "update_attached_target_groups", update_attached_target_groups)


def _target_health(emulator: Any) -> None:
    """A terminated instance drains; a running one whose application fails the load balancer's
    health check (failing_health_checks, failing_target_groups) is unhealthy."""
    from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

    original_health = FakeTargetGroup.health_for

    def health_for(target_group: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
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

    _patch(emulator, FakeTargetGroup, "health_for", health_for)


def _launch_activity(emulator: Any, group: Any, subnet: str, zone: str, instance_id: str | None) -> None:
    """Record an Auto Scaling launch as DescribeScalingActivities reports it (moto keeps
    none): successful, or failed for lack of capacity in the zone."""
    from core import clock

    now = clock.utc_now()
    instance_type = getattr(group, "instance_type", None) or "the requested instance type"
    desired = group.desired_capacity
    activity: dict[str, Any] = {
        "ActivityId": emulator.new_id(),
        "AutoScalingGroupName": group.name,
        "Cause": f"At {now.strftime('%Y-%m-%dT%H:%M:%SZ')} an instance was started in response to a "
        f"difference between desired and actual capacity, increasing the capacity to {desired}.",
        "StartTime": now,
        "EndTime": now,
        "Progress": 100,
        "Details": json.dumps({"Subnet ID": subnet, "Availability Zone": zone}),
    }
    if instance_id is None:
        message = (
            f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you "
            f"requested ({zone}). Our system will be working on provisioning additional capacity. "
            "Launching EC2 instance failed."
        )
        activity.update(
            Description=f"Launching a new EC2 instance.  Status Reason: {message}",
            StatusCode="Failed",
            StatusMessage=message,
        )
    else:
        activity.update(Description=f"Launching a new EC2 instance: {instance_id}", StatusCode="Successful")
    backend = group.autoscaling_backend
    key = (backend.account_id, backend.region_name, group.name)
    emulator.scaling_activities.setdefault(key, []).insert(0, activity)


def announce_execution(emulator: Any, execution: Any) -> None:
    """Put "Step Functions Execution Status Change" on the default bus of the execution's
    account and region, in the shape AWS documents (dates in epoch milliseconds)."""
    from core import clock

    status = execution.status
    output = None
    if status == "SUCCEEDED" and execution.output is not None:
        output = json.dumps(execution.output, separators=(",", ":"))
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": status,
        "startDate": _millis(execution.start_date),
        "stopDate": None if status == "RUNNING" else _millis(execution.stop_date),
        "input": execution.execution_input,
        "inputDetails": {"included": True},
        "output": output,
        "outputDetails": {"included": True} if output is not None else None,
        "error": execution.error,
        "cause": execution.cause,
    }
    event = {
        "version": "0",
        "id": emulator.new_id(),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": execution.account_id,
        "time": clock.utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": execution.region_name,
        "resources": [execution.exec_arn],
        "detail": detail,
    }
    stack = emulator.stack(execution.account_id, execution.region_name)
    if stack is not None:
        stack.put_event(event)
    for listener in list(emulator.execution_listeners):
        listener(event)


def virtual_now() -> datetime:
    from core import clock

    return clock.utc_now()


def _millis(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)
