"""Drills: build a sample workload in the emulator, inject a scenario's fault, let the stack
detect and recover it, and report what happened."""

from __future__ import annotations

import contextlib
import functools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recoveryctl import expect
from recoveryctl.emulator import workload as workloads
from recoveryctl.emulator.runtime import DEFAULT_WORKERS, Emulator
from recoveryctl.emulator.template import TemplateError
from recoveryctl.scenario import Scenario
from recoveryctl.state import scan_table

METADATA_KEY = "ImpairmentRecovery"


class DrillError(RuntimeError):
    """The drill could not run (not: the recovery failed, which is a drill result)."""


class Drill:
    """A scenario run against the synthesized stack in the emulator. Use as a context manager;
    `emulator` stays inspectable until the block ends."""

    def __init__(
        self,
        scenario: Scenario,
        template_path: Path | None,
        cache_dir: Path | None = None,
        seed: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.template_path = template_path
        # The interleaving's seed and the Lambda concurrency: these, else the scenario's, else
        # a random seed (the report says which) and the emulator's default workers.
        self.seed = seed if seed is not None else scenario.seed
        self.workers = workers or scenario.workers or DEFAULT_WORKERS
        # Where a scenario's own deployment is synthesized (default: .recoveryctl/synth).
        self.cache_dir = cache_dir
        self.emulator: Emulator | None = None
        # The emulator of the workload's region (the emulator itself unless the drill runs several).
        self.home: Emulator | None = None
        self.workload: dict[str, Any] = {}
        self._managed_tag = ("recovery:managed", "true")
        self._answered: set[str] = set()  # executions whose approval was answered (or scheduled)
        # Each group's instances at the start (an instance fault's index), by InstanceFault.group.
        self._originals: dict[str, list[str]] = {}
        self.second_group: str | None = None  # the second group sharing the target group, if built
        self.actions_done: list[dict[str, Any]] = []
        self.started_at: datetime | None = None  # the timeline's zero, on the virtual clock

    def __enter__(self) -> Drill:
        self.emulator = self._start_emulator().__enter__()
        try:
            self._build()
        except Exception:
            self.emulator.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.emulator is not None:
            self.emulator.__exit__(*exc)

    def _start_emulator(self) -> Emulator:
        """The emulator of cdk.out's stack, or of the scenario's own deployment: one stack per
        region, the primary's first."""
        deployment = self.scenario.deployment
        if deployment is None:
            if self.template_path is None:
                raise DrillError("no synthesized stack to drill: run `make synth` first")
            return Emulator(self.template_path, seed=self.seed, workers=self.workers)
        from recoveryctl import regional
        from recoveryctl.state import LocalState

        cache = self.cache_dir or LocalState().directory / "synth"
        try:
            stacks = regional.synthesize(deployment.model_dump(exclude_none=True), cache)
        except regional.DeploymentError as exc:
            raise DrillError(f"scenario {self.scenario.name}: {exc}") from exc
        (primary, template), *others = stacks.regions.items()
        return Emulator(
            template, region=primary, peers=dict(others), members=stacks.members, seed=self.seed, workers=self.workers
        )

    def _emulators(self) -> list[Emulator]:
        """Every region's emulator, the primary first."""
        assert self.emulator is not None
        return self.emulator.every_region()

    def _region(self, name: str | None) -> Emulator:
        """A region's emulator by name, or "primary" / "standby" (the workload's standby region);
        None: the workload's own region."""
        emulator = self.emulator
        assert emulator is not None
        if name is None:
            assert self.home is not None
            return self.home
        if name == "primary":
            return emulator
        if name == "standby":
            standby = (self.workload.get("standby") or {}).get("region")
            if not standby:
                raise DrillError(f"scenario {self.scenario.name}: workload {self.workload['name']} has no standby")
            name = standby
        try:
            return emulator.peer(name)
        except TemplateError as exc:
            raise DrillError(f"scenario {self.scenario.name}: {exc}") from exc

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
        self.home = self._region(self.workload.get("region") or "primary")
        if self.scenario.member_account:
            self._as_member(self.scenario.member_account)
        if self.scenario.dry_run:
            for region in self._emulators():
                for function in region.functions.values():
                    function.environment["DRY_RUN"] = "true"
        if self.scenario.plans is not None:
            from actions.plans import PlanError, parse_plans

            try:
                plans = parse_plans(self.scenario.plans)
            except PlanError as exc:
                raise DrillError(f"scenario {self.scenario.name}: {exc}") from exc
            for region in self._emulators():
                region.write_runtime_config(plans=[p.model_dump(mode="json") for p in plans])
        if self.scenario.guardrails is not None:
            from core.errors import InvalidInput

            try:
                for region in self._emulators():
                    region.write_runtime_config(guardrails=self.scenario.guardrails)
            except InvalidInput as exc:
                raise DrillError(f"scenario {self.scenario.name}: guardrails: {exc}") from exc
        env = next(iter(emulator.functions.values())).environment
        self._managed_tag = (env.get("MANAGED_TAG_KEY", "recovery:managed"), env.get("MANAGED_TAG_VALUE", "true"))
        shape = workloads.WorkloadShape(
            self.scenario.group.min_size, self.scenario.group.max_size, self.scenario.group.desired
        )
        second = self.scenario.second_group
        shares = self.workload.get("auto_scaling_group") and self.workload.get("target_group_arn")
        if second is not None and not shares:
            raise DrillError(
                f"scenario {self.scenario.name}: second_group shares the workload's target group: workload "
                f"{self.workload['name']} needs an auto_scaling_group and a target_group_arn"
            )
        built = workloads.build(
            self.home,
            self.workload,
            shape,
            self._managed_tag,
            second=workloads.WorkloadShape(second.min_size, second.max_size, second.desired) if second else None,
        )
        self.second_group = (built.get("second_group") or {}).get("group")
        # Route 53 checks the endpoints: the emulator answers their health checks from the target groups
        checks = (built.get("dns") or {}).get("health_checks") or {}
        if checks.get("primary") and self.workload.get("target_group_arn"):
            emulator.health_check_targets[checks["primary"]] = (self.home.region, self.workload["target_group_arn"])
        for control in self.scenario.routing_controls:  # the ARC cluster's (a global service, in memory)
            emulator.routing_controls.add(control.arn, control.state, control.name)
        for rule in self.scenario.safety_rules:
            emulator.routing_controls.assertions[rule.arn] = (rule.routing_controls, rule.at_least)
        standby = self.workload.get("standby")
        if standby:
            workloads.build_standby(self._region(standby["region"]), self.workload, standby, self._managed_tag)
            if checks.get("secondary") and standby.get("target_group_arn"):
                emulator.health_check_targets[checks["secondary"]] = (standby["region"], standby["target_group_arn"])

    def _as_member(self, account: str) -> None:
        """The workload lives in a member account: the functions know it as a member (as the
        central stack does when `accounts` is configured: MEMBER_ACCOUNTS, MEMBER_ROLE_NAME) and
        reach it through the member role; the workload is built there."""
        from core import aws as core_aws

        emulator = self.emulator
        assert emulator is not None
        if account == emulator.account:
            raise DrillError(f"scenario {self.scenario.name}: member_account is the central account {account}")
        for function in (f for region in self._emulators() for f in region.functions.values()):
            members = set(json.loads(function.environment.get(core_aws.MEMBER_ACCOUNTS_ENV) or "[]"))
            function.environment[core_aws.MEMBER_ACCOUNTS_ENV] = json.dumps(sorted(members | {account}))
            function.environment.setdefault(core_aws.MEMBER_ROLE_NAME_ENV, "ImpairmentRecoveryMember")
        self.workload = {**self.workload, "account_id": account}

    def state(self) -> dict[str, Any]:
        """The AWS state of the workload's parts, as a user would look at it."""
        emulator = self.home
        assert emulator is not None
        with emulator.as_account(self.workload.get("account_id")):
            return self._state()

    def _state(self) -> dict[str, Any]:
        emulator = self.home
        assert emulator is not None
        state: dict[str, Any] = {}
        if self.workload.get("auto_scaling_group"):
            state.update(workloads.group_state(emulator, self.workload["auto_scaling_group"]))
        if self.second_group:
            state["second_group"] = {"name": self.second_group, **workloads.group_state(emulator, self.second_group)}
        if self.workload.get("ecs_service"):
            state["ecs_service"] = workloads.service_state(emulator, self.workload)
        if self.workload.get("database"):
            state["database"] = workloads.database_state(emulator, self.workload)
        if self.workload.get("dns"):
            state["dns_records"] = workloads.dns_state(emulator, self.workload)
        standby = self.workload.get("standby")
        if standby:
            region = self._region(standby["region"])
            state["standby"] = {"region": region.region, **workloads.group_state(region, standby["auto_scaling_group"])}
        state["zonal_shifts"] = [{k: str(v) for k, v in shift.items()} for shift in emulator.zonal_shifts.active()]
        if emulator.routing_controls.states:
            controls = emulator.routing_controls
            state["routing_controls"] = {controls.names[arn]: value for arn, value in sorted(controls.states.items())}
        return state

    def run(self) -> dict[str, Any]:
        """Run the scenario on the emulator's virtual clock and return the report.

        Each round starts with its instance faults; its signals are delivered at their
        `at_seconds` (one that fired before the round started, at its start, with its earlier
        time), its schedules fire at theirs, and its actions happen at theirs, all while
        recoveries run (a signal can arrive mid-recovery). The round ends when everything has
        settled; the next one starts `round_interval_seconds` later."""
        from core import clock

        emulator = self.emulator
        assert emulator is not None
        self.started_at = clock.utc_now()
        before = self.state()
        self._originals = {
            "main": list(before.get("in_service", [])),
            "second": list((before.get("second_group") or {}).get("in_service", [])),
        }
        if self.scenario.approval != "none":
            emulator.idle_hooks.append(self._answer_approvals)
        self._check_signals()
        impaired = self._inject(before, 1)
        for api_fault in self.scenario.api_faults:
            emulator.inject_fault(
                api_fault.service,
                api_fault.operation,
                api_fault.error_code,
                api_fault.message,
                api_fault.status,
                api_fault.times,
                after=api_fault.after,
                account=api_fault.account,
                region=self._region(api_fault.region).region if api_fault.region else None,
                latency_seconds=api_fault.latency_seconds,
            )
        for zone_fault in self.scenario.zone_faults:
            emulator.zone_faults[self._zone_name(zone_fault.zone, impaired)] = zone_fault.kind
        if self.scenario.paused:
            for region in self._emulators():  # a replicated switch, set in every replica
                region.store().set_paused(True, "paused for a drill", "recoveryctl")
        if self.scenario.standby_failure != "none":
            standby_group = (self.workload.get("standby") or {}).get("target_group_arn")
            if not standby_group:
                raise DrillError(f"scenario {self.scenario.name}: standby_failure needs a standby target_group_arn")
            if self.scenario.standby_failure == "at_start":
                emulator.failing_target_groups.add(standby_group)
            else:  # it buckles when the traffic arrives
                emulator.on_traffic_moved.append(lambda: emulator.failing_target_groups.add(standby_group))
        if self.scenario.region_outage:
            emulator.fail_region(
                self._region(self.scenario.region_outage).region, tuple(self.scenario.region_outage_global)
            )
        signals: list[dict[str, Any]] = []
        for round_number in range(1, self.scenario.rounds + 1):
            now_impaired = impaired
            if round_number > 1:
                # The next round: the fault comes back (on the replacement, with pick "newest").
                emulator.advance(self.scenario.round_interval_seconds)
                now_impaired = self._inject(self.state(), round_number)
                impaired.extend(i for i in now_impaired if i not in impaired)
            self._fire(signals, now_impaired or impaired, round_number)
            emulator.pump()
        report = self._report(signals, impaired, before, self.state())
        report["interleaving"] = emulator.interleaving()
        report["drill_actions"] = self.actions_done
        return report

    def _check_signals(self) -> None:
        """Refuse, before anything runs, a member's alarm without its member stack."""
        emulator = self.emulator
        assert emulator is not None
        for signal in self.scenario.signals:
            target = self._region(signal.region)
            member = self.workload.get("account_id")
            if signal.alarm is not None and member and emulator._stacks.get((member, target.region)) is None:
                raise DrillError(
                    f"scenario {self.scenario.name}: a member account's alarms live in its member stack: give "
                    "the scenario a deployment with `accounts` (the drill then deploys the member stack), or "
                    "drill it with an event signal (say an EC2 state change)"
                )
        for action in self.scenario.actions:
            if action.region:
                self._region(action.region)

    def _fire(self, signals: list[dict[str, Any]], impaired: list[str], round_number: int) -> None:
        """Schedule the round's signals, schedules and actions on the virtual clock (times
        relative to now, the round's start)."""
        from core import clock

        emulator = self.emulator
        assert emulator is not None
        start = emulator.now
        started = clock.utc_now()
        for signal in self.scenario.signals:
            delivered = start + max(0.0, signal.at_seconds)
            if signal.schedule is not None:
                for time_number in range(signal.times):
                    when = delivered + time_number * signal.interval_seconds
                    emulator.schedule(when, functools.partial(self._tick, signal, signals))
            else:
                at = started + timedelta(seconds=signal.at_seconds)
                emulator.schedule(delivered, functools.partial(self._signal, signal, signals, impaired, at))
        for action in self.scenario.actions:
            if action.round == round_number:
                emulator.schedule(start + action.at_seconds, functools.partial(self._act, action))

    def _tick(self, signal: Any, signals: list[dict[str, Any]]) -> None:
        """A schedule signal fires: the stack's scheduled rules deliver their event."""
        from core import clock

        emulator = self.emulator
        assert emulator is not None
        target = self._region(signal.region)
        where = f" in {target.region}" if len(emulator.regions) > 1 else ""
        ticked = clock.utc_now().isoformat()  # before its rules run (and detect)
        fired = target.fire_schedules()
        signals.append(
            {"event": f"schedule{where} ({fired} rule(s) fired)", "deliveries": 1, "time": ticked, "at": ticked}
        )

    def _signal(self, signal: Any, signals: list[dict[str, Any]], impaired: list[str], at: datetime) -> None:
        """An alarm changes state, or an event is put on its default bus, dated `at`."""
        emulator = self.emulator
        assert emulator is not None
        target = self._region(signal.region)
        if signal.alarm is not None:
            if self.workload.get("account_id"):
                # A member's alarms are in its member stack, which forwards their events (_check_signals)
                target = emulator._stacks[(self.workload["account_id"], target.region)]
            alarm = signal.alarm.replace("{workload}", self.workload["name"])
            try:
                event = target.set_alarm_state(alarm, signal.state, deliveries=signal.deliveries, at=at)
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
            return
        if self.workload.get("account_id") and signal.account is None:
            # A member's own event goes on its default bus, which forwards it (with a member stack)
            target = emulator._stacks.get((self.workload["account_id"], target.region), target)
        event = self._fill(signal.event or {}, impaired, at, signal.account, target.region)
        event.setdefault("id", emulator.new_id())
        event.setdefault("time", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for _ in range(signal.deliveries):
            target.put_event(json.loads(json.dumps(event)))
        signals.append(
            {
                "event": f"{event.get('source')} {event.get('detail-type')}",
                "deliveries": signal.deliveries,
                "time": event["time"],  # as the scenario wrote it: any string
                "at": at.isoformat(),  # when it was delivered, on the virtual clock
            }
        )

    def _act(self, action: Any) -> None:
        """An operator's action, done as recoveryctl does it (the store's switches, Step
        Functions' task tokens and StopExecution), recorded in the report's drill_actions."""
        emulator = self.emulator
        assert emulator is not None
        regions = [self._region(action.region)] if action.region else self._emulators()
        reason = action.reason or f"{action.action} by the drill"
        done: list[str] = []
        if action.action in ("pause", "resume"):
            for region in regions:
                region.store().set_paused(action.action == "pause", reason, "drill")
                done.append(region.region)
        elif action.action in ("enable_plan", "disable_plan"):
            for region in regions:
                region.store().set_plan_enabled(action.plan, action.action == "enable_plan", "drill")
                done.append(region.region)
        elif action.action in ("approve", "reject"):
            for region in regions:
                for name, approval in self._pending_approvals(region):
                    self._answered.add(name)
                    done.append(self._answer(region, name, approval, action.action, reason))
        else:  # stop_execution
            for region in regions:
                sfn = region.client("stepfunctions")
                for execution in region.executions():
                    if execution["status"] == "RUNNING":
                        sfn.stop_execution(executionArn=execution["executionArn"], error="drill", cause=reason[:256])
                        done.append(execution["name"])
        self.actions_done.append(
            {
                "at_seconds": round(emulator.now, 3),
                "action": action.action,
                "plan": action.plan,
                "reason": reason,
                "done": done,
            }
        )

    def _answer_approvals(self) -> None:
        """The on-call's answer to a plan waiting for approval, as the scenario says (approve or
        reject, as `recoveryctl approve|reject` would), `approval_after_seconds` after the request
        is noticed (an idle hook: nothing else can run then). Without an answer, the approval's
        time-box passes on the virtual clock by itself."""
        emulator = self.emulator
        assert emulator is not None
        for region in self._emulators():
            for name, _ in self._pending_approvals(region):
                self._answered.add(name)
                emulator.schedule(
                    emulator.now + self.scenario.approval_after_seconds,
                    functools.partial(self._answer_when_due, region, name),
                )

    def _answer_when_due(self, region: Emulator, name: str) -> None:
        approval = (region.store().get_impairment(name) or {}).get("approval") or {}
        if approval.get("status") == "pending":
            self._answer(region, name, approval, self.scenario.approval, "answered by the drill's on-call")

    def _pending_approvals(self, region: Emulator) -> list[tuple[str, dict[str, Any]]]:
        """(execution name, approval) of the running executions waiting for a human, not yet answered."""
        store = region.store()
        pending = []
        for execution in region.executions():
            if execution["status"] != "RUNNING" or execution["name"] in self._answered:
                continue
            approval = (store.get_impairment(execution["name"]) or {}).get("approval") or {}
            if approval.get("status") == "pending":
                pending.append((execution["name"], approval))
        return pending

    def _answer(self, region: Emulator, name: str, approval: dict[str, Any], decision: str, reason: str) -> str:
        """Approve or reject with the task token recorded on the impairment (SendTaskSuccess /
        SendTaskFailure) and record who decided; returns what happened."""
        from botocore.exceptions import ClientError

        from core import clock
        from core.errors import ApprovalRejected

        store = region.store()
        sfn = region.client("stepfunctions")
        answered = {**approval, "by": "drill", "at": clock.utc_now().isoformat(), "reason": reason}
        try:
            if decision == "approve":
                store.update_impairment(name, approval={**answered, "status": "approved"})
                sfn.send_task_success(
                    taskToken=approval["task_token"], output=json.dumps({"approved": True, "by": "drill"})
                )
            else:
                store.update_impairment(name, approval={**answered, "status": "rejected"})
                sfn.send_task_failure(
                    taskToken=approval["task_token"], error=ApprovalRejected.__name__, cause=reason[:256]
                )
        except ClientError as exc:  # the token's task is over (timed out, aborted)
            return f"{name}: too late ({exc.response.get('Error', {}).get('Code')})"
        return f"{name}: {'approved' if decision == 'approve' else 'rejected'}"

    def _inject(self, before: dict[str, Any], round_number: int) -> list[str]:
        """Apply the round's faults; returns the instances they impaired."""
        emulator = self.home
        assert emulator is not None
        with emulator.as_account(self.workload.get("account_id")):
            return self._inject_faults(before, round_number)

    def _inject_faults(self, before: dict[str, Any], round_number: int) -> list[str]:
        emulator = self.home
        assert emulator is not None
        impaired: list[str] = []
        in_service_of = {
            "main": before.get("in_service", []),
            "second": (before.get("second_group") or {}).get("in_service", []),
        }
        for fault in self.scenario.instance_faults:
            if fault.round is not None and fault.round != round_number:
                continue
            if fault.kind == "task_crash":
                if not self.workload.get("ecs_service"):
                    raise DrillError(f"scenario {self.scenario.name}: task_crash needs a workload with an ecs_service")
                workloads.crash_tasks(emulator, self.workload, fault.count)
                continue
            in_service = in_service_of[fault.group]
            originals = self._originals.get(fault.group, [])
            which = "the second group" if fault.group == "second" else "the group"
            if not in_service:
                raise DrillError(
                    f"scenario {self.scenario.name}: {fault.kind} needs a workload with instances in {which}"
                )
            if fault.kind == "zone_outage":
                # The zone fails, not a group: every instance there stops, whichever group it is in.
                zone = self._zone_of(in_service[0])
                everyone = [*in_service_of["main"], *in_service_of["second"]]
                victims = [i for i in everyone if self._zone_of(i) == zone and i not in impaired]
            elif fault.index is not None:
                victims = originals[fault.index : fault.index + fault.count]
                gone = [i for i in victims if i not in in_service]
                if len(victims) < fault.count or gone:
                    raise DrillError(
                        f"scenario {self.scenario.name}: instance fault index {fault.index} (count {fault.count}) in "
                        f"round {round_number}: {which} started with {len(originals)} instance(s)"
                        + (f", and {', '.join(gone)} is no longer in service" if gone else "")
                    )
            elif fault.pick == "newest":
                victims = self._newest([i for i in in_service if i not in impaired], fault.count)
            else:
                victims = [i for i in in_service if i not in impaired][: fault.count]
            if fault.kind == "fail_health_check":
                emulator.failing_health_checks.update(victims)
            else:
                emulator.client("ec2").stop_instances(InstanceIds=victims)
            impaired.extend(victims)
        return impaired

    def _zone_name(self, zone: str, impaired: list[str]) -> str:
        """A zone fault's zone: a name, a letter of the workload's region, or {zone}."""
        assert self.home is not None
        if zone == "{zone}":
            if not impaired:
                raise DrillError(f"scenario {self.scenario.name}: a zone fault in {{zone}} needs an impaired instance")
            with self.home.as_account(self.workload.get("account_id")):
                return self._zone_of(impaired[0])
        if len(zone) == 1:
            return f"{self.home.region}{zone}"
        return zone

    def _newest(self, instance_ids: list[str], count: int) -> list[str]:
        assert self.emulator is not None
        if not instance_ids:
            return []
        found = self._ec2().describe_instances(InstanceIds=instance_ids)
        launched = {i["InstanceId"]: i["LaunchTime"] for r in found["Reservations"] for i in r["Instances"]}
        return sorted(instance_ids, key=lambda i: (launched.get(i), instance_ids.index(i)), reverse=True)[:count]

    def _zone_of(self, instance_id: str) -> str:
        assert self.emulator is not None
        found = self._ec2().describe_instances(InstanceIds=[instance_id])
        return found["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"]

    def _ec2(self) -> Any:
        """EC2 in the workload's account (a member's, or the central one)."""
        assert self.home is not None
        return self.home.client("ec2", account=self.workload.get("account_id"))

    def _fill(
        self, value: Any, impaired: list[str], at: datetime, account: str | None = None, region: str | None = None
    ) -> Any:
        """Replace the placeholders of a scenario's event."""
        emulator = self.emulator
        assert emulator is not None
        if isinstance(value, dict):
            return {k: self._fill(v, impaired, at, account, region) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v, impaired, at, account, region) for v in value]
        if not isinstance(value, str) or "{" not in value:
            return value
        names = {
            "workload": self.workload["name"],
            "account": account or self.workload.get("account_id") or emulator.account,
            "region": region or emulator.region,
            "now": at.isoformat().replace("+00:00", "Z"),
        }
        for index, instance in enumerate(impaired):
            names[f"instance{index + 1}"] = instance
        if impaired:
            names["instance"] = impaired[0]
            zone = self._zone_of(impaired[0])
            names["zone"] = zone
            zones = self._ec2().describe_availability_zones(ZoneNames=[zone])["AvailabilityZones"]
            names["zone_id"] = zones[0]["ZoneId"]
        for key, replacement in names.items():
            value = value.replace("{" + key + "}", replacement)
        return value

    # --- the report ---
    def _report(
        self, signals: list[dict[str, Any]], impaired: list[str], before: dict[str, Any], after: dict[str, Any]
    ) -> dict[str, Any]:
        from core import clock

        emulator = self.emulator
        assert emulator is not None
        ended_at = clock.utc_now()
        # What every region's table (its replica) holds once the drill settled: the audit trail
        # the report reads, and the locks and budgets the invariants look for.
        tables = {region.region: scan_table(region.store().table) for region in self._emulators()}
        records = {
            str(item["pk"]).removeprefix("IMPAIRMENT#"): item
            for items in tables.values()
            for item in items
            if str(item.get("pk", "")).startswith("IMPAIRMENT#") and item.get("sk") == "RECORD"
        }
        runs = [
            self._run_of(region, item, tables[region.region])
            for region in self._emulators()
            for item in region.executions()
        ]
        runs.sort(key=lambda r: _when(r["started_at"]))
        # Several executions (a storm, rounds of a flapping fault): the report shows the worst.
        shown = min(runs, key=lambda r: _SEVERITY_OF_OUTCOME.get(r["outcome"], 99), default=None)
        execution = (
            {**{k: shown[k] for k in ("name", "region", "arn", "status")}, "states": _names(shown["states"])}
            if shown
            else {}
        )
        record = records.get(execution["name"]) if execution else None
        # Every "Impairment Detected" a detector put on a recovery bus, one entry per impairment.
        detected: dict[str, dict[str, Any]] = {}
        events = [e for e in emulator.events if e["bus"] != "default" and e["detail-type"] == "Impairment Detected"]
        for event in events:
            detail = event["detail"]
            found = detected.setdefault(
                detail["impairment_id"],
                {
                    "impairment_id": detail["impairment_id"],
                    "at": detail.get("detected_at") or event.get("time"),
                    "impairment_type": detail.get("impairment_type"),
                    "severity": detail.get("severity"),
                    "region": event.get("region"),
                    "deliveries": 0,
                    "linked_to": (records.get(detail["impairment_id"]) or {}).get("linked_to"),
                    "started": any(r["name"] == detail["impairment_id"] for r in runs),
                },
            )
            found["deliveries"] += 1
        pages = sorted(self._pages(records), key=lambda p: _when(p["at"]))
        outcome = (record or {}).get("outcome") or (_outcome_from(execution) if execution else "nothing_started")
        # On the virtual clock, steps that ran without a wait between them start at the same instant:
        # then the executions' order, and within one its steps' (applied in order, rolled back in reverse).
        ordered = [(a, (position, *_step_order(a))) for position, r in enumerate(runs) for a in r.pop("actions")]
        ordered.sort(key=lambda pair: (_when(pair[0].get("started_at")), pair[1]))
        actions = [a for a, _ in ordered]
        report = {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "outcome": outcome,
            "reason": (record or {}).get("reason") or (None if runs else _nothing_started(detected)),
            "impairment_id": (record or {}).get("impairment_id"),
            "region": execution.get("region"),
            "impairment_type": (record or {}).get("impairment_type"),
            "severity": (record or {}).get("severity"),
            "plan": (record or {}).get("plan"),
            "mttd_seconds": _round((record or {}).get("mttd_seconds")),
            "mttr_seconds": _round((record or {}).get("mttr_seconds")),
            "started_at": (self.started_at or ended_at).isoformat(),
            "ended_at": ended_at.isoformat(),
            "execution": execution,
            "actions": actions,
            "executions_started": len(runs),
            "outcomes": dict(Counter(r["outcome"] for r in runs)),
            "guardrails_tripped": sorted({g for r in runs for g in r["guardrails_tripped"]}),
            "executions": [{k: v for k, v in r.items() if k != "arn"} for r in runs],
            "regions": [region.region for region in self._emulators()],
            "transitions": sum(len(_names(r["states"])) for r in runs),
            "signals": signals,
            "detections": len(events),
            "detected": list(detected.values()),
            "correlated": sorted(i for i, r in records.items() if r.get("linked_to")),
            "pages": pages,
            "escalations": [p["summary"] for p in pages],
            "workload": {
                "name": self.workload["name"],
                "account": self.workload.get("account_id") or emulator.account,
                "group": self.workload.get("auto_scaling_group"),
                "standby_group": (self.workload.get("standby") or {}).get("auto_scaling_group"),
                "second_group": self.second_group,
                "impaired_instances": impaired,
                "before": before,
                "after": after,
            },
            "virtual_wait_seconds": emulator.virtual_seconds,
            "lambda_errors": [f"{i.function}: {i.error}" for i in emulator.invocations if not i.ok],
        }
        dead_letters = {_stack_label(stack, emulator): stack.dead_letter_count() for stack in emulator.every_stack()}
        report["dead_letters"] = sum(dead_letters.values())
        facts = expect.Facts(
            tables=tables,
            executions=[{"name": r["name"], "region": r["region"], "status": r["status"]} for r in runs],
            dead_letters=dead_letters,
            now=ended_at,
        )
        report["expectations"] = expect.check_expectations(self.scenario.expect, report)
        report["invariants"] = expect.check_invariants(facts, self.scenario.expect.invariants_off)
        report["expectation_met"] = not report["expectations"]["failed"] and not report["invariants"]["broken"]
        return report

    def _run_of(self, region: Emulator, item: dict[str, Any], table: list[dict[str, Any]]) -> dict[str, Any]:
        """One execution as the report tells it: its states with their virtual times, its audit
        record's outcome and plan, and its action steps."""
        from recoveryctl import views

        history = region.history(item["executionArn"])
        states = [{**e, "at": _iso(e.get("at"))} for e in views.state_timeline(history)]
        record = next((i for i in table if i.get("pk") == f"IMPAIRMENT#{item['name']}" and i.get("sk") == "RECORD"), {})
        outcome = record.get("outcome") or _outcome_from({"states": _names(states)})
        steps = [
            i for i in table if i.get("pk") == f"IMPAIRMENT#{item['name']}" and str(i.get("sk")).startswith("ACTION#")
        ]
        approval = {k: v for k, v in (record.get("approval") or {}).items() if k != "task_token"}
        return {
            "name": item["name"],
            "region": region.region,
            "arn": item["executionArn"],
            "status": item["status"],
            "outcome": outcome,
            "guardrails_tripped": record.get("guardrails_tripped") or [],
            "reason": record.get("reason"),
            "plan": record.get("plan"),
            # On the virtual clock, as its history is (moto's own start and stop dates are not).
            "started_at": _iso(history[0]["timestamp"]) if history else _iso(item.get("startDate")),
            "stopped_at": _iso(history[-1]["timestamp"]) if history and item["status"] != "RUNNING" else None,
            "detected_at": record.get("detected_at"),
            "resolved_at": record.get("resolved_at"),
            "escalated_at": record.get("escalated_at"),
            "mttd_seconds": _round(record.get("mttd_seconds")),
            "mttr_seconds": _round(record.get("mttr_seconds")),
            "approval": approval or None,
            "states": states,
            "actions": [_action(step, item["name"], outcome) for step in steps],
        }

    def _pages(self, records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages a human received, each dated by the audit record of what it was about:
        an approval request when it was requested, an escalation when it was escalated."""
        pages = []
        for region in self._emulators():
            for message in region.escalations():
                body = message if isinstance(message, dict) else {"summary": str(message)}
                record = records.get(str(body.get("impairment_id"))) or {}
                kind = "approval" if "approve" in body else "escalation"
                at = (record.get("approval") or {}).get("requested_at") if kind == "approval" else None
                pages.append(
                    {
                        "at": at or body.get("sent_at") or record.get("escalated_at"),
                        "kind": kind,
                        "impairment_id": body.get("impairment_id"),
                        "region": region.region,
                        "summary": body.get("summary", json.dumps(body, default=str)),
                    }
                )
        return pages


# Which execution a report shows when there are several: the one that went worst.
_SEVERITY_OF_OUTCOME = {"escalated": 0, "rolled_back": 1, "skipped": 2, "dry_run": 3, "recovered": 4}


def _step_order(action: dict[str, Any]) -> tuple[int, int]:
    """Where a step comes in its execution: every apply in step order, then the rollbacks (and
    capacity given back) in reverse."""
    index = int(action.get("step_index") or 0)
    return (0, index) if action.get("phase") == "apply" else (1, -index)


def _action(step: dict[str, Any], execution: str, outcome: str) -> dict[str, Any]:
    from recoveryctl.views import phase_label

    result = step.get("result") or {}
    targets = list(result.get("targets") or _targets(step.get("before")))
    return {
        "execution": execution,
        "type": step.get("action"),
        "step_index": int(step.get("step_index") or 0),
        "phase": phase_label(step.get("phase"), outcome),
        "targets": targets,
        "target": ", ".join(targets),
        "result": result.get("result") or step.get("status"),
        "message": result.get("message") or step.get("error", ""),
        "started_at": step.get("started_at"),
        "finished_at": step.get("finished_at"),
    }


def _targets(before: Any) -> list[str]:
    if isinstance(before, dict):
        if "instances" in before:
            return sorted(before["instances"])
        if "group" in before:
            return [before["group"]]
    return []


def _names(states: list[dict[str, Any]]) -> list[str]:
    return [s["state"] for s in states if "state" in s]


def _outcome_from(execution: dict[str, Any]) -> str:
    states = execution.get("states") or []
    if "Recovered" in states:
        return "recovered"
    if "Escalated" in states:
        return "escalated"
    return "skipped"


def _nothing_started(detected: dict[str, dict[str, Any]]) -> str:
    if not detected:
        return "no impairment was detected"
    return f"{len(detected)} impairment(s) detected, none started a recovery"


def _stack_label(stack: Emulator, primary: Emulator) -> str:
    """A stack as the report names it: its region, with its account when it is a member's."""
    return stack.region if stack.account == primary.account else f"{stack.account}/{stack.region}"


def _when(value: Any) -> datetime:
    """A report's time, to sort by (its strings mix offsets and precisions); unknown: last."""
    from recoveryctl.timeline import parse_time

    return parse_time(value) or datetime.max.replace(tzinfo=UTC)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value) if value else None


def _round(value: Any) -> float | None:
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def run(scenario: Scenario, template_path: Path) -> dict[str, Any]:
    """Run a scenario in a fresh emulator; returns its report."""
    with Drill(scenario, template_path) as drill:
        return drill.run()


def to_json(report: dict[str, Any]) -> str:
    """The report as the JSON `recoveryctl drill --json` prints."""
    return json.dumps(report, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    with contextlib.suppress(TypeError):
        return dict(value)
    return str(value)
