"""Event storm: an Availability Zone fails under M protected groups at once, every signal
delivered twice, and the emulator runs until nothing is left to deliver and no execution runs.

The goals are ratios, not times (issue 16): executions equal to the distinct impaired instances,
none lost, the blast-radius cap kept, pages no more than the groups affected, and every size run
within the bench's time budget; wall seconds are reported beside them.

Design: docs/performance.md#4-event-storm
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench import fleet as fleets
from bench.metering import Meter, transitions
from bench.per_recovery import retry_once
from bench.speedups import faster_moto, frozen_heap

SEED = 1  # the interleaving's seed: the same storm every run
# (groups, instances per group): a third of each group (one zone of three) is impaired: 100, 500
# and 1,000 impaired instances.
SIZES = [(10, 30), (10, 150), (10, 300)]
BUDGET_SECONDS = 900.0  # `make bench` stays under 20 minutes on the 2-core machine
ROOT = Path(__file__).resolve().parent.parent


def storm_event(emulator: Any, instance_id: str, at: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": emulator.account,
        "time": at,
        "region": emulator.region,
        "resources": [f"arn:aws:ec2:{emulator.region}:{emulator.account}:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": "stopped"},
    }


def blast_radius_cap(emulator: Any) -> float | None:
    """The largest share of a group the deployment lets recoveries act on (the guardrail's
    `blast_radius.max_share`): from the configuration file the functions are deployed with
    (RECOVERY_CONFIG, in the code asset), else the guardrail's default; None while the code
    has no such guardrail."""
    config_name = next(
        (f.environment["RECOVERY_CONFIG"] for f in emulator.functions.values() if "RECOVERY_CONFIG" in f.environment),
        None,
    )
    if config_name:
        assets = sorted(
            Path(emulator.template_path).parent.glob(f"asset.*/{config_name}"), key=lambda p: p.stat().st_mtime
        )
        for path in reversed(assets):
            share = _find_max_share(json.loads(path.read_text()))
            if share is not None:
                return share
    try:
        from core.guardrails import BlastRadius
    except ImportError:
        return None
    return float(BlastRadius().max_share)


def _find_max_share(value: Any) -> float | None:
    if isinstance(value, dict):
        blast = value.get("blast_radius")
        if isinstance(blast, dict) and isinstance(blast.get("max_share"), int | float):
            return float(blast["max_share"])
        for item in value.values():
            found = _find_max_share(item)
            if found is not None:
                return found
    return None


def run_size(template_path: Path, groups: int, per_group: int, deliveries: int = 2) -> dict[str, Any]:
    from core import clock
    from recoveryctl.emulator.runtime import Emulator

    with faster_moto(), Emulator(template_path, seed=SEED, trace_params=False) as emulator:
        fleet = fleets.build(emulator, groups, per_group, prefix="storm")
        zones = fleets.zone_of_instances(emulator, [i for ids in fleet.groups.values() for i in ids])
        failed_zone = f"{emulator.region}{fleets.ZONES[0]}"
        impaired = sorted(i for i, z in zones.items() if z == failed_zone)
        ec2 = emulator.client("ec2")
        for start in range(0, len(impaired), 500):
            ec2.stop_instances(InstanceIds=impaired[start : start + 500])
        meter = Meter().install(emulator)
        at = clock.utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
        events = [storm_event(emulator, i, at) for i in impaired]
        with frozen_heap():
            started, cpu_started, load_before = time.perf_counter(), time.process_time(), _load()
            for _ in range(deliveries):
                for event in events:
                    emulator.put_event(json.loads(json.dumps(event)))
            emulator.pump(timeout=3600)
            wall = time.perf_counter() - started
        machine = _machine(time.process_time() - cpu_started, load_before)
        executions = emulator.executions()
        counted = transitions(emulator)
        records = _impairment_records(emulator)
        shares = _shares(emulator, fleet)
        cap = blast_radius_cap(emulator)
        dead_letters = emulator.dead_letter_count()
        pages = len(emulator.escalations())
    usage = meter.snapshot()
    recorded = {r for record in records for r in record["resources"]}
    lost = [i for i in impaired if i not in recorded]
    actions = Counter(
        op
        for op, n in usage["api_calls_by_operation"].items()
        for _ in range(n)
        if op
        in (
            "auto-scaling:TerminateInstanceInAutoScalingGroup",
            "auto-scaling:SetInstanceHealth",
            "auto-scaling:SetDesiredCapacity",
            "auto-scaling:UpdateAutoScalingGroup",
            "ec2:RebootInstances",
            "ec2:StopInstances",
            "ec2:StartInstances",
            "elastic-load-balancing-v2:DeregisterTargets",
        )
    )
    max_share = max(shares.values(), default=0.0)
    impaired_set = set(impaired)
    affected = sum(1 for ids in fleet.groups.values() if impaired_set.intersection(ids))
    return {
        "groups": groups,
        "instances_per_group": per_group,
        "instances": fleet.instances,
        "impaired_instances": len(impaired),
        "signals_delivered": len(events) * deliveries,
        "executions_started": len(executions),
        "executions_by_status": dict(Counter(e["status"] for e in executions)),
        "impairment_records": len(records),
        "outcomes": dict(Counter(str(r["outcome"]) for r in records)),
        "reasons_not_recovered": dict(
            Counter(r["reason"] or "(none recorded)" for r in records if r["outcome"] != "recovered").most_common(5)
        ),
        "actions_taken": sum(actions.values()),
        "actions_by_operation": dict(actions),
        "transitions": counted["billed"],
        **usage,
        **meter.items.summary(len(impaired)),
        "share_acted_on_by_group": shares,
        "max_share_acted_on": max_share,
        "blast_radius_cap": cap,
        "cap_exceeded": None if cap is None else max_share > cap + 1e-9,
        "lost_impairments": len(lost),
        "lost_examples": lost[:5],
        "pages": pages,
        "groups_affected": affected,
        "pages_within_target": pages <= affected,
        "dead_letters": dead_letters,
        "wall_seconds": wall,
        "seconds_per_impaired": round(wall / max(1, len(impaired)), 3),
        **machine,
        "executions_within_target": len(executions) == len(impaired),
    }


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _machine(cpu_seconds: float, load_before: float | None) -> dict[str, Any]:
    """What the wall time depends on besides the code, on a machine shared with other work: the
    CPU seconds this process spent (the emulator runs one thread at a time, so they are its work,
    whatever else runs), and the 1-minute load average when the storm began and ended."""
    return {
        "cpu_seconds": round(cpu_seconds, 1),
        "load_average": [load_before, _load()],
    }


def _impairment_records(emulator: Any) -> list[dict[str, Any]]:
    """Every impairment record of the recovery table (the emulator's own reads, not counted)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    ddb = emulator.client("dynamodb")
    table = emulator.outputs["RecoveryTableName"]
    records = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        for raw in page["Items"]:
            item = {k: deserializer.deserialize(v) for k, v in raw.items()}
            if not str(item.get("pk", "")).startswith("IMPAIRMENT#") or item.get("sk") != "RECORD":
                continue
            impairment = item.get("impairment") or {}
            if isinstance(impairment, str):
                impairment = json.loads(impairment)
            affected = impairment.get("affected_resources") or item.get("affected_resources") or []
            resources = [str(r.get("resource_id")) for r in affected if isinstance(r, dict)]
            records.append(
                {
                    "resources": resources,
                    "outcome": item.get("outcome") or item.get("status"),
                    "reason": str(item.get("reason") or item.get("error") or "")[:160],
                }
            )
    return records


def _shares(emulator: Any, fleet: fleets.Fleet) -> dict[str, float]:
    """Per group: its original instances that were terminated, or are no longer in it, over its size."""
    autoscaling = emulator.client("autoscaling")
    ec2 = emulator.client("ec2")
    members: dict[str, set[str]] = {}
    for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        AutoScalingGroupNames=list(fleet.groups)
    ):
        for group in page["AutoScalingGroups"]:
            members[group["AutoScalingGroupName"]] = {
                i["InstanceId"] for i in group["Instances"] if not i["LifecycleState"].startswith("Terminat")
            }
    original = [i for ids in fleet.groups.values() for i in ids]
    states: dict[str, str] = {}
    for start in range(0, len(original), 500):
        for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=original[start : start + 500]):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    states[instance["InstanceId"]] = instance["State"]["Name"]
    shares = {}
    for group, ids in fleet.groups.items():
        acted = [
            i for i in ids if states.get(i) in ("shutting-down", "terminated") or i not in members.get(group, set())
        ]
        shares[group] = round(len(acted) / len(ids), 4) if ids else 0.0
    return shares


