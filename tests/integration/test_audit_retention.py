"""The audit trail is kept for the configured period: every impairment and action record carries
the table's TTL attribute, `expiration`, AUDIT_RETENTION_DAYS after it was written."""

from __future__ import annotations

import pytest

from core.store import RecoveryStore
from tests.builders import TABLE_NAME, get_item, impairment

DAY = 86400


@pytest.mark.parametrize(("days", "expected_days"), [(None, 365), ("30", 30)])
def test_records_expire_after_the_retention_period(store, frozen_clock, monkeypatch, days, expected_days):
    if days is not None:
        monkeypatch.setenv("AUDIT_RETENTION_DAYS", days)
    model = impairment()
    now = int(frozen_clock.now.timestamp())

    store.put_impairment(model.model_dump(mode="json"), status="detected")
    store.put_action(model.impairment_id, 0, "apply", {"status": "done", "before": {"a": 1}, "after": {"a": 2}})

    record = get_item(f"IMPAIRMENT#{model.impairment_id}", "RECORD")
    action = get_item(f"IMPAIRMENT#{model.impairment_id}", "ACTION#00#apply")
    assert int(record["expiration"]) == now + expected_days * DAY
    assert int(action["expiration"]) == now + expected_days * DAY
    # and the record is whole: the impairment as detected, drill flag included
    assert store.get_impairment(model.impairment_id)["impairment"]["drill"] is False


def test_zero_keeps_records_forever(store, monkeypatch):
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "0")
    model = impairment()
    store.put_impairment(model.model_dump(mode="json"), status="detected")
    store.put_action(model.impairment_id, 0, "apply", {"status": "started"})
    assert "expiration" not in get_item(f"IMPAIRMENT#{model.impairment_id}", "RECORD")
    assert "expiration" not in get_item(f"IMPAIRMENT#{model.impairment_id}", "ACTION#00#apply")


def test_a_bad_retention_setting_is_refused_before_anything_is_written(store, monkeypatch):
    from core.errors import InvalidInput

    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "-5")
    model = impairment()
    with pytest.raises(InvalidInput, match="AUDIT_RETENTION_DAYS"):
        RecoveryStore(TABLE_NAME).put_impairment(model.model_dump(mode="json"), status="detected")
    assert get_item(f"IMPAIRMENT#{model.impairment_id}", "RECORD") is None
