"""What a drill must show, and what every drill must leave behind.

Expectations (a scenario's `expect`) compare what a user would look at after the drill: the
outcome, the workload's final state, the plan, the action steps and their targets, the pages, the
correlations. Each failure says "expected X, saw Y".

Invariants hold after every drill unless a scenario switches one off with a written reason. They
read what the drill left in the recovery table of every region (its items are documented in
functions/core/store.py) and in the dead-letter queues of every stack the emulator runs: a lock,
a concurrency slot or a correlation window still held, an execution without its audit record, an
action step without its state before or after, an event nobody could process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recoveryctl.scenario import Expectation, ExpectedAction, FinalState

INVARIANTS: dict[str, str] = {
    "no_lock_held": "no resource lock (LOCK#<resource> / LOCK) is left once every execution ended",
    "no_concurrency_slot_held": "no recovery still holds a slot of the concurrency budget (BUDGET#concurrency#<i>)",
    "no_correlation_window_held": "no correlation window (LOCK#<resource> / CORRELATION) is left open",
    "every_execution_recorded": "every execution has its audit record (IMPAIRMENT#<id> / RECORD) with an outcome",
    "every_action_recorded": "every action step has its state before, a finished one its state after; none is "
    "left started",
    "no_dead_letters": "no event waits in a dead-letter queue of any region's or member account's stack",
    "no_capacity_change_under_way": "no group's capacity ledger (CAPACITY#<group ARN> / LEDGER) is left with a "
    "change of its desired capacity decided and never finished",
}


@dataclass(frozen=True)
class Facts:
    """What the invariants read once the drill settled."""

    # Every item of each region's recovery table (its replica), by region.
    tables: dict[str, list[dict[str, Any]]]
    # Every execution: name, region, status.
    executions: list[dict[str, Any]]
    # Messages waiting in the dead-letter queues, by stack ("us-east-1", "111122223333/us-east-1").
    dead_letters: dict[str, int]
    # The drill's (virtual) time when it settled: how long a left item would still hold.
    now: datetime

    @property
    def statuses(self) -> dict[str, str]:
        """Each execution's status, by name (the impairment id that owns what it took)."""
        return {e["name"]: e.get("status", "?") for e in self.executions}


def check_invariants(facts: Facts, off: dict[str, str]) -> dict[str, Any]:
    """Every invariant not switched off, checked; the broken ones with what was found."""
    checks: dict[str, Callable[[Facts], list[str]]] = {
        "no_lock_held": lambda f: _held(f, "LOCK"),
        "no_concurrency_slot_held": _concurrency_slots,
        "no_correlation_window_held": lambda f: _held(f, "CORRELATION"),
        "every_execution_recorded": _executions_recorded,
        "every_action_recorded": _actions_recorded,
        "no_dead_letters": _dead_letters,
        "no_capacity_change_under_way": _capacity_changes,
    }
    broken = []
    for name, check in checks.items():
        if name in off:
            continue
        details = check(facts)
        if details:
            broken.append({"invariant": name, "description": INVARIANTS[name], "details": details})
    return {"checked": [n for n in checks if n not in off], "off": dict(off), "broken": broken}


def _held(facts: Facts, sort_key: str) -> list[str]:
    found = []
    for region, items in facts.tables.items():
        for item in items:
            if str(item.get("pk", "")).startswith("LOCK#") and item.get("sk") == sort_key:
                owner = str(item.get("owner"))
                found.append(
                    f"{item['pk']} / {sort_key} in {region}, held by {owner}{_execution_note(facts, owner)}"
                    f"{_expiry_note(facts, item.get('expiration'))}"
                )
    return found