def meets_target(size: dict[str, Any]) -> bool:
    """One storm's targets: one execution per distinct impaired instance, none lost, the cap kept,
    no more pages than groups affected."""
    return bool(
        size["executions_within_target"]
        and size["lost_impairments"] == 0
        and size["cap_exceeded"] is not True
        and size["pages_within_target"]
    )


def not_run_line(skipped: dict[str, Any]) -> str:
    """A storm size with no result, said in one line: why, and how long it was given or ran."""
    if "projected_wall_seconds" in skipped:
        return f"not run: {skipped['reason']} (projected {skipped['projected_wall_seconds']} s)"
    return f"not finished: {skipped['reason']} (ran {skipped['ran_seconds']} s)"


def run(
    template_path: Path,
    sizes: list[tuple[int, int]] | None = None,
    budget_seconds: float = BUDGET_SECONDS,
    largest: Largest | None = None,
) -> dict[str, Any]:
    """Storms of growing size, until one would not fit the time budget: a size is skipped (and
    said so) when the last one's wall time, scaled by the impaired count, exceeds what is left.
    `largest`: the largest size, started earlier in a process of its own (Largest), joined here."""
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    spent = 0.0
    for groups, per_group in [s for s in sizes or SIZES if largest is None or s != largest.size]:
        impaired = groups * per_group // len(fleets.ZONES)
        if results:
            last = results[-1]
            projected = last["wall_seconds"] / max(1, last["impaired_instances"]) * impaired * 1.5
            if spent + projected > budget_seconds:
                skipped.append(
                    {
                        "groups": groups,
                        "instances_per_group": per_group,
                        "impaired_instances": impaired,
                        "projected_wall_seconds": round(projected, 1),
                        "reason": f"projected past the bench's time budget of {budget_seconds:.0f} s",
                    }
                )
                continue
        began = time.perf_counter()
        results.append(
            retry_once(
                lambda g=groups, p=per_group: run_size(template_path, g, p), {"groups": groups, "per_group": per_group}
            )
        )
        spent += time.perf_counter() - began
    if largest is not None:
        done, not_done = largest.join()
        results += [done] if done else []
        skipped += [not_done] if not_done else []
        spent = max(spent, largest.seconds)
    results.sort(key=lambda r: r["impaired_instances"])
    biggest = results[-1] if results else None
    return {
        "budget_seconds": budget_seconds,
        "spent_seconds": round(spent, 1),
        "sizes": results,
        "not_run": skipped,
        "largest_impaired_run": biggest["impaired_instances"] if biggest else 0,
        "meets_target": bool(results) and not skipped and all(meets_target(r) for r in results),
    }


