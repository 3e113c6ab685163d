"""Every Lambda handler of the stack, discovered from the code, and for each one the real events
its property tests start from and what it may do with them.

A handler module is found by its file (functions/detectors/*.py and functions/orchestration/*.py
defining `handler`) and an action's two entry points by the registry (actions/registry.py), so a
new handler shows up here by itself: the property tests then fail until it has seeds below.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.contract import CLEARED, ImpairmentCleared, ImpairmentType, Severity
from tests.builders import (
    ALARM_ARN,
    SIGNAL_TIME,
    TABLE_NAME,
    action_event,
    bus_event,
    impairment,
    scheduled_event,
)
from tests.conftest import EVENTS, load_event

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def discovered() -> list[str]:
    """The handler of every Lambda function the code defines, as "module.attribute"."""
    from actions.registry import ACTIONS

    found = []
    for package in ("detectors", "orchestration", "readiness"):
        for path in sorted((FUNCTIONS / package).glob("*.py")):
            module = importlib.import_module(f"{package}.{path.stem}")
            if callable(getattr(module, "handler", None)):
                found.append(f"{package}.{path.stem}.handler")
    for name in sorted(ACTIONS):
        module = importlib.import_module(f"actions.{name}")
        found.extend(
            f"actions.{name}.{phase}_handler" for phase in ("apply", "rollback") if hasattr(module, f"{phase}_handler")
        )
    return found


def resolve(handler: str) -> Callable[..., Any]:
    module, _, attribute = handler.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def sample_events(prefix: str) -> list[dict[str, Any]]:
    """The real sample events whose file name starts with `prefix` (tests/events)."""
    names = sorted(p.name for p in EVENTS.glob(f"{prefix}*.json"))
    return [load_event(name) for name in names]


def _replace(value: Any, old: str, new: str) -> Any:
    """A copy of a JSON document with every occurrence of `old` in its strings replaced."""
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return value.replace(old, new) if isinstance(value, str) else value


def _about_instance(events: list[dict[str, Any]], instance_id: str) -> list[dict[str, Any]]:
    """The events, and copies of those naming an instance rewritten to name `instance_id` (a
    member of the moto workload), so that the detector finds something to publish."""
    import re

    out = list(events)
    for event in events:
        text = repr(event)
        for found in sorted(set(re.findall(r"i-[0-9a-f]{8,17}", text))):
            out.append(_replace(copy.deepcopy(event), found, instance_id))
    return out


# --- the workflow's state, as the state machine passes it to each task --------------------------


def _plan(action: str = "replace_instance", params: dict[str, Any] | None = None, dry_run: bool = False) -> dict:
    return {
        "name": "replace-failed-instance",
        "steps": [{"index": 0, "action": action, "params": params or {}}],
        "verify": {"wait_seconds": 30, "max_attempts": 3},
        "timeout_seconds": 900,
        "dry_run": dry_run,
    }


def _storm_states(env: Any) -> list[dict[str, Any]]:
    """SummarizeStorm's input: Escalate's storm (here one the table does not hold)."""
    detected = env.workload.impairment_of(env.workload.instance_ids()[0]).model_dump(mode="json")
    storm = {
        "leader": True,
        "key": f"{detected['workload']}#ActionFailed",
        "storm_id": f"20261120T091400Z-{detected['impairment_id']}",
        "leader_impairment_id": detected["impairment_id"],
        "summary_at": "2026-11-20T09:19:00Z",
    }
    return [{"impairment": detected, "storm": storm}]


def _workflow_states(env: Any) -> list[dict[str, Any]]:
    """States of a recovery of the moto workload's first instance, at each point of the flow."""
    workload = env.workload
    instance = workload.instance_ids()[0]
    detected = workload.impairment_of(instance).model_dump(mode="json")
    lock_keys = [f"ec2:instance/{instance}"]
    applied = {
        "action": "replace_instance",
        "phase": "apply",
        "step_index": 0,
        "result": "changed",
        "targets": [instance],
        "before": {"group": workload.group_name, "instances": [instance]},
        "after": {},
    }
    scaled = {
        "action": "scale_out",
        "phase": "apply",
        "step_index": 0,
        "result": "changed",
        "targets": [workload.group_name],
        "before": {"group": workload.group_name, "desired_capacity": 3, "max_size": 6, "min_size": 2},
        "after": {"group": workload.group_name, "desired_capacity": 4},
    }
    base = {"impairment": detected, "execution": "arn:aws:states:us-east-1:123456789012:execution:recovery:x"}
    admitted = {**base, "admission": {"admitted_at": SIGNAL_TIME.isoformat(), "lock_keys": lock_keys}}
    return [
        base,
        {**admitted, "plan": _plan()},
        {**admitted, "plan": _plan(), "actions": [applied], "verification": {"healthy": False, "attempt": 1}},
        {**admitted, "plan": _plan(dry_run=True), "actions": [applied]},
        {**admitted, "plan": _plan("scale_out", {"increment": 1, "return_after_seconds": 60}), "actions": [scaled]},
        {
            **admitted,
            "plan": _plan(),
            "error": {"Error": "PermanentError", "Cause": '{"errorMessage": "AccessDenied"}'},
            "rollbacks": [{"action": "replace_instance", "result": "unchanged"}],
        },
        {**admitted, "plan": _plan(), "rollback_error": {"Error": "States.TaskFailed", "Cause": "boom"}},
        {**base, "error": {"Error": "RecoveryPaused", "Cause": "paused"}},
    ]