def _concurrency_slots(facts: Facts) -> list[str]:
    found = []
    for region, items in facts.tables.items():
        for item in items:
            # one item per slot (core/budgets.py): BUDGET#concurrency#<i>, held by its owner
            if str(item.get("pk", "")).startswith("BUDGET#concurrency#") and item.get("sk") == "BUDGET":
                holder = item.get("owner")
                found.append(
                    f"a concurrency slot ({item['pk']}) in {region} held by {holder}{_execution_note(facts, holder)}"
                    f"{_expiry_note(facts, item.get('expiration'))}"
                )
    return found


def _capacity_changes(facts: Facts) -> list[str]:
    found = []
    for region, items in facts.tables.items():
        for item in items:
            change = item.get("changing")
            if str(item.get("pk", "")).startswith("CAPACITY#") and isinstance(change, dict):
                owner = str(change.get("key", "?")).split("#")[0]
                found.append(
                    f"{item['pk']} in {region}: a {change.get('kind')} {change.get('found')} -> {change.get('to')} "
                    f"by {owner}{_execution_note(facts, owner)} never finished"
                )
    return found


def _executions_recorded(facts: Facts) -> list[str]:
    found = []
    for execution in facts.executions:
        items = facts.tables.get(execution["region"], [])
        key = (f"IMPAIRMENT#{execution['name']}", "RECORD")
        record = next((i for i in items if (i.get("pk"), i.get("sk")) == key), None)
        where = f"execution {execution['name']} in {execution['region']} ({execution.get('status', '?')})"
        if record is None:
            found.append(f"{where}: no audit record {key[0]} / RECORD in that region's table")
        elif not record.get("outcome"):
            found.append(f"{where}: its record has no outcome (status {record.get('status') or 'none'})")
        if execution.get("status") == "RUNNING":
            found.append(f"{where}: still running when the drill settled")
    return found


def _actions_recorded(facts: Facts) -> list[str]:
    found = []
    for region, items in facts.tables.items():
        for item in items:
            if not str(item.get("sk", "")).startswith("ACTION#"):
                continue
            step = f"{item['pk'].removeprefix('IMPAIRMENT#')} {item['sk']} ({item.get('action')}) in {region}"
            status = item.get("status")
            if item.get("before") is None:
                found.append(f"{step}: no state before")
            if status == "done" and item.get("after") is None:
                found.append(f"{step}: done without its state after")
            if status not in ("done", "failed"):
                found.append(f"{step}: left {status or 'without a status'}, never finished (no state after)")
    return found


def _dead_letters(facts: Facts) -> list[str]:
    return [
        f"{stack}: {count} message(s) in its dead-letter queue(s)"
        for stack, count in facts.dead_letters.items()
        if count
    ]


def _execution_note(facts: Facts, owner: str) -> str:
    status = facts.statuses.get(owner)
    return f" (its execution {status})" if status else " (no execution of that name)"


def _expiry_note(facts: Facts, expiration: Any) -> str:
    if not isinstance(expiration, (int, float)) and not str(expiration or "").isdigit():
        return ""
    left = float(expiration) - facts.now.timestamp()
    if left >= 0:
        return f", for {left:.0f} s more (its TTL)"
    return f", expired {-left:.0f} s ago but never released"


