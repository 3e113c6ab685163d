"""Per recovery, the metrics a dashboard and an alarm read: one drill through the emulator, with
the EMF documents every function wrote asserted, dimensions included."""

from __future__ import annotations

import pytest

from recoveryctl import drill, scenario
from tests.emf import datapoints, named

pytestmark = pytest.mark.e2e


def test_a_recovery_emits_detection_outcome_and_action_metrics(synthesized):
    # Given the protected web-api group, one instance of which fails
    with drill.Drill(scenario.load("instance-failure"), synthesized.template_path) as run:
        # When its status-check alarm fires and the recovery runs to the end
        report = run.run()
        points = datapoints(run.emulator.log.getvalue())

    assert report["outcome"] == "recovered"
    # Then the detection is counted by type and severity, with its MTTD
    assert [
        p.value for p in named(points, "ImpairmentsDetected", impairment_type="instance_failure", severity="high")
    ] == [1.0]
    assert [p.value for p in named(points, "ImpairmentsDetected")] == [1.0]
    (mttd,) = named(points, "MTTD")
    assert mttd.value == pytest.approx(report["mttd_seconds"], abs=0.01)
    # And the recovery is counted once as a success, with its MTTR
    assert [p.value for p in named(points, "RecoveriesStarted")] == [1.0]
    assert [p.value for p in named(points, "RecoveriesSucceeded")] == [1.0]
    assert [p.value for p in named(points, "RecoveriesSucceeded", impairment_type="instance_failure")] == [1.0]
    (mttr,) = named(points, "MTTR")
    assert mttr.value == pytest.approx(report["mttr_seconds"], abs=0.01)
    # And its one action step, by action and phase: a success and a duration
    assert [p.value for p in named(points, "ActionSucceeded", action="replace_instance", phase="apply")] == [1.0]
    (duration,) = named(points, "ActionDuration", action="replace_instance", phase="apply")
    assert duration.unit == "Milliseconds"
    # And nothing counted a failure, a rollback, an escalation or a drill
    assert not [
        p
        for p in points
        if p.name in ("ActionFailed", "RecoveriesEscalated", "RecoveriesRolledBack", "DrillsDetected", "DrillMTTR")
    ]
    # And every metric is in the stack's namespace, with no id as a dimension
    assert {p.namespace for p in points} == {"ImpairmentRecovery"}
    ids = {report["impairment_id"], *report["workload"]["impaired_instances"]}
    assert not [p for p in points if ids & set(p.dimensions.values())]