def _admit_states(env: Any) -> list[dict[str, Any]]:
    """What the workflow gives Admit: the impairment, the execution's input (the impairments it
    supersedes, when StartRecovery names some) and the execution's id; and the later states."""
    states = _workflow_states(env)
    base = states[0]
    given = {"impairment": base["impairment"]}
    superseding = {**given, "supersedes": ["web-api-20261120T091400Z-0123456789abcdef"]}
    return [{**base, "input": given}, {**base, "input": superseding}, *states]


def _bus_events(env: Any) -> list[dict[str, Any]]:
    workload = env.workload
    detected = workload.impairment_of(workload.instance_ids()[0])
    cleared = ImpairmentCleared(
        impairment_id=detected.impairment_id,
        workload=detected.workload,
        signal=detected.signal,
        cleared_at=SIGNAL_TIME.replace(minute=30),
    )
    other = impairment(
        impairment_type=ImpairmentType.SERVICE_DEGRADATION,
        severity=Severity.MEDIUM,
        resources=[("autoscaling:group", workload.group_name)],
        signal_id=ALARM_ARN + "-2",
    )
    return [
        bus_event(detected.model_dump(mode="json")),
        bus_event(other.model_dump(mode="json")),
        bus_event(cleared.model_dump(mode="json"), detail_type=CLEARED),
    ]


def _execution_status_changes(env: Any) -> list[dict[str, Any]]:
    """Step Functions' Execution Status Change events for recoveries of the moto workload: one
    that died with a step applied (a record recovering, its plan, a step started), one that
    escalated, and states it ignores."""
    from core.store import RecoveryStore

    workload = env.workload
    store = RecoveryStore(TABLE_NAME)
    died = workload.impairment_of(workload.instance_ids()[0])
    escalated = workload.impairment_of(workload.instance_ids()[1])
    store.put_impairment(
        died.model_dump(mode="json"),
        status="recovering",
        plan_state=_plan(),
        lock_keys=[died.affected_resources[0].key],
    )
    store.put_action(died.impairment_id, 0, "apply", {"status": "started", "before": {"group": workload.group_name}})
    store.put_impairment(
        escalated.model_dump(mode="json"), status="escalated", outcome="escalated", page_status="failed"
    )
    machine = env.state_machine_arn

    def change(name: str, status: str) -> dict[str, Any]:
        execution = f"{machine.replace(':stateMachine:', ':execution:')}:{name}"
        return {
            "version": "0",
            "id": "315c1398-40ff-a850-213b-158f73e60175",
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": "123456789012",
            "time": "2026-11-20T09:30:00Z",
            "region": "us-east-1",
            "resources": [execution],
            "detail": {
                "executionArn": execution,
                "stateMachineArn": machine,
                "name": name,
                "status": status,
                "startDate": 1795686871104,
                "stopDate": 1795687800000,
                "input": "{}",
                "output": None,
                "error": "States.Timeout",
                "cause": "",
            },
        }

    return [
        change(died.impairment_id, "TIMED_OUT"),
        change(died.impairment_id, "ABORTED"),
        change(escalated.impairment_id, "FAILED"),
        change("nobody", "FAILED"),
        change(died.impairment_id, "SUCCEEDED"),
    ]