# --- expectations ----------------------------------------------------------------------------
def check_expectations(expect: Expectation, report: dict[str, Any]) -> dict[str, Any]:
    """Each stated expectation compared with the report: the names checked and the failures,
    each with what was expected and what was seen."""
    checked: list[str] = []
    failed: list[dict[str, Any]] = []

    def compare(name: str, expected: Any, seen: Any, same: bool | None = None) -> None:
        checked.append(name)
        if not (expected == seen if same is None else same):
            failed.append(_failure(name, expected, seen))

    if expect.outcome is not None:
        compare("outcome", expect.outcome, report["outcome"])
    if expect.executions_started is not None:
        compare("executions_started", expect.executions_started, report["executions_started"])
    if expect.outcomes is not None:
        compare("outcomes", dict(expect.outcomes), report["outcomes"])
    if expect.guardrails_tripped is not None:
        compare("guardrails_tripped", sorted(expect.guardrails_tripped), report["guardrails_tripped"])
    if expect.region is not None:
        compare("region", expect.region, report["region"])
    if expect.plan is not None:
        plans = sorted({r["plan"] for r in report["executions"] if r.get("plan")})
        compare("plan", expect.plan, ", ".join(plans) or None, plans == [expect.plan])
    if expect.pages is not None:
        compare("pages", expect.pages, len(report["pages"]))
    if expect.correlated is not None:
        compare("correlated", expect.correlated, len(report["correlated"]))
    if expect.final_state is not None:
        for name, expected in expect.final_state.model_dump(exclude_none=True).items():
            if name == "routing_controls":
                workload = report["workload"]["name"]
                expected = {k.replace("{workload}", workload): v for k, v in expected.items()}
            compare(f"final_state.{name}", expected, final_state(name, report, expected))
    if expect.actions is not None:
        checked.append("actions")
        failed.extend(_compare_actions(expect.actions, report))
    return {"checked": checked, "failed": failed}


def final_state(name: str, report: dict[str, Any], expected: Any = None) -> Any:
    """One field of FinalState as the drill left it (None: the workload has no such part)."""
    workload = report["workload"]
    before, after = workload["before"], workload["after"]
    if name not in FinalState.model_fields:
        raise KeyError(name)
    if name == "in_service":
        return len(after["in_service"]) if "in_service" in after else None
    if name == "impaired_in_service":
        # In service in either group: one left in the second group is as much in service as in the first.
        serving = {*after.get("in_service", []), *(after.get("second_group") or {}).get("in_service", [])}
        serving |= set((after.get("eks") or {}).get("in_service", []))
        return len(set(workload["impaired_instances"]) & serving)
    if name == "desired_capacity":
        return after.get("desired_capacity")
    if name == "zonal_shifts":
        return len(after.get("zonal_shifts") or [])
    if name == "dns":
        return _dns_target(before.get("dns_records") or [], after.get("dns_records") or [])
    if name in ("second_in_service", "second_desired_capacity"):
        second = after.get("second_group")
        if not second:
            return None
        return len(second["in_service"]) if name == "second_in_service" else second.get("desired_capacity")
    if name in ("standby_in_service", "standby_desired_capacity"):
        standby = after.get("standby")
        if not standby:
            return None
        return len(standby.get("in_service", [])) if name == "standby_in_service" else standby.get("desired_capacity")
    if name in ("standby_ecs_running", "standby_ecs_desired"):
        service = (after.get("standby") or {}).get("ecs_service")
        return service.get(name.removeprefix("standby_ecs_")) if service else None
    if name in ("ecs_running", "ecs_desired"):
        service = after.get("ecs_service")
        return service.get(name.removeprefix("ecs_")) if service else None
    if name.startswith("eks_"):
        return _eks_state(name, after.get("eks"), set(workload["impaired_instances"]))
    if name == "database_status":
        return (after.get("database") or {}).get("status")
    if name == "database_moved":
        if "database" not in after:
            return None
        placement = lambda db: {k: v for k, v in (db or {}).items() if k != "status"}  # noqa: E731
        return placement(before.get("database")) != placement(after["database"])
    if name == "database_writer":
        return _database_writer(after)
    # routing_controls: only those the scenario asks about (all of them without `expected`)
    controls = after.get("routing_controls") or {}
    return {n: controls.get(n) for n in expected} if expected is not None else controls


def _database_writer(after: dict[str, Any]) -> str | None:
    """Where the writable database is: the global database's writer's region, or the standby's
    once its read replica is promoted (standalone and available), else the primary's."""
    found, replica = after.get("global_database"), after.get("read_replica")
    if found:
        return "standby" if found["writer_region"] == (after.get("standby") or {}).get("region") else "primary"
    if replica:
        return "standby" if replica["source"] is None and replica["status"] == "available" else "primary"
    return None


