"""What every recovery action's code shares: its input and output, and the runner that makes
apply and rollback safe to retry. (What an action declares is in actions/specs.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from core import clock
from core.contract import ImpairmentDetected
from core.errors import InvalidInput, PermanentError
from core.model import Model, ValidationError
from core.observability import emit, logger

Phase = Literal["apply", "rollback"]


class ActionParams(Model, kw_only=True, forbid_unknown_fields=True):
    """Base of every action's parameters: unknown parameters are an error, caught at synth. A
    subclass's own checks go in `_check` (core/model.py); one about a single field says so first
    ("payload: ..."), and a plan's problem is then put at that field's path (actions/plans.py)."""


class Step(Model, kw_only=True, forbid_unknown_fields=True):
    index: Annotated[int, Meta(ge=0, le=99)]
    action: str
    params: dict[str, Any] = {}


class ActionInput(Model, kw_only=True):
    """What the state machine passes to an action task (its other keys are ignored)."""

    impairment: ImpairmentDetected
    step: Step
    plan: str = ""
    dry_run: Annotated[bool, Meta(description="report what would change; change nothing")] = False
    applied: Annotated[dict[str, Any] | None, Meta(description="apply's result (rollback only)")] = None
    fleets: Annotated[
        dict[str, Any] | None,
        Meta(
            description="CheckGuardrails' read of the groups it decided on: group -> its instances of the impairment "
            "and which of its members were failing (check_guardrails.carried_fleets)"
        ),
    ] = None


class Applied(Model, kw_only=True):
    """What a rollback is given of its apply step: the apply's result, or the state it recorded
    before it failed half way. Only its shape is checked here: its other keys stay in the
    step's `applied` mapping, which is what the rollback reads."""

    action: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class ActionResult(Model, kw_only=True):
    """One action step's outcome, with the state before and after (the audit trail's unit). Not
    frozen: the runner completes it (its times, a retry's "changed")."""

    action: str
    phase: Phase
    step_index: int
    result: Literal["changed", "unchanged", "irreversible", "would_change"]
    targets: list[str]
    before: dict[str, Any] = msgspec.field(default_factory=dict)
    after: dict[str, Any] = msgspec.field(default_factory=dict)
    message: str = ""
    started_at: str = ""
    finished_at: str = ""


class Context(Struct, frozen=True):
    impairment: ImpairmentDetected
    params: Any
    step_index: int
    managed_tag: tuple[str, str]
    # The state recorded when this step first started (a retry reuses it: idempotency).
    before: dict[str, Any] | None
    applied: dict[str, Any] | None
    record_before: Callable[[dict[str, Any]], None]
    # Dry-run: read everything, compute the change, call no mutating API, report "would_change".
    dry_run: bool = False
    action: str = ""
    # The capacity ledger (core/capacity.py): what each recovery added to a group, to give back.
    capacity: Any = None
    # CheckGuardrails' read of the groups (ActionInput.fleets), or None
    fleets: dict[str, Any] | None = None

    @property
    def grant_key(self) -> str:
        """This step's key in the capacity ledger: its impairment and step."""
        return f"{self.impairment.impairment_id}#{self.step_index}"

    def grant(self, hand_back_after: int = 0) -> dict[str, Any]:
        """This step's entry in the capacity ledger: whose, and until when it counts (its
        hand-back after `hand_back_after` seconds, or its rollback within the recovery, then a
        day's hold, core.capacity.HOLD_SECONDS: after that the capacity is the group's)."""
        from core.capacity import HOLD_SECONDS

        now = clock.utc_now()
        return {
            "impairment_id": self.impairment.impairment_id,
            "step": self.step_index,
            "action": self.action,
            "granted_at": now.isoformat(),
            "expires": int(now.timestamp()) + hand_back_after + HOLD_SECONDS,
        }

    def result(
        self,
        phase: Phase,
        result: str,
        targets: list[str],
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        message: str = "",
    ) -> ActionResult:
        """This step's ActionResult, with the state before and after."""
        return ActionResult(
            action=self.action,
            phase=phase,
            step_index=self.step_index,
            result=result,  # type: ignore[arg-type]
            targets=targets,
            before=before or {},
            after=after or {},
            message=message,
        )