# --- actions: the input the state machine gives each step -----------------------------------------

# Parameters a plan may give each action (valid ones: the mutations make them invalid).
ACTION_PARAMS: dict[str, list[dict[str, Any]]] = {
    "replace_instance": [{}, {"mode": "mark_unhealthy"}, {"outside_group": "reboot"}],
    "scale_out": [{}, {"increment": 2, "max_desired_capacity": 5}],
    "provision_warm_pool": [{}, {"count": 2}],
    "provision_standby_instances": [{"count": 1}],
    "provision_standby_group": [{"standby_group": "web-api-standby", "desired_capacity": 2}],
    "redirect_deregister_targets": [{}],
    "redirect_shift_weights": [{}],
    "redirect_zonal_shift": [{"expires_in": "30m"}],
    "failover_database": [{"db_instance_identifier": "orders-db"}],
    "failover_dns": [{}],
    "failover_routing_control": [
        {
            "primary_routing_control_arn": "arn:aws:route53-recovery-control::123456789012:controlpanel/"
            "0123456789abcdef0123456789abcdef/routingcontrol/0123456789abcdef",
            "standby_routing_control_arn": "arn:aws:route53-recovery-control::123456789012:controlpanel/"
            "0123456789abcdef0123456789abcdef/routingcontrol/fedcba9876543210",
            "cluster_endpoints": [{"endpoint": "https://host-aaaaaa.us-east-1.example.com/v1", "region": "us-east-1"}],
        }
    ],
    "restart_ecs_service": [{"cluster": "checkout", "service": "checkout-api"}],
    "restart_systemd_unit": [{"unit": "app.service"}],
    "scale_ecs_service": [{"cluster": "checkout", "service": "checkout-api"}, {"increment": 2, "keep": True}],
    "invoke_function": [{"function_name": "drain-cache", "rollback_function": "refill-cache"}],
    "ssm_automation": [{"document_name": "AWS-RestartEC2Instance", "target_parameter": "InstanceId"}],
    "failover_global_database": [
        {
            "global_cluster_identifier": "web-api-global",
            "target_db_cluster_arn": "arn:aws:rds:us-west-2:123456789012:cluster:web-api-standby-db",
        },
        {"allow_data_loss": True},
    ],
    "promote_read_replica": [{"db_instance_identifier": "orders-replica"}, {}],
    "provision_standby_ecs_service": [{"cluster": "checkout", "service": "checkout-api", "desired_count": 2}],
    "replace_eks_node": [{"cluster": "shop", "nodegroup": "workers"}, {"nodes": ["ip-10-0-0-1.ec2.internal"]}],
    "scale_eks_nodegroup": [{"cluster": "shop", "nodegroup": "workers"}, {"increment": 2, "keep": True}],
}


def _action_events(env: Any, action: str, phase: str) -> list[dict[str, Any]]:
    workload = env.workload
    instance = workload.instance_ids()[0]
    impaired = workload.impairment_of(instance)
    events = []
    for index, params in enumerate(ACTION_PARAMS[action]):
        event = action_event(impaired, action, index=index, params=params)
        if phase == "rollback":
            event["applied"] = {
                "action": action,
                "phase": "apply",
                "step_index": index,
                "result": "changed",
                "targets": [instance],
                "before": {"group": workload.group_name, "desired_capacity": 3, "instances": [instance]},
                "after": {"group": workload.group_name, "desired_capacity": 4},
            }
        events.append(event)
        events.append({**copy.deepcopy(event), "dry_run": True})
    return events


def _region_probe_events(env: Any) -> list[dict[str, Any]]:
    """Schedule ticks, with the moto workload's group probed from a standby region: the runtime
    configuration the test set up gains the probes a standby stack would ship."""
    import json
    import os

    from core import runtime_config

    path = Path(os.environ[runtime_config.ENV])
    shipped = json.loads(path.read_text())
    standby = {"region": "us-west-2", "auto_scaling_group": "web-api-standby", "desired_capacity": 2}
    shipped["probes"] = [
        {
            "workload": "web-api",
            "region": "us-east-1",
            "auto_scaling_group": env.workload.group_name,
            "failures_to_impair": 1,
            "standby": standby,
        },
        {
            "workload": "missing",
            "region": "eu-west-1",
            "auto_scaling_group": "missing-asg",
            "failures_to_impair": 1,
            "standby": standby,
        },
    ]
    path.write_text(json.dumps(shipped))
    return [*sample_events("scheduled-event"), scheduled_event()]


