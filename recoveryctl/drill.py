"""Drills: build a sample workload in the emulator, inject a scenario's fault, let the stack
detect and recover it, and report what happened."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from recoveryctl.emulator import workload as workloads
from recoveryctl.emulator.runtime import Emulator
from recoveryctl.emulator.template import TemplateError
from recoveryctl.scenario import Scenario

METADATA_KEY = "ImpairmentRecovery"


class DrillError(RuntimeError):
    """The drill could not run (not: the recovery failed, which is a drill result)."""


class Drill:
    """A scenario run against the synthesized stack in the emulator. Use as a context manager;
    `emulator` stays inspectable until the block ends."""

    def __init__(self, scenario: Scenario, template_path: Path) -> None:
        self.scenario = scenario
        self.template_path = template_path
        self.emulator: Emulator | None = None
        self.workload: dict[str, Any] = {}
        self._managed_tag = ("recovery:managed", "true")

    def __enter__(self) -> Drill:
        self.emulator = Emulator(self.template_path).__enter__()
        try:
            self._build()
        except Exception:
            self.emulator.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.emulator is not None:
            self.emulator.__exit__(*exc)

    def _build(self) -> None:
        emulator = self.emulator
        assert emulator is not None
        declared = emulator.template.metadata.get(METADATA_KEY, {}).get("workloads", [])
        if not declared:
            raise DrillError("the synthesized stack protects no workload: add one under recovery.workloads in cdk.json")
        wanted = self.scenario.workload
        matches = [w for w in declared if wanted in (None, w["name"])]
        if not matches:
            names = ", ".join(w["name"] for w in declared)
            raise DrillError(f"scenario {self.scenario.name} targets workload {wanted!r}; the stack protects: {names}")
        self.workload = matches[0]
        if self.scenario.dry_run:
            for function in emulator.functions.values():
                function.environment["DRY_RUN"] = "true"
        env = next(iter(emulator.functions.values())).environment
        self._managed_tag = (env.get("MANAGED_TAG_KEY", "recovery:managed"), env.get("MANAGED_TAG_VALUE", "true"))
        shape = workloads.WorkloadShape(
            self.scenario.group.min_size, self.scenario.group.max_size, self.scenario.group.desired
        )
        workloads.build(emulator, self.workload, shape, self._managed_tag)

    def run(self) -> dict[str, Any]:
        """Inject the faults, fire the signals, let everything settle; return the report."""
        emulator = self.emulator
        assert emulator is not None
        group = self.workload["auto_scaling_group"]
        before = workloads.group_state(emulator, group)
        impaired: list[str] = []
        for fault in self.scenario.instance_faults:
            victims = [i for i in before["in_service"] if i not in impaired][: fault.count]
            if fault.kind == "stop":
                emulator.client("ec2").stop_instances(InstanceIds=victims)
            impaired.extend(victims)
        for api_fault in self.scenario.api_faults:
            emulator.inject_fault(
                api_fault.service,
                api_fault.operation,
                api_fault.error_code,
                api_fault.message,
                api_fault.status,
                api_fault.times,
            )
        signals = []
        for signal in self.scenario.signals:
            alarm = signal.alarm.replace("{workload}", self.workload["name"])
            try:
                event = emulator.set_alarm_state(alarm, signal.state, deliveries=signal.deliveries)
            except TemplateError as exc:
                raise DrillError(f"scenario {self.scenario.name}: {exc}") from exc
            signals.append(
                {
                    "alarm": alarm,
                    "state": signal.state,
                    "deliveries": signal.deliveries,
                    "time": event["detail"]["state"]["timestamp"],
                }
            )
        emulator.pump()
        after = workloads.group_state(emulator, group)
        return self._report(signals, impaired, before, after)

    # --- the report ---
    def _report(
        self, signals: list[dict[str, Any]], impaired: list[str], before: dict[str, Any], after: dict[str, Any]
    ) -> dict[str, Any]:
        from core.store import RecoveryStore

        emulator = self.emulator
        assert emulator is not None
        store = RecoveryStore(emulator.outputs["RecoveryTableName"])
        executions = sorted(emulator.executions(), key=lambda e: e["startDate"])
        execution: dict[str, Any] = {}
        states: list[str] = []
        transitions = 0
        for index, item in enumerate(executions):
            entered = [e for e in emulator.history(item["executionArn"]) if e["type"].endswith("StateEntered")]
            transitions += len(entered)
            if index == 0:
                states = [e["stateEnteredEventDetails"]["name"] for e in entered]
                execution = {
                    "name": item["name"],
                    "arn": item["executionArn"],
                    "status": item["status"],
                    "states": states,
                }
        record = store.get_impairment(execution["name"]) if execution else None
        actions = []
        if record:
            records = sorted(store.list_actions(record["impairment_id"]), key=lambda a: a.get("started_at", ""))
            for action in records:
                result = action.get("result") or {}
                actions.append(
                    {
                        "type": action.get("action"),
                        "phase": action.get("phase"),
                        "target": ", ".join(result.get("targets") or _targets(action.get("before"))),
                        "result": result.get("result") or action.get("status"),
                        "message": result.get("message") or action.get("error", ""),
                    }
                )
        outcome = (record or {}).get("outcome") or _outcome_from(execution)
        detected = [
            i
            for i in emulator.invocations
            if i.ok and isinstance(i.result, dict) and i.result.get("detail_type") == "Impairment Detected"
        ]
        escalations = emulator.escalations()
        report = {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "outcome": outcome,
            "reason": (record or {}).get("reason") or ("no impairment was detected" if not detected else None),
            "impairment_id": (record or {}).get("impairment_id"),
            "impairment_type": (record or {}).get("impairment_type"),
            "severity": (record or {}).get("severity"),
            "plan": (record or {}).get("plan"),
            "mttd_seconds": _round((record or {}).get("mttd_seconds")),
            "mttr_seconds": _round((record or {}).get("mttr_seconds")),
            "execution": execution,
            "actions": actions,
            "executions_started": len(executions),
            "transitions": transitions,
            "signals": signals,
            "detections": len(detected),
            "escalations": [e.get("summary", e) if isinstance(e, dict) else e for e in escalations],
            "workload": {
                "name": self.workload["name"],
                "group": self.workload["auto_scaling_group"],
                "impaired_instances": impaired,
                "before": before,
                "after": after,
            },
            "virtual_wait_seconds": emulator.virtual_seconds,
            "lambda_errors": [f"{i.function}: {i.error}" for i in emulator.invocations if not i.ok],
            "dead_letters": _dead_letters(emulator),
        }
        expect = self.scenario.expect
        report["expectation_met"] = (expect.outcome in (None, outcome)) and (
            expect.executions_started in (None, len(executions))
        )
        return report


def _targets(before: Any) -> list[str]:
    if isinstance(before, dict):
        if "instances" in before:
            return sorted(before["instances"])
        if "group" in before:
            return [before["group"]]
    return []


def _outcome_from(execution: dict[str, Any]) -> str:
    states = execution.get("states") or []
    if "Recovered" in states:
        return "recovered"
    if "Escalated" in states:
        return "escalated"
    return "skipped"


def _round(value: Any) -> float | None:
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def _dead_letters(emulator: Emulator) -> int:
    sqs = emulator.client("sqs")
    count = 0
    for url in sqs.list_queues().get("QueueUrls", []):
        if "DeadLetter" in url:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            count += int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    return count


def run(scenario: Scenario, template_path: Path) -> dict[str, Any]:
    with Drill(scenario, template_path) as drill:
        return drill.run()


def format_timeline(report: dict[str, Any]) -> str:
    """The drill as a person reads it: signal -> detected -> execution -> states -> outcome."""
    lines = [f"Drill {report['scenario']}: {report['description']}", ""]
    wl = report["workload"]
    before = wl["before"]
    lines.append(
        f"  workload   {wl['name']}: group {wl['group']} with {len(before['in_service'])} instances in service"
        f" (min {before['min_size']}, max {before['max_size']}, desired {before['desired_capacity']})"
    )
    if wl["impaired_instances"]:
        lines.append(f"  fault      impaired {', '.join(wl['impaired_instances'])}")
    lines.append("")
    for signal in report["signals"]:
        times = f" (delivered {signal['deliveries']} times)" if signal["deliveries"] > 1 else ""
        lines.append(f"  +0.0 s     signal     alarm {signal['alarm']} -> {signal['state']}{times}")
    mttd = report["mttd_seconds"]
    if report["impairment_id"]:
        lines.append(
            f"  +{mttd:.1f} s     detected   {report['impairment_id']}: {report['impairment_type']}, "
            f"severity {report['severity']}  (MTTD {mttd:.1f} s)"
        )
    else:
        lines.append(f"             detected   nothing ({report['reason']})")
    execution = report["execution"]
    if execution:
        lines.append(
            f"             execution  {execution['name']} started "
            f"({report['executions_started']} execution(s) for {report['detections']} detection(s))"
        )
        for state in execution["states"]:
            note = ""
            if state == "SelectPlan" and report["plan"]:
                note = f"  plan {report['plan']}"
            lines.append(f"               state    {state}{note}")
    for action in report["actions"]:
        lines.append(
            f"             {action['phase']:<9}  {action['type']} on {action['target'] or '-'}: "
            f"{action['result']}  {action['message']}".rstrip()
        )
    lines.append("")
    mttr = report["mttr_seconds"]
    total = f"+{(mttd or 0) + (mttr or 0):.1f} s".ljust(11) if mttr is not None else " " * 11
    verdict = {
        "recovered": "recovered, verified healthy",
        "escalated": "escalated to a human",
        "skipped": "skipped",
        "rolled_back": "rolled back",
        "dry_run": "dry run: nothing was changed",
    }.get(report["outcome"], report["outcome"])
    lines.append(f"  {total}outcome    {verdict}" + (f" (MTTR {mttr:.1f} s)" if mttr is not None else ""))
    if report["reason"] and report["outcome"] != "recovered":
        lines.append(f"             reason     {report['reason']}")
    for message in report["escalations"]:
        lines.append(f"             paged      {message}")
    after = wl["after"]
    lines.append(
        f"             group now  {len(after['in_service'])} in service, desired {after['desired_capacity']}"
        f" ({', '.join(after['in_service'])})"
    )
    lines.append(
        f"             cost       {report['transitions']} state transitions; "
        f"{report['virtual_wait_seconds']:.0f} s of waits fast-forwarded"
    )
    if report["lambda_errors"]:
        lines.append(f"             errors     {len(report['lambda_errors'])} function error(s) (retried or caught):")
        lines.extend(f"                          {e[:160]}" for e in report["lambda_errors"])
    if execution:
        lines.append("")
        lines.append(f"  In AWS, this is the Step Functions execution named {execution['name']} (the impairment id).")
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    with contextlib.suppress(TypeError):
        return dict(value)
    return str(value)