def result_of(ctx: Context, changed: bool) -> str:
    """The result word for a step that changed (or, in a dry run, would change) something."""
    if not changed:
        return "unchanged"
    return "would_change" if ctx.dry_run else "changed"


class Action(Struct, frozen=True):
    """An action's code: its parameters and its two phases. What it declares (its IAM, what it
    takes out of service, what Verify checks after it, what is handed back, its time-box) is its
    ActionSpec in actions/registry.py."""

    name: str
    params: type[ActionParams]
    apply: Callable[[Context], ActionResult]
    rollback: Callable[[Context], ActionResult]


def run(
    action: Action, phase: Phase, event: dict[str, Any], store: Any, managed_tag: tuple[str, str]
) -> dict[str, Any]:
    """Validate the input, replay a finished step, else run it and record it.

    A step writes a "started" record holding the state before the change before it changes
    anything; a retry (Lambda or state machine) reuses that state, so the change it computes is
    the same absolute change, and a finished step returns its recorded result unchanged.

    An apply does not read its record first: its first write is conditional on there being none
    (one call where a read and a write were two), and DynamoDB hands back the record it finds, if
    any. A retry thus learns of its earlier attempt at that write, made before anything changes
    (every apply records its state before changing it), and starts over from the recorded state.
    A rollback (rare, and deciding from its own earlier record) still reads it first.

    A step under way (recorded "started", then a transient error or a wait: CapacityNotReady)
    is remembered by the warm environment that recorded it, and the state machine's retry
    mostly lands there: it goes on from the remembered record without planning again or
    reading it, and its first write is conditional on the record still being the one it
    remembers (anything else there is taken up as above, as an earlier attempt's record).
    """
    request, params = _validated(action, phase, event)
    impairment_id, index = request.impairment.impairment_id, request.step.index
    logger.append_keys(impairment_id=impairment_id, action=action.name, phase=phase, step=index)
    remembered = _under_way().get((impairment_id, index, phase))
    previous = remembered or (store.get_action(impairment_id, index, phase) if phase == "rollback" else None)
    known = phase == "rollback" or remembered is not None
    while True:
        if previous and previous.get("status") == "done":
            logger.info("step already done; returning its recorded result")
            return previous["result"]
        record = _Record(store, impairment_id, index, phase, action.name, (previous or {}).get("before"), known)
        record.expected = (remembered or {}).get("started_at")
        try:
            return _run_once(action, phase, request, params, record, previous, managed_tag)
        except _RecordFound as found:
            previous, known, remembered = found.record, True, None
        except Exception:
            if record.known:
                raise
            # It failed before its first write (a transient error, say, that its earlier attempt's
            # change causes: a reboot under way): was there an earlier attempt to resume from?
            previous, known = store.get_action(impairment_id, index, phase), True
            if not previous or (previous.get("before") is None and previous.get("status") != "done"):
                raise


def _run_once(
    action: Action,
    phase: Phase,
    request: ActionInput,
    params: ActionParams,
    record: _Record,
    previous: dict[str, Any] | None,
    managed_tag: tuple[str, str],
) -> dict[str, Any]:
    if request.dry_run and phase == "rollback":
        # A dry run changed nothing, so there is nothing to undo.
        return record.result("unchanged", "dry run: nothing was changed")
    context = Context(
        impairment=request.impairment,
        params=params,
        step_index=record.index,
        managed_tag=managed_tag,
        before=(previous or {}).get("before"),
        applied=request.applied,
        record_before=record.started,
        dry_run=request.dry_run,
        action=action.name,
        capacity=getattr(record.store, "capacity", None),
        fleets=request.fleets,
    )
    result = _invoke(action, phase, context, record)
    retried = previous is not None and previous.get("status") == "started"
    if retried and result.result == "unchanged" and _landed_earlier(previous.get("before"), result.after):
        # An earlier attempt made the change and died before recording it: the change is this
        # step's (Finalize returns capacity and weights, a rollback undoes it, only for "changed").
        result.result = "changed"
        result.message = f"{result.message} (changed by an earlier attempt of this step)".strip()
    return record.done(result, request.dry_run)