# Handlers a stack has only with some configuration: they are in the template of cdk.json's
# single-region deployment only when that configuration is there.
CONFIGURED_ONLY = {
    "detectors.region_probe.handler": "a standby region's stack, for the workloads it stands by for",
    "detectors.eks.handler": "a stack with a workload that declares an EKS node group",
}


@dataclass(frozen=True)
class Case:
    """How to feed one handler: its seed events, and the outputs it may produce on its own."""

    seeds: Callable[[Any], list[dict[str, Any]]]
    # Calls that are the handler's own output, beyond reads and audit-trail writes.
    outputs: frozenset[tuple[str, str]] = frozenset()
    # Whether the handler changes AWS resources (only after recording their state before).
    acts: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


PUBLISHES = frozenset({("eventbridge", "PutEvents")})

CASES: dict[str, Case] = {
    "detectors.alarm.handler": Case(
        lambda env: sample_events("cloudwatch-alarm") + sample_events("composite-alarm"), PUBLISHES
    ),
    "detectors.ec2_state.handler": Case(
        lambda env: _about_instance(sample_events("ec2-instance-state-change"), env.workload.instance_ids()[0]),
        PUBLISHES,
    ),
    "detectors.ecs.handler": Case(lambda env: sample_events("ecs-task"), PUBLISHES),
    "detectors.health.handler": Case(
        lambda env: _about_instance(sample_events("health-event"), env.workload.instance_ids()[0]), PUBLISHES
    ),
    "detectors.rds.handler": Case(lambda env: sample_events("rds-"), PUBLISHES),
    "detectors.spot.handler": Case(
        lambda env: _about_instance(
            sample_events("ec2-spot-instance") + sample_events("ec2-instance-rebalance"), env.workload.instance_ids()[0]
        ),
        PUBLISHES,
    ),
    "detectors.sweeps.handler": Case(lambda env: [*sample_events("scheduled-event"), scheduled_event()], PUBLISHES),
    # The readiness check reads and records its results; it publishes nothing (issue 18 item 4).
    "readiness.handler.handler": Case(lambda env: [*sample_events("scheduled-event"), scheduled_event()]),
    "detectors.region_probe.handler": Case(_region_probe_events, PUBLISHES),
    # The EKS check of the declared node groups (none in the moto workload: it reads nothing).
    "detectors.eks.handler": Case(lambda env: [*sample_events("scheduled-event"), scheduled_event()], PUBLISHES),
    "orchestration.start.handler": Case(_bus_events, frozenset({("sfn", "StartExecution")})),
    "orchestration.admit.handler": Case(_admit_states),
    "orchestration.verify.handler": Case(_workflow_states),
    "orchestration.prepare_rollback.handler": Case(_workflow_states),
    "orchestration.finalize.handler": Case(_workflow_states),
    "orchestration.return_capacity.handler": Case(_workflow_states, acts=True),
    "orchestration.escalate.handler": Case(_workflow_states, frozenset({("sns", "Publish")})),
    "orchestration.storm.handler": Case(_storm_states, frozenset({("sns", "Publish")})),
    "orchestration.check_guardrails.handler": Case(_workflow_states, frozenset({("sns", "Publish")})),
    "orchestration.request_approval.handler": Case(_workflow_states, frozenset({("sns", "Publish")})),
    "orchestration.execution_ended.handler": Case(
        _execution_status_changes, frozenset({("sns", "Publish"), ("sfn", "StartExecution")})
    ),
}


def case(handler: str) -> Case | None:
    if handler in CASES:
        return CASES[handler]
    if handler.startswith("actions."):
        _, action, attribute = handler.split(".")
        phase = attribute.removesuffix("_handler")
        if action in ACTION_PARAMS:
            return Case(lambda env: _action_events(env, action, phase), acts=True, extra={"phase": phase})
    return None