class Largest:
    """The largest storm, run in a process of its own while the bench measures the other parts
    (`make bench` on two cores stays under 20 minutes: the 1,000 storm alone takes most of it).
    Its counts and outcomes do not depend on what runs beside it; its wall seconds do, and its
    row says what it ran beside (`ran_beside`). Stopped, and reported as not finished, when it
    runs past the time budget."""

    def __init__(self, template_path: Path, size: tuple[int, int], budget_seconds: float, beside: list[str]) -> None:
        self.size = size
        self.budget_seconds = budget_seconds
        self.beside = beside
        self._dir = tempfile.TemporaryDirectory(prefix="storm-")
        self._out = Path(self._dir.name) / "size.json"
        self._began = time.perf_counter()
        self.seconds = 0.0
        self._process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            self.command(template_path, self._out),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "functions")])},
        )

    def command(self, template_path: Path, out: Path) -> list[str]:
        """The process that runs the storm and writes its row to `out` (main below)."""
        groups, per_group = self.size
        return [sys.executable, "-m", "bench.storm", str(template_path), f"{groups}x{per_group}", str(out)]

    def join(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(its result, None), or (None, why it has none)."""
        groups, per_group = self.size
        left = self.budget_seconds - (time.perf_counter() - self._began)
        try:
            code = self._process.wait(timeout=max(1.0, left))
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            code = None
        self.seconds = time.perf_counter() - self._began
        try:
            if code == 0:
                result = json.loads(self._out.read_text())
                return {**result, "ran_beside": self.beside}, None
            reason = (
                f"stopped at the bench's time budget of {self.budget_seconds:.0f} s"
                if code is None
                else f"its process failed (exit {code})"
            )
            return None, {
                "groups": groups,
                "instances_per_group": per_group,
                "impaired_instances": groups * per_group // len(fleets.ZONES),
                "ran_seconds": round(self.seconds, 1),
                "reason": reason,
            }
        finally:
            self._dir.cleanup()


def main(argv: list[str]) -> int:
    """python -m bench.storm TEMPLATE GROUPSxINSTANCES OUT.json: one storm size, its row as JSON."""
    template, size, out = argv
    groups, per_group = (int(n) for n in size.lower().split("x"))
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    result = retry_once(lambda: run_size(Path(template), groups, per_group), {"groups": groups, "per_group": per_group})
    Path(out).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