def _validated(action: Action, phase: Phase, event: dict[str, Any]) -> tuple[ActionInput, ActionParams]:
    """The step's input and its params, or InvalidInput naming what is wrong."""
    try:
        request = ActionInput.model_validate(event)
        params = action.params.model_validate(request.step.params)
    except ValidationError as exc:
        raise InvalidInput(f"{action.name}.{phase}: invalid input: {exc.errors(include_url=False)}") from exc
    if request.step.action != action.name:
        raise InvalidInput(f"step {request.step.index} is {request.step.action!r}, not {action.name!r}")
    if phase == "rollback" and request.applied is not None:
        # apply's result, or (a step that failed half way) just the state it recorded before
        try:
            applied = Applied.model_validate(request.applied)
        except ValidationError as exc:
            raise InvalidInput(f"{action.name}.rollback: the applied step does not validate: {exc}") from exc
        if applied.action not in (None, action.name):
            raise InvalidInput(f"{action.name}.rollback: the applied step is {applied.action!r}'s, not this action's")
    return request, params


def _invoke(action: Action, phase: Phase, context: Context, record: _Record) -> ActionResult:
    """Run the phase; a permanent error is counted and recorded as the step's failure."""
    function = action.apply if phase == "apply" else action.rollback
    try:
        try:
            return function(context)
        except (KeyError, TypeError, AttributeError) as exc:
            if phase != "rollback":
                raise
            # The state before it restores is not one this action recorded: refuse, record it.
            raise PermanentError(
                f"{action.name}.rollback: the applied step's state before is not one this action recorded"
                f" ({type(exc).__name__}: {exc})"
            ) from exc
    except PermanentError as exc:
        record.failed(exc)
        _count(action.name, phase, "ActionFailed", record.started_at)
        raise


