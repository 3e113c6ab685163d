"""What the on-call does during a drill: the scenario's operator actions (pause, plans, approve
or reject, stop an execution) and its answers to approval requests, done as recoveryctl does."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recoveryctl.emulator.runtime import Emulator
    from recoveryctl.scenario import Scenario


class Operator:
    """Drill's operator half (a mixin of Drill)."""

    # The Drill's (drill.py)
    emulator: Emulator | None
    home: Emulator | None
    scenario: Scenario
    workload: dict[str, Any]
    _answered: set[str]
    actions_done: list[dict[str, Any]]

    if TYPE_CHECKING:

        def regions(self) -> list[Emulator]: ...

        def _region(self, name: str | None) -> Emulator: ...

    def _act(self, action: Any) -> None:
        """An operator's action, done as recoveryctl does it (the store's switches, Step
        Functions' task tokens and StopExecution), recorded in the report's drill_actions."""
        emulator = self.emulator
        assert emulator is not None
        regions = [self._region(action.region)] if action.region else self.regions()
        reason = action.reason or f"{action.action} by the drill"
        done: list[str] = []
        if action.action in ("pause", "resume"):
            for region in regions:
                region.store().set_paused(action.action == "pause", reason, "drill")
                done.append(region.region)
        elif action.action in ("enable_plan", "disable_plan"):
            for region in regions:
                region.store().set_plan_enabled(action.plan, action.action == "enable_plan", "drill")
                done.append(region.region)
        elif action.action in ("approve", "reject"):
            for region in regions:
                for name, approval in self._pending_approvals(region):
                    self._answered.add(name)
                    done.append(self._answer(region, name, approval, action.action, reason))
        else:  # stop_execution
            for region in regions:
                sfn = region.client("stepfunctions")
                for execution in region.executions():
                    if execution["status"] == "RUNNING":
                        sfn.stop_execution(executionArn=execution["executionArn"], error="drill", cause=reason[:256])
                        done.append(execution["name"])
        self.actions_done.append(
            {
                "at_seconds": round(emulator.now, 3),
                "action": action.action,
                "plan": action.plan,
                "reason": reason,
                "done": done,
            }
        )

    def _answer_approvals(self) -> None:
        """The on-call's answer to a plan waiting for approval, as the scenario says (approve or
        reject, as `recoveryctl approve|reject` would), `approval_after_seconds` after the request
        is noticed (an idle hook: nothing else can run then). Without an answer, the approval's
        time-box passes on the virtual clock by itself."""
        emulator = self.emulator
        assert emulator is not None
        for region in self.regions():
            for name, _ in self._pending_approvals(region):
                self._answered.add(name)
                emulator.schedule(
                    emulator.now + self.scenario.approval_after_seconds,
                    functools.partial(self._answer_when_due, region, name),
                )

    def _answer_when_due(self, region: Emulator, name: str) -> None:
        approval = (region.store().get_impairment(name) or {}).get("approval") or {}
        if approval.get("status") == "pending":
            self._answer(region, name, approval, self.scenario.approval, "answered by the drill's on-call")

    def _pending_approvals(self, region: Emulator) -> list[tuple[str, dict[str, Any]]]:
        """(execution name, approval) of the running executions waiting for a human, not yet answered."""
        store = region.store()
        pending = []
        for execution in region.executions():
            if execution["status"] != "RUNNING" or execution["name"] in self._answered:
                continue
            approval = (store.get_impairment(execution["name"]) or {}).get("approval") or {}
            if approval.get("status") == "pending":
                pending.append((execution["name"], approval))
        return pending

    def _answer(self, region: Emulator, name: str, approval: dict[str, Any], decision: str, reason: str) -> str:
        """Approve or reject with the task token recorded on the impairment (SendTaskSuccess /
        SendTaskFailure) and record who decided; returns what happened."""
        from botocore.exceptions import ClientError

        from core import clock
        from core.errors import ApprovalRejected

        store = region.store()
        sfn = region.client("stepfunctions")
        answered = {**approval, "by": "drill", "at": clock.utc_now().isoformat(), "reason": reason}
        try:
            if decision == "approve":
                store.update_impairment(name, approval={**answered, "status": "approved"})
                sfn.send_task_success(
                    taskToken=approval["task_token"], output=json.dumps({"approved": True, "by": "drill"})
                )
            else:
                store.update_impairment(name, approval={**answered, "status": "rejected"})
                sfn.send_task_failure(
                    taskToken=approval["task_token"], error=ApprovalRejected.__name__, cause=reason[:256]
                )
        except ClientError as exc:  # the token's task is over (timed out, aborted)
            return f"{name}: too late ({exc.response.get('Error', {}).get('Code')})"
        return f"{name}: {'approved' if decision == 'approve' else 'rejected'}"
