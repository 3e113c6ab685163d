"""Injecting a drill's faults: the instances a round's faults stop or fail, a zone fault's zone,
and the placeholders of a scenario's events."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from recoveryctl.emulator import workload as workloads

if TYPE_CHECKING:
    from recoveryctl.emulator.runtime import Emulator
    from recoveryctl.scenario import Scenario


class Faults:
    """Drill's fault injection (a mixin of Drill)."""

    # The Drill's (drill.py)
    emulator: Emulator | None
    home: Emulator | None
    scenario: Scenario
    workload: dict[str, Any]
    _originals: dict[str, list[str]]

    def _inject(self, before: dict[str, Any], round_number: int) -> list[str]:
        """Apply the round's faults; returns the instances they impaired."""
        emulator = self.home
        assert emulator is not None
        with emulator.as_account(self.workload.get("account_id")):
            return self._inject_faults(before, round_number)

    def _inject_faults(self, before: dict[str, Any], round_number: int) -> list[str]:
        from recoveryctl.drill import DrillError  # drill.py imports this module

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
            if fault.kind == "node_not_ready":
                impaired.extend(self._fail_nodes(fault))
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

    def _fail_nodes(self, fault: Any) -> list[str]:
        """Nodes of the workload's EKS node group go NotReady; returns their instances."""
        from recoveryctl.drill import DrillError  # drill.py imports this module
        from recoveryctl.emulator import eks

        backed = eks.of(self.home, self.workload)
        if backed is None:
            raise DrillError(f"scenario {self.scenario.name}: node_not_ready needs a workload with an eks node group")
        return backed.fail(fault.count, fault.pdb_refusals)

    def _zone_name(self, zone: str, impaired: list[str]) -> str:
        """A zone fault's zone: a name, a letter of the workload's region, or {zone}."""
        from recoveryctl.drill import DrillError  # drill.py imports this module

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
