"""failover_routing_control: fail over by two Amazon Application Recovery Controller (ARC) routing
controls, the primary's and the standby's; rollback fails back. (`failover` with kind
"routing_control" is this action: actions/registry.py, ALIASES.)

Why: Route 53's control plane, which failover_dns calls, is in us-east-1 and may fail with it;
routing control states live on an ARC cluster's data plane, whose five Regional endpoints are
tried in turn. Both states change in one call, so there is never a moment with both Off.

Design: docs/actions.md#failover_routing_control
"""

from __future__ import annotations

import random
from time import monotonic
from typing import Annotated, Any, Literal

from msgspec import Meta

from actions.base import Action, ActionParams, ActionResult, Context, handlers, result_of
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused, PermanentError, TransientError
from core.model import Model

NAME = "failover_routing_control"
# arn:aws:route53-recovery-control::111122223333:controlpanel/<32 hex>/routingcontrol/<16 hex>
_CONTROL_PANEL_ARN = r"arn:aws[-a-z]*:route53-recovery-control::\d{12}:controlpanel/[0-9a-f]{1,64}"
_ROUTING_CONTROL_ARN = rf"^{_CONTROL_PANEL_ARN}/routingcontrol/[0-9a-z]{{1,64}}$"
_SAFETY_RULE_ARN = rf"^{_CONTROL_PANEL_ARN}/safetyrule/[0-9a-z]{{1,64}}$"