def _eks_state(name: str, eks: dict[str, Any] | None, impaired: set[str]) -> int | None:
    """A field of the EKS node group's final state, from the nodes as kubectl lists them."""
    if not eks:
        return None
    nodes = eks["nodes"].values()
    if name == "eks_desired_size":
        return eks["desired_size"]
    if name == "eks_ready_nodes":
        return sum(1 for n in nodes if n["ready"] and not n["cordoned"])
    if name == "eks_cordoned_nodes":
        return sum(1 for n in nodes if n["cordoned"])
    return sum(1 for n in nodes if n["instance"] in impaired)


def _dns_target(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str | None:
    """primary: the PRIMARY failover record still points where it did before the drill; standby:
    it points where the SECONDARY one did (the failover swapped them)."""

    def values(records: list[dict[str, Any]], role: str) -> set[str]:
        return {v["Value"] for r in records if r.get("Failover") == role for v in r.get("ResourceRecords", [])}

    now_primary = values(after, "PRIMARY")
    if not now_primary:
        return None
    if now_primary == values(before, "PRIMARY"):
        return "primary"
    if now_primary == values(before, "SECONDARY"):
        return "standby"
    return "changed: " + ", ".join(sorted(now_primary))


def _compare_actions(expected: list[ExpectedAction], report: dict[str, Any]) -> list[dict[str, Any]]:
    seen = report["actions"]
    if len(expected) != len(seen):
        return [
            _failure(
                "actions",
                f"{len(expected)} step(s): " + "; ".join(_describe_expected(e) for e in expected),
                f"{len(seen)}: " + ("; ".join(describe_action(a) for a in seen) or "none"),
            )
        ]
    failures = []
    for index, (wanted, action) in enumerate(zip(expected, seen, strict=True)):
        for name, value in wanted.model_dump(exclude_none=True).items():
            got = _action_field(name, action, report)
            ok = _targets_match(value, action, report) if name == "targets" else value == got
            if not ok:
                failure = _failure(f"actions[{index}].{name}", value, got)
                failure["message"] += f" ({describe_action(action)})"
                failures.append(failure)
    return failures


def _action_field(name: str, action: dict[str, Any], report: dict[str, Any]) -> Any:
    if name == "target_count":
        return len(action.get("targets") or [])
    if name == "targets":
        return action.get("targets") or []
    return action.get(name)


def _targets_match(wanted: Any, action: dict[str, Any], report: dict[str, Any]) -> bool:
    targets = list(action.get("targets") or [])
    workload = report["workload"]
    if wanted == "impaired":
        return bool(targets) and set(targets) <= set(workload["impaired_instances"])
    if wanted == "group":
        return targets == [workload.get("group")]
    if wanted == "standby_group":
        return targets == [workload.get("standby_group")]
    return sorted(t.replace("{workload}", workload["name"]) for t in wanted) == sorted(targets)


def describe_action(action: dict[str, Any]) -> str:
    """One action step in a few words: replace_instance apply changed on i-0abc."""
    targets = ", ".join(action.get("targets") or []) or "-"
    return f"{action.get('type')} {action.get('phase')} {action.get('result')} on {targets}"


def _describe_expected(action: ExpectedAction) -> str:
    parts = [action.type, action.phase or "(any phase)", action.result or "(any result)"]
    if action.targets is not None:
        parts.append(f"on {action.targets if isinstance(action.targets, str) else ', '.join(action.targets)}")
    if action.target_count is not None:
        parts.append(f"({action.target_count} target(s))")
    return " ".join(parts)


def _failure(name: str, expected: Any, seen: Any) -> dict[str, Any]:
    return {
        "expectation": name,
        "expected": expected,
        "seen": seen,
        "message": f"{name}: expected {_words(expected)}, saw {_words(seen)}",
    }


def _words(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_words(v)}" for k, v in value.items()) + "}" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_words(v) for v in value) + "]"
    return str(value)
