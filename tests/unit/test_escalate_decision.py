"""Escalate's decision, without I/O: for each outcome, what is recorded, released, ended as
failed, counted and paged."""

from __future__ import annotations

from orchestration.escalate import decide

NOW = "2026-01-01T00:00:00+00:00"
IMPAIRMENT = {
    "impairment_id": "imp-1",
    "workload": "web",
    "affected_resources": [{"resource_type": "ec2:instance", "resource_id": "i-1"}],
}
FAILED = {"Error": "PermanentError", "Cause": "ec2:TerminateInstances failed: boom"}


def test_a_failed_action_is_recorded_released_ended_counted_and_paged():
    event = {
        "impairment": IMPAIRMENT,
        "error": FAILED,
        "rollback_steps": [],
        "rollbacks": [{"step": 0}],
        "admission": {"lock_keys": ["ec2:instance/i-1", "asg/web"]},
    }
    escalation = decide(event, {"guardrails_tripped": []}, NOW)
    assert escalation.kind == "escalated"
    assert escalation.paged is True
    assert escalation.update["status"] == "escalated"
    assert escalation.update["outcome"] == "escalated"
    assert escalation.update["page_status"] == "pending"
    assert escalation.update["rolled_back"] is True
    assert escalation.release == ["asg/web", "ec2:instance/i-1"]
    assert escalation.fail_started == "PermanentError: ec2:TerminateInstances failed: boom"
    assert escalation.metrics == ("RecoveriesEscalated", "RecoveriesFailed", "RecoveriesRolledBack")
    assert escalation.result["paged"] is True
    assert escalation.message["summary"].startswith("Automatic recovery of web needs a human:")


def test_a_retried_escalation_counts_nothing_again():
    escalation = decide({"impairment": IMPAIRMENT, "error": FAILED}, {"page_status": "failed"}, NOW)
    assert escalation.metrics == ()
    assert escalation.paged is True


def test_paused_is_skipped_but_paged():
    escalation = decide({"impairment": IMPAIRMENT, "error": {"Error": "RecoveryPaused", "Cause": "paused"}}, {}, NOW)
    assert escalation.update["outcome"] == "skipped"
    assert escalation.update["status"] == "escalated"
    assert escalation.paged is True
    assert escalation.metrics == ("RecoveriesEscalated",)


def test_a_guardrail_already_escalated_in_its_window_is_recorded_released_not_paged():
    record = {"page": False, "guardrails_tripped": ["blast_radius"], "lock_keys": ["ec2:instance/i-1"]}
    error = {"Error": "GuardrailTripped", "Cause": "blast radius"}
    escalation = decide({"impairment": IMPAIRMENT, "error": error}, record, NOW)
    assert escalation.paged is False
    assert escalation.update["status"] == "skipped"
    assert escalation.update["outcome"] == "skipped"
    assert escalation.update["page_status"] == "not_needed"
    assert "not paged again" in escalation.update["reason"]
    assert escalation.release == ["ec2:instance/i-1"]
    assert escalation.result["paged"] is False
    assert escalation.result["guardrails_tripped"] == ["blast_radius"]


def test_a_rejected_approval_names_the_approval_guardrail():
    event = {
        "impairment": IMPAIRMENT,
        "plan": {"name": "replace"},
        "approval_error": {"Error": "ApprovalRejected", "Cause": "not now"},
    }
    escalation = decide(event, {}, NOW)
    assert escalation.update["guardrails_tripped"] == ["approval"]
    assert escalation.reason == "approval: plan replace was rejected (not now); nothing was changed"
    assert escalation.fail_started is None
    assert escalation.metrics == ("RecoveriesEscalated",)


def test_capacity_not_returned_keeps_the_outcome_and_releases_nothing():
    event = {"impairment": IMPAIRMENT, "return_error": {"Error": "PermanentError", "Cause": "no"}}
    escalation = decide(event, {"outcome": "recovered"}, NOW)
    assert escalation.kind == "capacity_not_returned"
    assert escalation.update == {"capacity_returned": False, "capacity_note": escalation.reason}
    assert escalation.release is None
    assert escalation.metrics == ()
    assert escalation.paged is True
    assert escalation.result["outcome"] == "recovered"


def test_an_input_without_a_valid_impairment_is_recorded_under_an_id_of_its_own_and_paged():
    escalation = decide({"impairment": {"impairment_id": "no spaces allowed"}}, {}, NOW)
    assert escalation.kind == "unidentified"
    assert escalation.impairment_id.startswith("unidentified-")
    assert escalation.put["status"] == "escalated"
    assert escalation.put["impairment"]["workload"] == "unidentified"
    assert escalation.release is None
    assert escalation.paged is True
    assert escalation.message["impairment_id"] == "unknown"
    assert escalation.result["guardrails_tripped"] == []
    assert decide({"impairment": {"impairment_id": "no spaces allowed"}}, {}, NOW) == escalation


def test_an_impairment_with_no_record_is_recorded_whole_not_as_a_stub():
    # Given an execution whose impairment was never recorded (Start or Admit did not get that far)
    escalation = decide({"impairment": IMPAIRMENT, "error": FAILED}, {}, NOW)

    # Then the record is put whole: the execution's impairment with the outcome, not an update
    # that would leave a record of the outcome alone
    assert escalation.kind == "escalated"
    assert escalation.put["impairment"] == IMPAIRMENT
    assert escalation.put["status"] == "escalated"
    assert escalation.put["outcome"] == "escalated"
    assert escalation.put["page_status"] == "pending"
    assert {k: v for k, v in escalation.put.items() if k != "impairment"} == escalation.update


def test_a_recorded_impairment_is_updated_not_put_again():
    assert decide({"impairment": IMPAIRMENT, "error": FAILED}, {"status": "recovering"}, NOW).put is None


def test_an_unrecorded_impairment_with_no_workload_is_recorded_under_an_unknown_one():
    # Capacity not returned (a recovery that verified), yet no record: the put still has a workload
    event = {"impairment": {"impairment_id": "imp-2"}, "return_error": FAILED}
    escalation = decide(event, {}, NOW)
    assert escalation.kind == "capacity_not_returned"
    assert escalation.put["impairment"] == {"impairment_id": "imp-2", "workload": "unknown"}
    assert escalation.put["capacity_returned"] is False


def test_an_impairment_id_that_is_not_a_string_is_unidentified_not_the_id_its_text_would_make():
    # None's str() is "None", a valid-looking id: the escalation must not return None as its id
    # (nothing could find its record) nor record it under an id derived elsewhere
    for value in (None, 12345):
        escalation = decide({"impairment": {**IMPAIRMENT, "impairment_id": value}}, {}, NOW)
        assert escalation.kind == "unidentified"
        assert escalation.result["impairment_id"] == escalation.impairment_id
        assert escalation.impairment_id.startswith("unidentified-")
