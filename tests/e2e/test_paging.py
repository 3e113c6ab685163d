"""End to end: a deployment that pages PagerDuty, drilled in the emulator. The escalation reaches a
local server answering as the Events API v2 through the real path (the topic, the notifier's queue
subscribed with raw delivery, the notifier invoked by its event source mapping), and when the
alarm returns to OK the same dedup key is resolved."""

from __future__ import annotations

import pytest

from recoveryctl import drill, scenario

pytestmark = pytest.mark.e2e


def test_an_escalation_triggers_pagerduty_and_its_clearing_resolves_it(synthesized, drill_synth_cache):
    with drill.Drill(scenario.load("paging-pagerduty"), None, cache_dir=drill_synth_cache, seed=1) as run:
        report = run.run()
        received = run.pagerduty.received if run.pagerduty else []
        messages_left = run.emulator.dead_letter_count()

    assert report["expectation_met"], report["expectations"]
    impairment_id = report["impairment_id"]
    # the trigger, keyed by the impairment, with its context; then the resolve of the same key
    trigger, resolve = received
    assert trigger["status"] == resolve["status"] == 202
    assert (trigger["event"]["event_action"], trigger["event"]["dedup_key"]) == ("trigger", impairment_id)
    details = trigger["event"]["payload"]["custom_details"]
    assert details["impairment"]["impairment_id"] == impairment_id
    assert [a.get("step_index") for a in details["rollbacks"]] != []
    assert trigger["event"]["links"][0]["href"].startswith("https://us-east-1.console.aws.amazon.com/states/")
    assert resolve["event"] == {
        "routing_key": trigger["event"]["routing_key"],
        "event_action": "resolve",
        "dedup_key": impairment_id,
    }
    assert report["pagerduty"][1] == {"status": 202, "event_action": "resolve", "dedup_key": impairment_id}
    assert [r["impairment_id"] for r in report["resolves"]] == [impairment_id]
    assert messages_left == 0  # nothing in any dead-letter queue, the notifier's included
