"""Local state: what drills in the emulator recorded, and the switches the next drill starts with.

Each drill runs in a fresh emulator that is gone when it ends, so the CLI keeps what it recorded
under a state directory (default `.recoveryctl/` in the current directory, or
RECOVERYCTL_STATE_DIR) for `status`, `show` and `report`, one file per drill: drills never
rewrite each other's records.

Layout: docs/operations.md#drills
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "RECOVERYCTL_STATE_DIR"
DEFAULT_STATE_DIR = Path(".recoveryctl")
DEFAULT_SWITCHES: dict[str, Any] = {"paused": False, "disabled_plans": []}


class StateError(RuntimeError):
    """The local state cannot be read or written."""


def jsonable(value: Any) -> Any:
    """Plain JSON values: datetimes as ISO 8601, DynamoDB numbers as int or float."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class LocalState:
    """The state directory. Nothing is created until something is written."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)

    @property
    def runs_dir(self) -> Path:
        return self.directory / "runs"

    @property
    def switches_path(self) -> Path:
        return self.directory / "switches.json"

    # --- switches ----------------------------------------------------------------------------
    def switches(self) -> dict[str, Any]:
        if not self.switches_path.exists():
            return dict(DEFAULT_SWITCHES)
        return {**DEFAULT_SWITCHES, **self._read(self.switches_path)}

    def set_switches(self, **fields: Any) -> dict[str, Any]:
        switches = {**self.switches(), **fields, "changed_at": datetime.now(UTC).isoformat()}
        self._write(self.switches_path, switches)
        return switches

    def seed(self, emulator: Any) -> dict[str, Any]:
        """Write the switches into the emulator's recovery table (its CONTROL / SWITCHES item),
        so the drill about to run starts with them."""
        switches = self.switches()
        if switches == DEFAULT_SWITCHES:
            return switches
        item = {**json.loads(json.dumps(switches), parse_float=Decimal), "pk": "CONTROL", "sk": "SWITCHES"}
        for region in emulator.every_region():  # a replicated item: in every region's replica
            region.store().table.put_item(Item=item)
        return switches

    # --- drills ------------------------------------------------------------------------------
    def record_drill(self, emulator: Any, report: dict[str, Any]) -> Path:
        """Persist what a finished drill recorded, in every region it ran a stack in (each
        region's recoveries are in its own replica); returns the run file.

        The drill ran on a virtual clock that fast-forwarded its waits, so its records are dated
        ahead of wall time (by an hour, say, for a plan that gives capacity back after an hour).
        Kept as they are, they would be in the future, and `status --since 5m` would list a drill
        for as long as its virtual clock ran ahead. Every timestamp of the run is shifted back by
        that much: the drill ends when it was recorded, and its times keep their order and
        distances (MTTD, MTTR, each state's duration)."""
        from core import clock

        items: list[dict[str, Any]] = []
        executions = []
        for region in emulator.every_region():
            items.extend(_audit_trail(region, report))
            sfn = region.client("stepfunctions")
            for summary in region.executions():
                described = sfn.describe_execution(executionArn=summary["executionArn"])
                described.pop("ResponseMetadata", None)
                history = region.history(summary["executionArn"])
                described["history"] = history
                if history:  # its dates on the drill's clock, as its history is (moto's are wall time)
                    described["startDate"] = history[0]["timestamp"]
                    if described.get("status") != "RUNNING":
                        described["stopDate"] = history[-1]["timestamp"]
                executions.append(jsonable(described))
        now = datetime.now(UTC)
        # The drill's clock at its end becomes the wall clock at this moment (whichever way they
        # differ: a virtual clock that does not start at the wall time is moved forward as well).
        shift = (now - clock.utc_now()).total_seconds()
        run = {
            "run_id": f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{report.get('scenario')}",
            "scenario": report.get("scenario"),
            "recorded_at": now.isoformat(),
            # how far every time below was moved (negative: back; the drill's clock ran ahead)
            "clock_shift_seconds": round(shift, 6),
            "outcome": report.get("outcome"),
            "impairment_id": report.get("impairment_id"),
            "expectation_met": report.get("expectation_met"),
            "items": shift_times(items, shift),
            "executions": shift_times(executions, shift),
            "escalations": jsonable(report.get("escalations") or []),
        }
        path = self.runs_dir / f"{_safe(run['run_id'])}.json"
        self._write(path, run)
        return path

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded drill, oldest first."""
        if not self.runs_dir.is_dir():
            return []
        return [self._read(p) for p in sorted(self.runs_dir.glob("*.json"))]

    def exists(self) -> bool:
        return self.runs_dir.is_dir() and any(self.runs_dir.glob("*.json"))

    # --- files -------------------------------------------------------------------------------
    def _read(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise StateError(f"{path} is not valid JSON ({exc}): delete it, or the whole {self.directory}") from exc
        if not isinstance(data, dict):
            raise StateError(f"{path} is not a recoveryctl state file: delete it")
        return data

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data, indent=1, default=str))
            temporary.replace(path)  # atomic: a reader never sees half a file
        except OSError as exc:
            raise StateError(
                f"cannot write {path}: {exc.strerror} (set {STATE_DIR_ENV} or --state-dir to a writable directory)"
            ) from exc


def _audit_trail(emulator: Any, report: dict[str, Any]) -> list[dict[str, Any]]:
    """A region's recorded impairments and actions, marked as the drill's (locks and switches are
    the emulator's working state, not kept)."""
    items = [i for i in scan_table(emulator.store().table) if str(i.get("pk", "")).startswith("IMPAIRMENT#")]
    for item in items:
        if item.get("sk") == "RECORD":
            item["drill"] = True
            item["drill_scenario"] = report.get("scenario")
            item["region"] = emulator.region
    return items


_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$")


def shift_times(value: Any, seconds: float) -> Any:
    """`value` with every ISO 8601 timestamp in it (a whole string: records, histories, signal
    times; not text that quotes one) moved by `seconds`, written as it was (its offset style and
    its precision)."""
    if isinstance(value, dict):
        return {k: shift_times(v, seconds) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_times(v, seconds) for v in value]
    if not seconds or not isinstance(value, str):
        return value
    match = _TIMESTAMP.match(value)
    if not match:
        return value
    day, time_of_day, fraction, zone = match.groups()
    offset = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        moment = datetime.fromisoformat(f"{day}T{time_of_day}{fraction or ''}{offset}")
    except ValueError:
        return value
    moved = moment + timedelta(seconds=seconds)
    text = moved.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += f".{moved.microsecond:06d}"[: len(fraction)]
    return text + zone


def scan_table(table: Any) -> list[dict[str, Any]]:
    """Every item of a DynamoDB table (consistent reads, every page), as plain JSON values."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        items.extend(jsonable(page.get("Items", [])))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
