"""The recovery workflow: a Standard state machine that admits an impairment with its plan,
runs each action as its own Lambda task, verifies, and on failure rolls back in reverse order
and escalates. Plans are data: adding an action means declaring it in actions/registry.py, from
which this construct builds its tasks, their roles, and what Verify and ReturnCapacity may call
after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from actions.registry import ACTIONS
from actions.specs import ActionSpec, IamGrant
from infra.constants import CLEARED, DETECTED, EVENT_SOURCE
from infra.constructs.blocking import BLOCKED, GUARDRAIL_READS, wait_while_blocked
from infra.constructs.functions import FunctionFactory
from infra.constructs.storms import SUMMARY_INPUT, storm_leader_waits
from infra.constructs.workflow_parts import grant_page as _grant_page
from infra.constructs.workflow_parts import retry_transient as _retry_transient
from infra.constructs.workflow_parts import state_machine as _state_machine
from infra.permissions import allow as _allow
from infra.permissions import allow_declared, allow_hand_backs, allow_verification

# Verify's own checks, after any plan: the group the impairment is about, its target group, ECS
# service and database, a zone id's name. What it checks after an action is the action's to
# declare (its Verification), with the IAM that needs.
VERIFY_READS = (
    "autoscaling:DescribeAutoScalingInstances",
    "elasticloadbalancing:DescribeTargetHealth",
    "ecs:DescribeServices",
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
    "ec2:DescribeAvailabilityZones",
)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class RecoveryWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: FunctionFactory,
        table: dynamodb.ITableV2,
        topic: sns.ITopic,
        bus: events.IEventBus,
        dead_letters: sqs.IQueue,
        managed_tag: tuple[str, str],
        timeout_seconds: int,
        cleanup_timeout_seconds: int = 3600,
        hosted_zones: Sequence[str] = (),
        plan_grants: Mapping[str, Sequence[IamGrant]] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._factory = functions
        self.managed_tag = managed_tag
        # Where a DNS failover may change records (infra/permissions.py ZONE_SCOPED).
        self.hosted_zones = list(hosted_zones)
        # What the plans' steps name, by action (infra/permissions.py plan_grants).
        self.plan_grants = dict(plan_grants or {})
        self.functions: dict[str, lambda_.Function] = {}

        admit = self._function(
            "Admit", "orchestration.admit.handler", "Validate an impairment, select its plan, record and lock"
        )
        # 60 s: after an ARC failover it reads the routing controls through the cluster's endpoints,
        # trying each in turn (actions/failover.py allows itself 40 s for that)
        verify = self._function(
            "Verify", "orchestration.verify.handler", "Check the workload is healthy again", timeout_seconds=60
        )
        finalize = self._function("Finalize", "orchestration.finalize.handler", "Record the recovery and MTTR")
        prepare = self._function("PrepareRollback", "orchestration.prepare_rollback.handler", "List steps to undo")
        escalate = self._function("Escalate", "orchestration.escalate.handler", "Page a human with the context")
        # A storm's one summary page, after its window (its first escalation paged at once)
        self._summarize = self._function("SummarizeStorm", "orchestration.storm.handler", "Page a storm's summary")
        for function in (admit, verify, finalize, prepare, escalate, self._summarize):
            table.grant_read_write_data(function)
        _grant_page(escalate, topic)
        _grant_page(self._summarize, topic)
        _grant_page(finalize, topic)  # resolves what was paged about a recovery that verified
        allow_verification(verify, VERIFY_READS, ACTIONS.values(), managed_tag)

        apply_tasks: dict[str, sfn.IChainable] = {}
        rollback_functions: dict[str, lambda_.Function] = {}
        for name, spec in sorted(ACTIONS.items()):
            apply_fn = self._action_function(spec, "apply", table)
            rollback_functions[name] = self._action_function(spec, "rollback", table)
            apply_tasks[name] = self._task(_pascal(name), apply_fn, None, None)

        # --- the flow ---
        prepare_task, escalate_task = self._rollback_chain(self, "", prepare, escalate, rollback_functions)

        recovered = sfn.Succeed(self, "Recovered")
        finalize_task = self._task("Finalize", finalize, None, "$.resolution")
        # Verified, but recording it failed: a human is told (the workload is healthy).
        finalize_task.add_catch(escalate_task, errors=["States.ALL"], result_path="$.finalize_error")
        # Resource lifecycle cleanup: emergency capacity goes back once the workload stayed healthy.
        return_capacity = self._function(
            "ReturnCapacity",
            "orchestration.return_capacity.handler",
            "Return emergency capacity and expire time-boxed routing after a recovery",
        )
        table.grant_read_write_data(return_capacity)
        # It runs the hand-backs' rollbacks, after Verify's checks (the target group's too).
        # It checks the workload as Verify does (verify.check) before handing anything back.
        allow_hand_backs(return_capacity, list(VERIFY_READS), ACTIONS.values(), managed_tag, self.hosted_zones)
        wait_to_return = sfn.Wait(
            self,
            "WaitBeforeReturningCapacity",
            time=sfn.WaitTime.seconds_path("$.resolution.return_capacity_after_seconds"),
        )
        return_task = self._task("ReturnCapacity", return_capacity, None, "$.capacity_returned")
        # Returning the capacity failed: the recovery stands, a human is told what is still out.
        not_returned = self._task("CapacityNotReturned", escalate, None, "$.capacity_escalation")
        return_task.add_catch(not_returned, errors=["States.ALL"], result_path="$.return_error")
        not_returned.next(recovered)
        wait_to_return.next(return_task.next(recovered))
        finalize_task.next(
            sfn.Choice(self, "EmergencyCapacity?")
            .when(sfn.Condition.number_greater_than("$.resolution.return_capacity_after_seconds", 0), wait_to_return)
            .otherwise(recovered)
        )

        wait = sfn.Wait(self, "WaitBeforeVerify", time=sfn.WaitTime.seconds_path("$.plan.verify.wait_seconds"))
        verify_task = self._task("Verify", verify, None, "$.verification")
        verified = (
            sfn.Choice(self, "Verified?")
            .when(sfn.Condition.boolean_equals("$.verification.healthy", True), finalize_task)
            .when(sfn.Condition.boolean_equals("$.verification.retry", True), wait)
            .otherwise(prepare_task)
        )
        wait.next(verify_task)
        verify_task.add_catch(prepare_task, errors=["States.ALL"], result_path="$.error")
        verify_task.next(verified)

        run_actions = self._map(
            "RunActions",
            "$.plan.steps",
            "$.actions",
            # CheckGuardrails' read of the groups: an action reads only what it acts on again
            {"step.$": "$$.Map.Item.Value", "fleets.$": "$.guardrails.fleets"},
            self._router("RouteAction", apply_tasks),
        )
        run_actions.add_catch(prepare_task, errors=["States.ALL"], result_path="$.error")
        run_actions.next(wait)

        # --- guardrails, then a human's approval where the plan asks for it ---
        guard = self._function(
            "CheckGuardrails", "orchestration.check_guardrails.handler", "Blast radius, fail open, rate limits, ..."
        )
        table.grant_read_write_data(guard)
        _grant_page(guard, topic)
        _allow(guard, list(GUARDRAIL_READS), managed_tag)
        approval = self._function(
            "RequestApproval", "orchestration.request_approval.handler", "Ask a human to approve a high-risk plan"
        )
        table.grant_read_write_data(approval)
        _grant_page(approval, topic)
        request_approval = tasks.LambdaInvoke(
            self,
            "RequestApproval",
            lambda_function=approval,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {
                    "impairment.$": "$.impairment",
                    "plan.$": "$.plan",
                    "execution.$": "$$.Execution.Id",
                    "task_token": sfn.JsonPath.task_token,
                }
            ),
            task_timeout=sfn.Timeout.at("$.plan.approval_timeout_seconds"),
            result_path="$.approval",
            retry_on_service_exceptions=False,
        )
        _retry_transient(request_approval)
        request_approval.add_catch(escalate_task, errors=["States.ALL"], result_path="$.approval_error")
        # A plan may wait hours for a human: the fleet, the windows and the other recoveries are
        # judged again, as they are when it is approved, before anything is changed.
        recheck = self._task("RecheckGuardrails", guard, None, "$")
        recheck.add_catch(escalate_task, errors=["States.ALL"], result_path="$.error")
        request_approval.next(recheck)
        recheck.next(
            sfn.Choice(self, "BlockedAfterApproval?")
            .when(BLOCKED, wait_while_blocked(self, "WaitWhileBlockedAfterApproval", recheck))
            .otherwise(run_actions)
        )
        guard_task = self._task("CheckGuardrails", guard, None, "$")
        guard_task.add_catch(escalate_task, errors=["States.ALL"], result_path="$.error")
        guard_task.next(
            sfn.Choice(self, "ApprovalRequired?")
            .when(BLOCKED, wait_while_blocked(self, "WaitWhileBlocked", guard_task))
            .when(sfn.Condition.boolean_equals("$.plan.requires_approval", True), request_approval)
            .otherwise(run_actions)
        )

        admit_task = self._task(
            "Admit",
            admit,
            sfn.TaskInput.from_object(
                # the execution's input too: what it may take over (supersedes), when StartRecovery says
                {"impairment.$": "$.impairment", "input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id"}
            ),
            # Its result is the state (the execution's input) with $.admission and $.plan added:
            # one task admits and selects the plan, without a Pass state to merge them.
            "$",
        )
        admit_task.add_catch(
            sfn.Succeed(self, "Skipped", comment="Another recovery holds the resource"),
            errors=["RecoveryInProgress"],
            result_path="$.error",
        )
        admit_task.add_catch(escalate_task, errors=["RecoveryPaused"], result_path="$.error")
        admit_task.add_catch(
            sfn.Fail(
                self, "Rejected", error="InvalidImpairment", cause="The execution input is not a valid impairment"
            ),
            errors=["InvalidInput"],
            result_path="$.error",
        )
        # Anything else (no plan covers it, InvalidPlan, the table unreachable after every retry):
        # a human is paged.
        admit_task.add_catch(escalate_task, errors=["States.ALL"], result_path="$.error")
        admit_task.next(guard_task)

        log_group = logs.LogGroup(
            self, "ExecutionLogs", retention=functions.retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.state_machine = _state_machine(
            self,
            admit_task,
            timeout_seconds,
            log_group,
            "Impairment recovery: admit, plan, act, verify; roll back and escalate on failure",
        )

        # --- after an execution died (failed in a state with no catch, timed out, aborted): record
        # it, roll back what its audit trail says it applied, release its locks, page ---
        cleanup = Construct(self, "Cleanup")
        cleanup_first, _ = self._rollback_chain(cleanup, "Cleanup", prepare, escalate, rollback_functions)
        self.cleanup_state_machine = _state_machine(
            cleanup,
            cleanup_first,
            cleanup_timeout_seconds,
            log_group,
            "After a recovery execution died: roll back what it applied, release, escalate",
        )
        ended = self._function(
            "ExecutionEnded",
            "orchestration.execution_ended.handler",
            "After a recovery execution died: record it, roll back, release its locks, page",
            dead_letter_queue=dead_letters,
            retry_attempts=2,
            max_event_age=Duration.hours(6),
        )
        ended.add_environment("STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
        ended.add_environment("CLEANUP_STATE_MACHINE_ARN", self.cleanup_state_machine.state_machine_arn)
        table.grant_read_write_data(ended)
        _grant_page(ended, topic)
        self.cleanup_state_machine.grant_start_execution(ended)
        self.execution_ended = ended
        self.ended_rule = events.Rule(
            self,
            "ExecutionsEnded",
            description="A recovery execution failed, timed out or was aborted: clean up after it",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                    "stateMachineArn": [
                        self.state_machine.state_machine_arn,
                        self.cleanup_state_machine.state_machine_arn,
                    ],
                },
            ),
        )
        self.ended_rule.add_target(
            targets.LambdaFunction(
                ended, dead_letter_queue=dead_letters, retry_attempts=8, max_event_age=Duration.hours(2)
            )
        )

        # --- the trigger: impairment events on the bus start (or record) a recovery ---
        start = self._function(
            "StartRecovery",
            "orchestration.start.handler",
            "Start the recovery of a detected impairment (execution named by its id)",
            dead_letter_queue=dead_letters,
            retry_attempts=2,
            max_event_age=Duration.hours(1),
        )
        start.add_environment("STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
        self.state_machine.grant_start_execution(start)
        table.grant_read_write_data(start)
        _grant_page(start, topic)  # resolves what was paged about an impairment whose signal cleared
        self.start_function = start
        self.trigger = events.Rule(
            self,
            "ImpairmentEvents",
            event_bus=bus,
            description="Impairment events start a recovery",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[DETECTED, CLEARED]),
        )
        self.trigger.add_target(
            targets.LambdaFunction(
                start, dead_letter_queue=dead_letters, retry_attempts=8, max_event_age=Duration.hours(2)
            )
        )

    def _rollback_chain(
        self,
        scope: Construct,
        prefix: str,
        prepare: lambda_.IFunction,
        escalate: lambda_.IFunction,
        rollback_functions: dict[str, lambda_.Function],
    ) -> tuple[tasks.LambdaInvoke, tasks.LambdaInvoke]:
        """PrepareRollback -> Rollback (one task per step, newest first) -> Escalate -> Escalated:
        the recovery's failure path, and the whole of the cleanup after a dead execution. Returns
        its first and its Escalate task."""
        escalated = sfn.Fail(
            scope,
            f"{prefix}Escalated",
            error="RecoveryEscalated",
            cause="Automatic recovery did not succeed; a human was paged",
        )
        escalate_task = self._task(f"{prefix}Escalate", escalate, None, "$.escalation", scope)
        summarize = self._task(f"{prefix}SummarizeStorm", self._summarize, SUMMARY_INPUT, "$.storm_summary", scope)
        escalate_task.next(storm_leader_waits(scope, prefix, summarize, escalated))
        rollback_tasks: dict[str, sfn.IChainable] = {
            name: self._task(f"{prefix}Rollback{_pascal(name)}", function, None, None, scope)
            for name, function in sorted(rollback_functions.items())
        }
        rollback_map = self._map(
            f"{prefix}Rollback",
            "$.rollback_steps",
            "$.rollbacks",
            {"step.$": "$$.Map.Item.Value.step", "applied.$": "$$.Map.Item.Value.applied"},
            self._router(f"{prefix}RouteRollback", rollback_tasks, scope),
            scope,
        )
        rollback_map.add_catch(escalate_task, errors=["States.ALL"], result_path="$.rollback_error")
        rollback_map.next(escalate_task)
        prepare_task = self._task(f"{prefix}PrepareRollback", prepare, None, "$.rollback_steps", scope)
        prepare_task.add_catch(escalate_task, errors=["States.ALL"], result_path="$.rollback_error")
        prepare_task.next(rollback_map)
        return prepare_task, escalate_task

    def apply_function(self, action: str) -> lambda_.Function:
        """The function that applies `action` (its role is what a step of it runs with)."""
        return self.functions[f"{_pascal(action)}Apply"]

    # --- helpers ---
    def _function(self, construct_id: str, handler: str, description: str, **kwargs) -> lambda_.Function:
        function = self._factory.create(construct_id, handler=handler, description=description, **kwargs)
        self.functions[construct_id] = function
        return function

    def _action_function(self, spec: ActionSpec, phase: str, table: dynamodb.ITableV2) -> lambda_.Function:
        construct_id = f"{_pascal(spec.name)}{phase.capitalize()}"
        function = self._function(
            construct_id,
            f"actions.{spec.name}.{phase}_handler",
            f"{spec.name}.{phase}: {spec.description}",
            timeout_seconds=60,
        )
        table.grant_read_write_data(function)
        allow_declared(
            function,
            spec.iam_actions,
            spec.iam_actions_without_tag_condition,
            [*spec.iam_grants, *self.plan_grants.get(spec.name, ())],
            managed_tag=self.managed_tag,
            hosted_zones=self.hosted_zones,
        )
        return function

    def _task(
        self,
        construct_id: str,
        function: lambda_.IFunction,
        payload: sfn.TaskInput | None,
        result_path: str | None,
        scope: Construct | None = None,
    ) -> tasks.LambdaInvoke:
        # payload None: the task gets its whole state input (ASL has no "Parameters": "$").
        task = tasks.LambdaInvoke(
            scope or self,
            construct_id,
            lambda_function=function,
            payload=payload,
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=result_path,
        )
        return _retry_transient(task)

    def _map(
        self,
        construct_id: str,
        items_path: str,
        result_path: str,
        item: dict[str, str],
        router: sfn.Choice,
        scope: Construct | None = None,
    ) -> sfn.Map:
        """Steps one at a time (order matters: a rollback undoes newest first), each routed to its
        action's own task."""
        steps = sfn.Map(
            scope or self,
            construct_id,
            items_path=items_path,
            max_concurrency=1,
            result_path=result_path,
            item_selector={
                "impairment.$": "$.impairment",
                "plan.$": "$.plan.name",
                "dry_run.$": "$.plan.dry_run",
                **item,
            },
        )
        steps.item_processor(router)
        return steps

    def _router(
        self, construct_id: str, tasks_by_action: dict[str, sfn.IChainable], scope: Construct | None = None
    ) -> sfn.Choice:
        choice = sfn.Choice(scope or self, construct_id)
        for name, task in sorted(tasks_by_action.items()):
            choice.when(sfn.Condition.string_equals("$.step.action", name), task)
        return choice.otherwise(
            sfn.Fail(
                scope or self,
                f"{construct_id}Unknown",
                error="UnknownAction",
                cause="The plan names an action this deployment does not have",
            )
        )
