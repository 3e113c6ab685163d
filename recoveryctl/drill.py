"""Drills: build a sample workload in the emulator, inject a scenario's fault, let the stack
detect and recover it, and report what happened."""

from __future__ import annotations

import contextlib
import functools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from recoveryctl import drill_paging, drill_report
from recoveryctl.drill_faults import Faults
from recoveryctl.drill_operator import Operator
from recoveryctl.emulator import eks
from recoveryctl.emulator import workload as workloads
from recoveryctl.emulator.runtime import DEFAULT_WORKERS, Emulator
from recoveryctl.emulator.template import TemplateError
from recoveryctl.pagerduty_server import FakePagerDuty
from recoveryctl.scenario import Scenario

METADATA_KEY = "ImpairmentRecovery"


class DrillError(RuntimeError):
    """The drill could not run (not: the recovery failed, which is a drill result)."""


class Drill(Operator, Faults):
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
        self.pagerduty: FakePagerDuty | None = None  # PagerDuty's stand-in, when the notifier pages it
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
            self.pagerduty = drill_paging.attach(self.regions())
        except Exception:
            self.emulator.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pagerduty is not None:
            self.pagerduty.__exit__()
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

    def regions(self) -> list[Emulator]:
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
            for region in self.regions():
                for function in region.functions.values():
                    function.environment["DRY_RUN"] = "true"
        if self.scenario.plans is not None:
            from actions.plans import PlanError, parse_plans

            try:
                plans = parse_plans(self.scenario.plans)
            except PlanError as exc:
                raise DrillError(f"scenario {self.scenario.name}: {exc}") from exc
            for region in self.regions():
                region.write_runtime_config(plans=[p.model_dump(mode="json") for p in plans])
        if self.scenario.guardrails is not None:
            from core.errors import InvalidInput

            try:
                for region in self.regions():
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
            if standby.get("global_database"):
                workloads.build_global_database(
                    self.home, self._region(standby["region"]), self.workload, self._managed_tag
                )
            if standby.get("read_replica"):
                workloads.build_read_replica(
                    self.home, self._region(standby["region"]), self.workload, self._managed_tag
                )
            if checks.get("secondary") and standby.get("target_group_arn"):
                emulator.health_check_targets[checks["secondary"]] = (standby["region"], standby["target_group_arn"])

    def _break_standby(self, emulator: Any) -> None:
        """The standby fails: its target group's every target, or its ECS service's tasks (they
        keep stopping), from the start or once the traffic arrives."""
        standby = self.workload.get("standby") or {}
        service = standby.get("ecs_service")
        if service:
            key = (standby["region"], service["cluster"], service["service"])

            def fail() -> None:
                emulator.world.stopping_services.add(key)
        elif standby.get("target_group_arn"):

            def fail() -> None:
                emulator.failing_target_groups.add(standby["target_group_arn"])
        else:
            raise DrillError(
                f"scenario {self.scenario.name}: standby_failure needs a standby target_group_arn or ecs_service"
            )
        if self.scenario.standby_failure == "at_start":
            fail()
        else:  # it buckles when the traffic arrives
            emulator.on_traffic_moved.append(fail)

    def _as_member(self, account: str) -> None:
        """The workload lives in a member account: the functions know it as a member (as the
        central stack does when `accounts` is configured: MEMBER_ACCOUNTS, MEMBER_ROLE_NAME) and
        reach it through the member role; the workload is built there."""
        from core import aws as core_aws

        emulator = self.emulator
        assert emulator is not None
        if account == emulator.account:
            raise DrillError(f"scenario {self.scenario.name}: member_account is the central account {account}")
        for function in (f for region in self.regions() for f in region.functions.values()):
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
        if self.workload.get("eks") and eks.of(emulator, self.workload):
            state["eks"] = eks.of(emulator, self.workload).state()
        if self.workload.get("database"):
            state["database"] = workloads.database_state(emulator, self.workload)
        if self.workload.get("dns"):
            state["dns_records"] = workloads.dns_state(emulator, self.workload)
        standby = self.workload.get("standby")
        if standby:
            region = self._region(standby["region"])
            state["standby"] = {"region": region.region}
            if standby.get("auto_scaling_group"):
                state["standby"].update(workloads.group_state(region, standby["auto_scaling_group"]))
            if standby.get("ecs_service"):
                state["standby"]["ecs_service"] = workloads.service_state(region, standby)
            if standby.get("global_database"):
                state["global_database"] = workloads.global_database_state(region, self.workload)
            if standby.get("read_replica"):
                state["read_replica"] = workloads.read_replica_state(emulator, region, self.workload)
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
        if self.scenario.instance_refresh:
            self._start_instance_refresh(emulator, self.scenario.instance_refresh)
        if self.scenario.paused:
            for region in self.regions():  # a replicated switch, set in every replica
                region.store().set_paused(True, "paused for a drill", "recoveryctl")
        if self.scenario.standby_failure != "none":
            self._break_standby(emulator)
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
        report = drill_report.build(self, signals, impaired, before, self.state())
        report["interleaving"] = emulator.interleaving()
        report["drill_actions"] = self.actions_done
        return report

    def _start_instance_refresh(self, emulator: Emulator, refresh: Any) -> None:
        """The scenario's instance refresh of the workload's group, as the emulator answers
        DescribeInstanceRefreshes (recoveryctl/emulator/behaviour.py)."""
        from core import clock

        group = self.workload.get("auto_scaling_group")
        if not group:
            raise DrillError(f"scenario {self.scenario.name}: instance_refresh needs the workload's auto_scaling_group")
        now = clock.utc_now()
        ends_at = None if refresh.ends_after_seconds is None else now + timedelta(seconds=refresh.ends_after_seconds)
        emulator.instance_refreshes[(emulator.acting_account, emulator.region, group)] = [
            {
                "InstanceRefreshId": f"refresh-{self.scenario.name}"[:36],
                "AutoScalingGroupName": group,
                "Status": refresh.status,
                "StatusReason": "started by the drill",
                "StartTime": now,
                "PercentageComplete": 40,
                "InstancesToUpdate": 2,
                "ends_at": ends_at,
                "ends_as": refresh.ends_as,
            }
        ]

    def _check_signals(self) -> None:
        """Refuse, before anything runs, a member's alarm without its member stack."""
        emulator = self.emulator
        assert emulator is not None
        for signal in self.scenario.signals:
            target = self._region(signal.region)
            member = self.workload.get("account_id")
            if signal.alarm is not None and member and emulator.stack(member, target.region) is None:
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
                target = emulator.stack(self.workload["account_id"], target.region)
                assert target is not None
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
            target = emulator.stack(self.workload["account_id"], target.region) or target
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
