"""What an action declares, as plain data (actions/registry.py holds one ActionSpec per action).

Everything the rest of the system needs to know about an action is here, and only here: the IAM
its apply and rollback call, whether it takes capacity out of service (what the guardrails
count), what Verify checks after it and the IAM those checks need, what a recovery that verified
hands back later and when, and how long its apply may take (the plan's time budget). The
workflow's own tasks (CheckGuardrails, Verify, Finalize, ReturnCapacity, Admit) read these
without importing the action's code: this module imports no AWS SDK and no pydantic, and an
action's code (its parameters, apply and rollback) is imported only by whoever runs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field

from core.errors import CAPACITY_WAIT_SECONDS, TASK_WITH_RETRIES_SECONDS

if TYPE_CHECKING:
    from actions.base import Action

StepParams = dict[str, Any]

# A step's apply may wait for capacity (CapacityNotReady, asked again every 30 s for 10 minutes)
# and retry transient errors with backoff; so may its rollback.
STEP_SECONDS = CAPACITY_WAIT_SECONDS + TASK_WITH_RETRIES_SECONDS


class IamGrant(Struct, frozen=True):
    """A permission on named resources, for what the managed-tag rule cannot express: a resource
    that cannot carry the tag (an AWS-owned SSM document), or a service that scopes by tag with a
    condition key of its own (ssm:resourceTag)."""

    actions: tuple[str, ...]
    # ARNs, which may use ${AWS::Partition}, ${AWS::Region} and ${AWS::AccountId}.
    resources: tuple[str, ...]
    # The service's tag condition key: only resources carrying the managed tag under it. None:
    # these resources, unconditionally.
    tag_condition_key: str | None = None


class Verification(Struct, frozen=True):
    """What Verify checks after the action, beyond what it checks after any plan (the target
    group, ECS service and database the impairment names are healthy)."""

    # The impaired workload's Auto Scaling group serves its desired capacity (in an Availability
    # Zone impairment: capacity outside that zone)...
    group_capacity: bool = False
    # ...and the impaired instances are out of service.
    impaired_out_of_service: bool = False
    # "module:function" checking what one step did, called with (impairment, the step's params,
    # its apply result or None) and returning checks ({"check", "passed", ...}); imported only
    # when a plan has this action.
    step_check: str | None = None
    # What these checks call: reads, granted to Verify (and to ReturnCapacity for an action whose
    # hand-back waits for health). The group checks' own reads are Verify's.
    iam_actions: tuple[str, ...] = ()
    iam_grants: tuple[IamGrant, ...] = ()


class HandBack(Struct, frozen=True):
    """What a recovery that verified gives back later: its resource lifecycle cleanup. Finalize
    asks the workflow to wait `after(params)` seconds (the earliest of the plan's steps wins:
    everything is handed back then), then ReturnCapacity runs the step's rollback."""

    # Seconds to wait, from the step's params as the plan gives them; None: this step keeps what
    # it changed.
    after: Callable[[StepParams], int | None]
    # True: only if Verify's checks of this action pass again then (emergency capacity stays with
    # a workload that is not healthy); False: whatever the health (a routing change nobody renewed
    # does not outlive its time-box).
    only_if_healthy: bool = True


def never(params: StepParams) -> bool:
    return False


class ActionSpec(Struct, frozen=True):
    """An action's declaration. Its code is the module actions/<name>.py, whose ACTION (an
    actions.base.Action) holds its parameters, apply and rollback."""

    name: str
    description: str
    # Every IAM action apply and rollback call. Mutating ones are granted only on resources that
    # carry the managed tag (aws:ResourceTag condition)...
    iam_actions: tuple[str, ...]
    # ...except these: mutating IAM actions whose service has no resource-tag condition key
    # (Route 53 record changes, say). Granted on "*"; the action checks the managed tag itself
    # before it calls them.
    iam_actions_without_tag_condition: tuple[str, ...] = ()
    # ...and these, granted exactly as declared (their actions are not listed in iam_actions).
    iam_grants: tuple[IamGrant, ...] = ()
    # ...and these, on what a step's params name (a user's Lambda function, an automation
    # runbook): granted for each step of the configured plans (infra/permissions.py plan_grants),
    # so an action no plan uses holds none of them, and never on "*".
    param_grants: Callable[[StepParams], tuple[IamGrant, ...]] | None = None
    # Whether a step takes the impaired instances out of service (from its params): the blast
    # radius and fail open then count them against their groups. Adding capacity, failing over or
    # shifting a zone away removes no healthy capacity.
    takes_out_of_service: Callable[[StepParams], bool] = never
    verification: Verification = field(default_factory=Verification)
    hand_back: HandBack | None = None
    # Whether a step cannot be undone and so needs a human's approval (from its params): a plan
    # with such a step that does not set requires_approval is refused when it is validated.
    needs_approval: Callable[[StepParams], bool] = never
    # How long a step's apply may take, its waits for capacity and retries included (its
    # rollback is given as long): the plan's time budget adds these up.
    time_box_seconds: int = STEP_SECONDS

    @property
    def module(self) -> str:
        """The module whose `apply_handler` and `rollback_handler` are this action's Lambda handlers."""
        return f"actions.{self.name}"

    def implementation(self) -> Action:
        """The action's code (imported now, once)."""
        return importlib.import_module(self.module).ACTION

    def hand_back_after(self, params: StepParams | None) -> int | None:
        """Seconds until what a step of this action changed is handed back; None: never."""
        return self.hand_back.after(params or {}) if self.hand_back else None


class Alias(Struct, frozen=True):
    """An action name that stands for several actions, one per `kind` of its params (what one
    action with a kind param used to be). A plan may still name it: the step is resolved to the
    kind's action when the plan is parsed (actions/plans.py), so the state machine, the records
    and Verify only ever see the kind's own action."""

    name: str
    # kind -> the action it is
    kinds: dict[str, str]
    # The kind of a step whose params name none; None: the kind is required.
    default_kind: str | None = None


def resolve(reference: str) -> Callable[..., Any]:
    """The function a "module:function" reference names (imported now, once)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