class ClusterEndpoint(Model, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One Regional endpoint of an ARC cluster. A plan may copy DescribeCluster's ClusterEndpoints
    as they are (Endpoint, Region): Params reads those names too (_endpoints_named)."""

    endpoint: Annotated[str, Meta(pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?(/\S*)?$")]
    region: Annotated[str, Meta(pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")]


class Params(ActionParams, kw_only=True):
    # Only from the params: naming them in the plan is the opt-in.
    kind: Literal["routing_control"] = "routing_control"
    primary_routing_control_arn: Annotated[str, Meta(pattern=_ROUTING_CONTROL_ARN)]
    standby_routing_control_arn: Annotated[str, Meta(pattern=_ROUTING_CONTROL_ARN)]
    cluster_endpoints: Annotated[
        list[ClusterEndpoint],
        Meta(
            min_length=1,
            max_length=5,
            description="the ARC cluster's ClusterEndpoints, as DescribeCluster returns them",
        ),
    ]
    safety_rules_to_override: Annotated[
        list[Annotated[str, Meta(pattern=_SAFETY_RULE_ARN)]],
        Meta(max_length=20, description="ARNs of safety rules the change may override (break glass); none by default"),
    ] = []

    @classmethod
    def model_validate(cls, data: Any, strict: bool = True) -> Params:
        return super().model_validate(_endpoints_named(data), strict)

    def _check(self) -> None:
        if self.primary_routing_control_arn == self.standby_routing_control_arn:
            raise ValueError("the primary and standby routing controls must differ")
        urls = [e.endpoint for e in self.cluster_endpoints]
        if len(set(urls)) != len(urls):
            raise ValueError("cluster_endpoints names an endpoint twice")


def _endpoints_named(data: Any) -> Any:
    """The params with each cluster endpoint's Endpoint and Region (DescribeCluster's names) read
    as its endpoint and region; anything else as it is, for validation to judge."""
    endpoints = data.get("cluster_endpoints") if isinstance(data, dict) else None
    if not isinstance(endpoints, list):
        return data
    named = []
    for endpoint in endpoints:
        if isinstance(endpoint, dict):
            endpoint = dict(endpoint)
            for given, name in (("Endpoint", "endpoint"), ("Region", "region")):
                if given in endpoint and name not in endpoint:
                    endpoint[name] = endpoint.pop(given)
        named.append(endpoint)
    return {**data, "cluster_endpoints": named}


def apply(ctx: Context) -> ActionResult:
    return _rc_apply(ctx)


def rollback(ctx: Context) -> ActionResult:
    before = (ctx.applied or {}).get("before") or {}
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    return _rc_rollback(ctx, before)


# --- ARC routing controls -------------------------------------------------------------------

_CLUSTER_SERVICE = "route53-recovery-cluster"
# Answers after which the next endpoint is tried: this endpoint cannot serve now. (5xx answers and
# connection failures are classified transient already.)
_NEXT_ENDPOINT_CODES = ("EndpointTemporarilyUnavailableException", "ThrottlingException", "InternalServerException")
# Per endpoint, seconds: fail fast, so that trying all five fits in one invocation (60 s).
_CONNECT_TIMEOUT, _READ_TIMEOUT = 2, 5
# Every call of one step on the cluster, the endpoints tried included, within this budget.
_CLUSTER_BUDGET_SECONDS = 40.0
_FAILED_OVER = {"primary": "Off", "standby": "On"}


def _first_endpoint(count: int) -> int:
    """Where the rotation through the endpoints starts: at random, as AWS advises."""
    return random.randrange(count)


def _cluster_client(endpoint: str, region: str, account: str | None) -> Any:
    """A client of one cluster endpoint: its URL and Region, no SDK retries (the next endpoint,
    then the state machine, is the retry), short timeouts; in `account` (a member's, through its
    member role, as other calls are; None: this one)."""
    return aws.client(
        _CLUSTER_SERVICE,
        max_attempts=1,
        account=account,
        region=region,
        timeouts=(_CONNECT_TIMEOUT, _READ_TIMEOUT),
        endpoint=endpoint,
    )


class _Cluster:
    """The Regional endpoints of one ARC cluster, tried in turn for every call."""

    def __init__(self, endpoints: list[ClusterEndpoint], account: str | None) -> None:
        self._endpoints = list(endpoints)
        # Clients are made only for the endpoints tried.
        self._clients: dict[int, Any] = {}
        self._account = account
        self._next = _first_endpoint(len(self._endpoints))
        self._deadline = monotonic() + _CLUSTER_BUDGET_SECONDS

    def call(self, operation: str, label: str, **kwargs: Any) -> Any:
        """`operation` at the first endpoint that answers, starting at the one that answered last."""
        failures: list[str] = []
        count = len(self._endpoints)
        for offset in range(count):
            if monotonic() >= self._deadline:
                failures.append(f"the time budget of {_CLUSTER_BUDGET_SECONDS:.0f} s is spent")
                break
            index = (self._next + offset) % count
            endpoint = self._endpoints[index]
            if index not in self._clients:
                self._clients[index] = _cluster_client(endpoint.endpoint, endpoint.region, self._account)
            try:
                response = _ask(self._clients[index], endpoint, operation, **kwargs)
            except NoAnswer as exc:
                failures.append(str(exc))
                continue
            except PermanentError as exc:
                raise _cluster_error(exc, label) from exc
            self._next = index
            return response
        api = f"{_CLUSTER_SERVICE}:{_api_name(operation)}"
        raise TransientError(
            f"{label}: no endpoint of the ARC cluster answered {api}: {'; '.join(failures)}",
            operation=api,
            code="NoClusterEndpointAnswered",
        )


class NoAnswer(Exception):
    """An endpoint that cannot serve now: not reached, the connection broke before an answer, or an
    answer that says to try another endpoint. (A PermanentError is an answer: every endpoint
    would give the same.)"""


def _ask(client: Any, endpoint: ClusterEndpoint, operation: str, **kwargs: Any) -> Any:
    """`operation` at one endpoint, once: its answer, NoAnswer, or the PermanentError it answered."""
    try:
        return aws.call(client, operation, transient_codes=_NEXT_ENDPOINT_CODES, **kwargs)
    except TransientError as exc:
        raise NoAnswer(f"{endpoint.region} ({endpoint.endpoint}): {exc}") from exc
    except PermanentError as exc:
        from botocore.exceptions import HTTPClientError

        if isinstance(exc.__cause__, HTTPClientError):
            # The connection broke before an answer (closed, read timeout): not an answer.
            raise NoAnswer(f"{endpoint.region} ({endpoint.endpoint}): {exc}") from exc
        raise


def ask_endpoint(endpoint: ClusterEndpoint, account: str | None, operation: str, **kwargs: Any) -> Any:
    """`operation` at this one endpoint, as the action calls each (one attempt, short timeouts, in
    `account`): the readiness check tries every endpoint of a cluster with it."""
    return _ask(_cluster_client(endpoint.endpoint, endpoint.region, account), endpoint, operation, **kwargs)


def _api_name(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def _cluster_error(exc: PermanentError, label: str) -> PermanentError:
    """An answer the cluster gave, the same from every endpoint: a refusal naming what ARC named."""
    response = getattr(exc.__cause__, "response", None) or {}
    code = exc.details.get("code")
    if code != "ConflictException":
        return PermanentError(f"{label}: {exc}", **exc.details)
    message = response.get("Error", {}).get("Message") or str(exc)
    resource = " ".join(str(response[k]) for k in ("resourceType", "resourceId") if response.get(k))
    return ActionRefused(
        f"{label}: ARC refused the change, a safety rule blocks it: {message}"
        + (f" ({resource})" if resource else "")
        + "; to override a rule deliberately, name it in the step's safety_rules_to_override",
        **exc.details,
        resource=resource or None,
    )


def _rc_read(cluster: _Cluster, arn: str, label: str) -> dict[str, Any]:
    response = cluster.call("get_routing_control_state", label, RoutingControlArn=arn)
    return {"arn": arn, "name": response.get("RoutingControlName"), "state": response["RoutingControlState"]}


def _rc_states(before: dict[str, Any]) -> dict[str, str]:
    return {"primary": before["primary"]["state"], "standby": before["standby"]["state"]}


def _rc_current(cluster: _Cluster, before: dict[str, Any]) -> dict[str, str]:
    label = _rc_label(before)
    return {role: _rc_read(cluster, before[role]["arn"], label)["state"] for role in ("primary", "standby")}


def _rc_label(before: dict[str, Any]) -> str:
    def named(role: str) -> str:
        control = before[role]
        return f"{control.get('name') or control['arn'].rsplit('/', 1)[-1]} ({control['arn']})"

    return f"routing controls {named('primary')} (primary) and {named('standby')} (standby)"


def _rc_update(cluster: _Cluster, before: dict[str, Any], states: dict[str, str], overrides: list[str]) -> None:
    """One UpdateRoutingControlStates call: one transaction, so the two never change apart."""
    entries = [
        {"RoutingControlArn": before[role]["arn"], "RoutingControlState": states[role]}
        for role in sorted(("primary", "standby"), key=lambda role: states[role] != "On")  # On first
    ]
    kwargs: dict[str, Any] = {"UpdateRoutingControlStateEntries": entries}
    if overrides:
        kwargs["SafetyRulesToOverride"] = list(overrides)
    cluster.call("update_routing_control_states", _rc_label(before), **kwargs)


def routing_control_states(parsed: Params, account: str | None = None) -> dict[str, str]:
    """The states of a routing_control step's two routing controls now, e.g. {"primary": "Off",
    "standby": "On"}, read through the cluster's endpoints (Verify checks a failover with it)."""
    controls = {"primary": parsed.primary_routing_control_arn, "standby": parsed.standby_routing_control_arn}
    return _rc_current(_Cluster(parsed.cluster_endpoints, account), {r: {"arn": a} for r, a in controls.items()})