class _RecordFound(Exception):
    """The step's first write found a record of an earlier attempt: the runner starts over from it.
    Not a RecoveryError, so no action's error handling takes it for one of its own."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__("the step has a record of an earlier attempt")
        self.record = record


# Steps under way in this warm environment: (impairment, step, phase) -> their "started" record as
# this environment wrote it (status, before, started_at). Bounded: a step whose execution ended
# while it waited is never finished here.
_UNDER_WAY_MAX = 256


def _under_way() -> dict[tuple[str, int, str], dict[str, Any]]:
    from core import aws

    return aws.kept(__name__)


class _Record:
    """One step's record in the audit table: started (with the state before it changes anything),
    then failed or done. `known`: whether what the table holds of this step is known (read, or
    written by this attempt); until it is, a write is conditional and raises _RecordFound when an
    earlier attempt's record is there. `expected`: the started_at of the "started" record this
    environment remembers writing; the next write is conditional on the record still being it."""

    expected: str | None = None

    def __init__(
        self, store: Any, impairment_id: str, index: int, phase: Phase, action: str, before: Any, known: bool
    ) -> None:
        self.store, self.impairment_id, self.index, self.phase, self.action = store, impairment_id, index, phase, action
        self.before = before
        self.known = known
        self.started_at = clock.utc_now().isoformat()

    def _put(self, status: str, **fields: Any) -> None:
        item = {"status": status, "action": self.action, **fields}
        if self.expected is not None:
            found = self.store.put_action_if_started(self.impairment_id, self.index, self.phase, item, self.expected)
            if found is not None:  # not as this environment left it: taken up as an earlier attempt's
                self._remember(None)
                raise _RecordFound(found)
            self.expected = None
            self._remember(item)
            return
        if self.known:
            self.store.put_action(self.impairment_id, self.index, self.phase, item)
            self._remember(item)
            return
        # The first write of an attempt that has not read the record goes only where there is none:
        # an earlier attempt's state before is never written over, whatever this attempt ends in.
        found = self.store.put_first_action(self.impairment_id, self.index, self.phase, item)
        if found is not None and (found.get("before") is not None or found.get("status") == "done"):
            raise _RecordFound(found)
        if found is not None:  # an earlier attempt failed before recording any state: nothing to reuse
            self.store.put_action(self.impairment_id, self.index, self.phase, item)
        self.known = True
        self._remember(item)

    def _remember(self, item: dict[str, Any] | None) -> None:
        """Keep a "started" record with its state before for this environment's retry; forget any other."""
        under_way = _under_way()
        key = (self.impairment_id, self.index, self.phase)
        under_way.pop(key, None)
        if item and item["status"] == "started" and item.get("before") is not None:
            while len(under_way) >= _UNDER_WAY_MAX:
                under_way.pop(next(iter(under_way)))
            under_way[key] = {"status": "started", "before": item["before"], "started_at": item["started_at"]}

    def started(self, before: dict[str, Any]) -> None:
        self.before = before
        self._put("started", before=before, started_at=self.started_at)

    def failed(self, exc: Exception) -> None:
        finished_at = clock.utc_now().isoformat()
        self._put("failed", error=str(exc), started_at=self.started_at, before=self.before, finished_at=finished_at)

    def result(self, result: str, message: str) -> dict[str, Any]:
        """A result recorded nowhere (a dry run's rollback)."""
        return ActionResult(
            action=self.action,
            phase=self.phase,
            step_index=self.index,
            result=result,  # type: ignore[arg-type]
            targets=[],
            message=message,
            started_at=self.started_at,
            finished_at=clock.utc_now().isoformat(),
        ).model_dump(mode="json")

    def done(self, result: ActionResult, dry_run: bool) -> dict[str, Any]:
        """Record the step's result, count it, and return it as the task's output."""
        result.started_at = self.started_at
        result.finished_at = clock.utc_now().isoformat()
        payload = result.model_dump(mode="json")
        self._put(
            "done",
            result=payload,
            before=payload["before"],
            after=payload["after"],
            started_at=self.started_at,
            finished_at=payload["finished_at"],
        )
        if dry_run:
            emit("ActionDryRuns", "Count", 1, action=self.action, phase=self.phase)
        else:
            _count(self.action, self.phase, "ActionSucceeded", self.started_at)
        logger.info("step finished", result=payload["result"], targets=payload["targets"])
        return payload


def _landed_earlier(recorded: Any, after: dict[str, Any]) -> bool:
    """A retried step found nothing to change: did its earlier attempt change something? Yes when
    the state now differs from the state it recorded before (on the parts both describe), or when
    they describe nothing in common (the step's own record of what it was about to change is the
    evidence)."""
    if not isinstance(recorded, dict):
        return False
    shared = (set(recorded) & set(after)) - {"progress"}
    return any(recorded[key] != after[key] for key in shared) if shared else bool(recorded)


def _count(action: str, phase: Phase, outcome: str, started_at: str) -> None:
    """Per action type and phase: the step's outcome (ActionSucceeded or ActionFailed) and how long
    it took (ActionDuration, ms). Only a step's final outcome counts: a transient error is retried
    by the state machine and counted when the step ends; a replayed step was counted already."""
    from datetime import datetime

    elapsed_ms = max(0.0, (clock.utc_now() - datetime.fromisoformat(started_at)).total_seconds() * 1000)
    emit(outcome, "Count", 1, action=action, phase=phase)
    emit("ActionDuration", "Milliseconds", elapsed_ms, action=action, phase=phase)


def handlers(action: Action) -> tuple[Callable[..., dict], Callable[..., dict]]:
    """The two Lambda entry points of an action (one task each in the state machine)."""
    from core import settings as settings_module
    from core.entry import lambda_entry
    from core.store import RecoveryStore

    def make(phase: Phase) -> Callable[..., dict]:
        def handler(event: Any, context: Any) -> dict[str, Any]:
            settings = settings_module.load("table_name")
            return run(
                action,
                phase,
                event if isinstance(event, dict) else {},
                RecoveryStore(settings.table_name),
                (settings.managed_tag_key, settings.managed_tag_value),
            )

        handler.__name__ = f"{action.name}_{phase}"
        return lambda_entry(handler)

    return make("apply"), make("rollback")
