"""End to end: a storm pages once at once and once in summary, not once per impairment, and
every impairment's record names the page that carried it (the real state machine, its Wait
until the storm window's end on the emulator's virtual clock)."""

from __future__ import annotations

import pytest

from recoveryctl import drill, scenario

pytestmark = pytest.mark.e2e


def test_six_escalations_of_one_cause_page_twice_and_each_record_names_its_page(synthesized):
    # Given six of a group of eight stopped, each stop announced by EC2 (six impairments, each
    # stopped by fail open)
    with drill.Drill(scenario.load("storm-one-page"), synthesized.template_path) as run:
        # When the drill runs until every execution ended (the first one's after the window)
        report = run.run()
        from core.store import RecoveryStore

        store = RecoveryStore(run.emulator.outputs["RecoveryTableName"])
        records = {e["name"]: store.get_impairment(e["name"]) for e in report["executions"]}
        (leader,) = [r for r in records.values() if r["page_status"] == "sent"]
        held = store.storms.get(leader["storm"]["key"], leader["storm"]["storm_id"])

    # Then two pages: the first escalation at once, then one summary listing the five others
    assert report["expectation_met"], report["expectations"]
    first, summary = report["pages"]
    assert first["kind"] == "escalation" and first["impairment_id"] == leader["impairment_id"]
    assert summary["kind"] == "storm_summary"
    others = sorted(set(records) - {leader["impairment_id"]})
    assert len(others) == 5 and sorted(summary["lists"]) == others
    # sent at the window's end, not at once
    assert leader["storm"]["leader"] is True and held["summary_status"] == "sent"
    assert held["summary_sent_at"] >= leader["storm"]["summary_at"].replace("Z", "")
    # and every other record says which page carries it: the storm's summary
    for impairment_id in others:
        record = records[impairment_id]
        assert record["outcome"] == "escalated"
        assert record["page_status"] == "aggregated"
        assert record["storm"]["storm_id"] == leader["storm"]["storm_id"]
        assert record["storm"]["leader_impairment_id"] == leader["impairment_id"]