def _rc_apply(ctx: Context) -> ActionResult:
    params = ctx.params
    cluster = _Cluster(params.cluster_endpoints, ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        arns = {"primary": params.primary_routing_control_arn, "standby": params.standby_routing_control_arn}
        label = _rc_label({role: {"arn": arn} for role, arn in arns.items()})
        before = {"kind": "routing_control", **{role: _rc_read(cluster, arn, label) for role, arn in arns.items()}}
        ctx.record_before(before)
        current = _rc_states(before)
    else:
        current = _rc_current(cluster, before)
    label = _rc_label(before)
    original = _rc_states(before)
    targets = [before["primary"]["arn"], before["standby"]["arn"]]
    if current == _FAILED_OVER:
        return ctx.result(
            "apply",
            "changed" if original != _FAILED_OVER else "unchanged",
            targets,
            before=before,
            after=current,
            message=f"{label}: traffic already goes to the standby (standby On, primary Off)",
        )
    if current != original:
        raise ActionRefused(
            f"{label}: the routing control states changed since they were recorded ({original} then, {current} "
            "now); not overwriting them"
        )
    if not ctx.dry_run:
        _rc_update(cluster, before, _FAILED_OVER, params.safety_rules_to_override)
    return ctx.result(
        "apply",
        result_of(ctx, True),
        targets,
        before=before,
        after=current if ctx.dry_run else dict(_FAILED_OVER),
        message=f"{label}: standby On and primary Off in one update (they were {original})",
    )


def _rc_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    params = ctx.params
    cluster = _Cluster(params.cluster_endpoints, ctx.impairment.account_id)
    label = _rc_label(before)
    original = _rc_states(before)
    targets = [before["primary"]["arn"], before["standby"]["arn"]]
    current = _rc_current(cluster, before)
    if current == original:
        # Nothing was changed, or a retry of this rollback finds its own work done.
        return ctx.result(
            "rollback",
            "changed" if ctx.before else "unchanged",
            targets,
            before=current,
            after=current,
            message=f"{label}: the routing control states are as they were before the failover ({original})",
        )
    if current != _FAILED_OVER:
        return ctx.result(
            "rollback",
            "unchanged",
            targets,
            before=current,
            after=current,
            message=f"{label}: the routing control states were changed by someone else since the failover "
            f"({current}); left as they are",
        )
    ctx.record_before(dict(current))
    _rc_update(cluster, before, original, params.safety_rules_to_override)
    return ctx.result(
        "rollback",
        "changed",
        targets,
        before=current,
        after=original,
        message=f"{label}: restored the states recorded before the failover ({original})",
    )


def verify_step(impairment: ImpairmentDetected, params: dict[str, Any], applied: dict[str, Any] | None) -> list[dict]:
    """What Verify checks after this step (its Verification in actions/registry.py): the standby's
    routing control On and the primary's Off, read from the cluster's data plane, not from the
    impaired region."""
    states = routing_control_states(Params.model_validate(params), impairment.account_id)
    return [{"check": "routing_control", "passed": states == _FAILED_OVER, "states": states}]


ACTION = Action(NAME, Params, apply, rollback)
apply_handler, rollback_handler = handlers(ACTION)
