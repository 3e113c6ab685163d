"""The recovery table: one DynamoDB table, one repository per aggregate. RecoveryStore composes
them behind the methods its callers use, so a caller never builds a key.

Items (pk / sk) and which module keeps each: docs/operations.md#audit-trail-and-retention
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.budgets import CONCURRENCY_BUDGET, Budgets, Claim, Read, Taken
from core.capacity import CapacityLedger
from core.dynamo import GSI1, ConditionFailed, Table, is_condition_failure, now_epoch
from core.history import RecoveryHistory
from core.locks import CorrelationWindows, EscalationClaims, ResourceLocks
from core.probes import RegionProbes
from core.readiness import ReadinessResults
from core.records import ActionRecords, ImpairmentRecords
from core.storms import Storms
from core.switches import Switches

__all__ = ["CONCURRENCY_BUDGET", "GSI1", "Claim", "RecoveryStore", "Taken", "_is_condition_failure"]

# Kept under its former name for the callers that classify errors themselves.
_is_condition_failure = is_condition_failure


class RecoveryStore:
    """Repository over the recovery table. Every repository reads and writes through one client:
    `client` when given (a fake, or recoveryctl's), else `session`'s (a boto3 Session: a profile's
    credentials), else the function's own (core.aws)."""

    def __init__(self, table_name: str, client: Any = None, session: Any = None) -> None:
        self.table_name = table_name
        self._db = Table(table_name, client, session)
        self.impairments = ImpairmentRecords(self._db)
        self.actions = ActionRecords(self._db)
        self.locks = ResourceLocks(self._db)
        self.windows = CorrelationWindows(self._db)
        self.escalations = EscalationClaims(self._db)
        self.budgets = Budgets(self._db)
        self.switches = Switches(self._db)
        self.probes = RegionProbes(self._db)
        self.capacity = CapacityLedger(self._db)
        self.storms = Storms(self._db)
        self.history = RecoveryHistory(self._db)
        self.readiness = ReadinessResults(self._db)

    @property
    def table(self) -> Any:
        """The boto3 Table resource (of the session given, if any), for what the repositories do
        not do (recoveryctl's scan, tests)."""
        return self._db.resource

    # --- impairments and their actions ---------------------------------------------------------
    def put_impairment(self, impairment: dict[str, Any], status: str, **fields: Any) -> bool:
        return self.impairments.put(impairment, status, **fields)

    def update_impairment(self, impairment_id: str, **fields: Any) -> None:
        self.impairments.update(impairment_id, **fields)

    def get_impairment(self, impairment_id: str) -> dict[str, Any] | None:
        return self.impairments.get(impairment_id)

    def get_impairment_checked(self, impairment_id: str) -> dict[str, Any] | None:
        """The record with what CheckGuardrails noted of it (its slots, its trip) laid over it,
        in one read: what the end paths (Escalate, ExecutionEnded) decide from."""
        return self.impairments.get_checked(impairment_id)

    def note_trip(self, impairment_id: str, **fields: Any) -> None:
        """What stopped a recovery (guardrails_tripped, guardrail_trips, page), on the
        impairment's guardrails item: Escalate writes it onto the record with its outcome."""
        self.impairments.note(impairment_id, **fields)

    def list_impairments(self, workload: str, since: datetime | None = None) -> list[dict[str, Any]]:
        return self.impairments.list(workload, since)

    def link_signal(self, impairment_id: str, linked: dict[str, Any]) -> None:
        self.impairments.link_signal(impairment_id, linked)

    def put_action(self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any]) -> None:
        self.actions.put(impairment_id, step_index, phase, record)

    def put_first_action(
        self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        return self.actions.put_first(impairment_id, step_index, phase, record)

    def put_action_if_started(
        self, impairment_id: str, step_index: int, phase: str, record: dict[str, Any], started_at: str
    ) -> dict[str, Any] | None:
        return self.actions.put_if_started(impairment_id, step_index, phase, record, started_at)

    def get_action(self, impairment_id: str, step_index: int, phase: str) -> dict[str, Any] | None:
        return self.actions.get(impairment_id, step_index, phase)

    def fail_started_actions(self, impairment_id: str, error: str) -> list[dict[str, Any]]:
        return self.actions.fail_started(impairment_id, error)

    def list_actions(self, impairment_id: str) -> list[dict[str, Any]]:
        return self.actions.list(impairment_id)

    # --- what an impairment holds on resources ---------------------------------------------------
    def acquire_locks(
        self, impairment_id: str, resource_keys: list[str], ttl_seconds: int, take_over: Sequence[str] = ()
    ) -> None:
        self.locks.acquire(impairment_id, resource_keys, ttl_seconds, take_over)

    def release_locks(
        self,
        impairment_id: str,
        resource_keys: list[str],
        concurrency: bool = True,
        slots: Mapping[str, str] | None = None,
    ) -> None:
        """Release the locks, correlation windows and (unless concurrency=False: the recovery goes
        on without these resources) the concurrency slot this impairment holds: a new signal about
        these resources is a new impairment. Others' are left alone. `slots`: the slots noted for it
        (budget_slots), when the caller read them; else they are read."""
        if concurrency:
            slot = self._concurrency_slot(impairment_id, slots)
            if slot:
                self.budgets.release_slot(slot, impairment_id)
        for key in sorted(set(resource_keys)):
            self.locks.release(impairment_id, key)
            self.windows.release(impairment_id, key)

    def open_impairment(
        self,
        impairment: dict[str, Any],
        resource_keys: list[str],
        window_seconds: int,
        signal_time: datetime,
        status: str,
        **fields: Any,
    ) -> dict[str, Any] | bool:
        """Record a new impairment and open its correlation windows in one transaction: the
        first delivery of a signal about resources nobody else holds. True when written. When
        the record exists (a redelivery), nothing is written and the record is returned as it
        was (the refusal carries it: no second write, no read); False (nothing written) when
        only a window is another's: the caller correlates step by step
        (core.locks.CorrelationWindows.correlate says who holds what)."""
        now = now_epoch()
        wanted: dict[str, str | None] = dict.fromkeys(sorted(set(resource_keys)))
        windows = self.windows.open_items(
            impairment["impairment_id"], wanted, now + window_seconds, int(signal_time.timestamp()), now
        )
        try:
            self._db.transact([self.impairments.put_item(impairment, status, **fields), *windows])
            return True
        except ConditionFailed as refused:
            existing = refused.items[0] if refused.items else None
            return existing if existing is not None else False

    def admit(
        self,
        impairment_id: str,
        resource_keys: list[str],
        ttl_seconds: int,
        take_over: Sequence[str],
        plan_enabled: str | None = None,
        **fields: Any,
    ) -> bool:
        """Admit a recorded impairment in one transaction: automatic recovery is not paused, the
        plan chosen for it (`plan_enabled`, when one was) is not disabled, its resources are
        locked for it for `ttl_seconds` and its record updated with `fields`. False (nothing
        written) when any of that does not hold (paused, the plan disabled, a lock another's, no
        record yet): the caller then finds out which, step by step."""
        items = [
            self.switches.admissible_item(plan_enabled),
            *self.locks.acquire_items(impairment_id, resource_keys, ttl_seconds, take_over),
            self.impairments.update_item(impairment_id, **fields),
        ]
        try:
            self._db.transact(items)
            return True
        except ConditionFailed:
            return False

    def finish(
        self,
        impairment_id: str,
        resource_keys: list[str],
        budgets: Sequence[str],
        slots: Mapping[str, str] | None = None,
        noted: Sequence[dict[str, Any]] = (),
        **fields: Any,
    ) -> None:
        """The end of a recovery in one transaction: its record updated with `fields`, its
        locks, correlation windows and concurrency slot (of `slots`, CheckGuardrails' summary;
        None: read from the record) released, and its units of `budgets` given back. When any of
        them is not as expected (a window another impairment took over, a budget it holds
        nothing of), the same is done item by item, each left alone where it is not this
        impairment's. `noted`: unconditional updates written with it (its recovery history)."""
        keys = sorted(set(resource_keys))
        slot = self._concurrency_slot(impairment_id, slots)
        items = [
            self.impairments.update_item(impairment_id, **fields),
            *([self.budgets.release_slot_item(slot, impairment_id)] if slot else []),
            *(self.locks.release_item(impairment_id, key) for key in keys),
            *(self.windows.release_item(impairment_id, key) for key in keys),
            *(self.budgets.release_item(key, impairment_id) for key in sorted(set(budgets))),
            *noted,
        ]
        try:
            self._db.transact(items)
            return
        except ConditionFailed:
            pass
        self.update_impairment(impairment_id, **fields)
        if noted:
            self._db.transact(list(noted))
        self.release_locks(impairment_id, resource_keys, slots={CONCURRENCY_BUDGET: slot} if slot else {})
        for key in sorted(set(budgets)):
            self.release_budget(key, impairment_id)

    def _lock_holders(self, resource_keys: list[str]) -> dict[str, str]:
        return self.locks.holders(resource_keys)

    def correlate(
        self,
        impairment_id: str,
        resource_keys: list[str],
        window_seconds: int,
        signal_time: datetime,
        take_over: dict[str, str] | None = None,
    ) -> dict[str, str]:
        return self.windows.correlate(impairment_id, resource_keys, window_seconds, signal_time, take_over)

    def claim_escalation(self, impairment_id: str, resource_keys: list[str], window_seconds: int) -> bool:
        return self.escalations.claim(impairment_id, resource_keys, window_seconds)

    # --- budgets: the guardrails' counters ------------------------------------------------------
    def take_budgets(self, impairment_id: str, claims: list[Claim], read: Read | None = None) -> Taken:
        """Budgets.take, noting the slots newly taken (budget_slots) on the impairment's
        guardrails item in the same transaction: the end paths without the execution's state
        release them from it. Not on the record: a race lost cancels the transaction, which
        counts as a write of each of its items, and the record is written enough (issue 16)."""
        return self.budgets.take(
            impairment_id,
            claims,
            lambda slots: self.impairments.note_item(impairment_id, budget_slots=slots),
            read,
        )

    def budgets_spent(self, impairment_id: str, claims: list[Claim], read: Read) -> list[dict[str, Any]]:
        return self.budgets.spent(impairment_id, claims, read)

    def read_items(self, keys: list[tuple[str, str]]) -> Read:
        """Items of several kinds in one BatchGetItem (a task's history and budgets together)."""
        return Read(frozenset(keys), self._db.get_many(keys))

    def _concurrency_slot(self, impairment_id: str, slots: Mapping[str, str] | None) -> str | None:
        """The concurrency slot this impairment holds: from `slots` when given, else as noted
        (its guardrails item, or its record's of the version before)."""
        if slots is None:
            slots = (self.get_impairment_checked(impairment_id) or {}).get("budget_slots") or {}
        return slots.get(CONCURRENCY_BUDGET)

    def release_budget(self, key: str, impairment_id: str) -> None:
        self.budgets.release(key, impairment_id)

    def budget_items_held(self, claims: Sequence[Claim], impairment_id: str, read: Read | None = None) -> list[str]:
        return self.budgets.held_items(claims, impairment_id, read)

    def budget_holders(self, key: str, slots: int = 0) -> dict[str, dict[str, Any]]:
        """A budget's live holders, one holding each across its shards (or its slots)."""
        return self.budgets.holders(key, slots)

    # --- the switches ---------------------------------------------------------------------------
    def get_switches(self) -> dict[str, Any]:
        return self.switches.get()

    def set_paused(self, paused: bool, reason: str = "", actor: str = "") -> None:
        self.switches.set_paused(paused, reason, actor)

    def set_plan_enabled(self, plan: str, enabled: bool, actor: str = "") -> None:
        self.switches.set_plan_enabled(plan, enabled, actor)

    # --- region probes --------------------------------------------------------------------------
    def probe_failed(self, workload: str, region: str, tick: str, error: str, keep_seconds: int) -> dict[str, Any]:
        return self.probes.failed(workload, region, tick, error, keep_seconds)

    def get_probe(self, workload: str, region: str) -> dict[str, Any] | None:
        return self.probes.get(workload, region)

    def probe_published(self, workload: str, region: str, first_failure_at: str, impairment_id: str) -> None:
        self.probes.published(workload, region, first_failure_at, impairment_id)

    def reset_probe(self, workload: str, region: str, first_failure_at: str) -> bool:
        return self.probes.reset(workload, region, first_failure_at)
