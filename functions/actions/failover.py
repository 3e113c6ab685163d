"""failover: move the workload to its standby; rollback fails back.

kind "dns": Route 53 records of one name and type, a primary and a standby, in a hosted zone
that carries the managed tag.
  - Failover routing (Failover PRIMARY / SECONDARY): the two records swap roles, so the standby
    becomes PRIMARY and the old primary SECONDARY. Why not invert the primary's health check: an
    inverted check reports a primary that goes down as healthy, and Route 53 sends traffic back to
    it. After a swap Route 53 keeps evaluating both health checks: the standby serves while it is
    healthy, and the old primary takes traffic back only if the standby fails its own check.
  - Weighted routing: the primary's weight becomes 0 and the standby's `standby_weight` (255).
  The change is one change batch that DELETEs the record sets exactly as they were read and
  CREATEs the new ones. Route 53 applies a batch all or nothing, and a DELETE matches only a
  record set with all the same values, so a change someone made after the read fails the batch
  (InvalidChangeBatch, permanent) instead of being overwritten. While the standby's health
  check reports unhealthy (Route 53's own rule: healthy when more than 18% of its checkers say
  so), it waits (CapacityNotReady: a standby just brought up passes its checks minutes later).
  Rollback restores the record sets recorded before, exactly, the same way.

kind "database": an RDS Multi-AZ DB instance fails over by RebootDBInstance(ForceFailover=True);
an Aurora or Multi-AZ DB cluster by FailoverDBCluster (to `target_db_instance_identifier` if the
plan names one). The DB instance or cluster must carry the managed tag. Rollback fails back: a
cluster to the writer recorded before, an instance by another forced failover if it is no longer
in the Availability Zone recorded before. The failover itself takes RDS 35-120 s; the action
returns once RDS has accepted it and the workflow's verification waits.

kind "routing_control": two Amazon Application Recovery Controller (ARC) routing controls, the
primary's and the standby's. Why: Route 53's control plane, which a "dns" failover calls, is in
us-east-1, so when that Region is the impaired one the record change may fail; routing control
states live on an ARC cluster's data plane, five Regional endpoints of which at least three answer
at any time, and Route 53 health checks tied to the routing controls move the traffic. How: both
states are read (GetRoutingControlState) and recorded before anything changes, then one
UpdateRoutingControlStates call sets the standby On and the primary Off: one transaction, so there
is never a moment with both Off (ARC's assertion rules, if the control panel has them, are checked
against the two together). Already standby On and primary Off: "unchanged", no update. The
endpoints: a client per endpoint (its URL and Region, no SDK retries, short timeouts), tried in
turn starting at a random one (AWS's advice: spread the load, and endpoints cycle through
maintenance) and rotating through the list; a call that got an answer keeps that endpoint for the
next call. An endpoint that does not connect, times out, answers 5xx, ThrottlingException or
EndpointTemporarilyUnavailableException makes the call go to the next one; when none answers (or
the time budget is spent) the step fails with TransientError and the state machine retries it.
ConflictException (a safety rule blocks the change) is ActionRefused naming the routing controls
and what ARC named; AccessDeniedException, ResourceNotFoundException, ValidationException and
ServiceLimitExceededException are permanent. `safety_rules_to_override` lists the safety rules the
plan deliberately overrides ("break glass"); empty by default. Rollback restores the two states
recorded before, exactly, in one call, if the routing controls are still as the failover left them;
if someone changed them since, they are left as they are. Opt-in: routing controls cannot carry the
managed tag at this data plane (route53-recovery-cluster has no tag condition key), so the opt-in is
the plan itself: it names both routing controls and the cluster's endpoints (never taken from the
impairment's scope), and the role may reach routing controls of its own account only.

Targets come from the step's params, else from the impairment's scope (dns_hosted_zone_id,
dns_record_name, dns_record_type, dns_primary_set, dns_secondary_set; db_cluster, db_instance);
a routing_control step's only from its params.
"""

from __future__ import annotations

import random
import re
from time import monotonic
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from actions import aws_calls
from actions.base import ActionParams, ActionResult, ActionSpec, Context, IamGrant, handlers, result_of
from core import aws
from core.contract import ImpairmentDetected
from core.errors import ActionRefused, CapacityNotReady, PermanentError, TransientError

NAME = "failover"

_DNS_FIELDS = ("hosted_zone_id", "record_name", "record_type", "primary_set_identifier", "secondary_set_identifier")
_DB_FIELDS = ("db_instance_identifier", "db_cluster_identifier", "target_db_instance_identifier")
_RC_FIELDS = (
    "primary_routing_control_arn",
    "standby_routing_control_arn",
    "cluster_endpoints",
    "safety_rules_to_override",
)
# arn:aws:route53-recovery-control::111122223333:controlpanel/<32 hex>/routingcontrol/<16 hex>
_CONTROL_PANEL_ARN = r"arn:aws[-a-z]*:route53-recovery-control::\d{12}:controlpanel/[0-9a-f]{1,64}"
_ROUTING_CONTROL_ARN = rf"^{_CONTROL_PANEL_ARN}/routingcontrol/[0-9a-z]{{1,64}}$"
_SAFETY_RULE_ARN = rf"^{_CONTROL_PANEL_ARN}/safetyrule/[0-9a-z]{{1,64}}$"
_DB_ID = r"^[A-Za-z][A-Za-z0-9-]{0,62}$"
# More than this share of Route 53's checkers reporting success means healthy (Route 53's rule).
_HEALTHY_SHARE = 0.18
# RDS states that pass on their own: wait (TransientError) rather than give up.
_INSTANCE_BUSY = frozenset(
    {
        "backing-up",
        "configuring-enhanced-monitoring",
        "configuring-iam-database-auth",
        "configuring-log-exports",
        "maintenance",
        "modifying",
        "rebooting",
        "renaming",
        "resetting-master-credentials",
        "starting",
        "upgrading",
    }
)
_CLUSTER_BUSY = frozenset(
    {
        "backing-up",
        "backtracking",
        "failing-over",
        "maintenance",
        "modifying",
        "renaming",
        "resetting-master-credentials",
        "starting",
        "upgrading",
    }
)


class ClusterEndpoint(BaseModel):
    """One Regional endpoint of an ARC cluster (DescribeCluster's ClusterEndpoints: Endpoint, Region)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        validation_alias=AliasChoices("endpoint", "Endpoint"), pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?(/\S*)?$"
    )
    region: str = Field(validation_alias=AliasChoices("region", "Region"), pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


class Params(ActionParams):
    kind: Literal["dns", "database", "routing_control"]
    # dns (each defaults to the impairment's scope)
    hosted_zone_id: str | None = Field(default=None, pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
    record_name: str | None = Field(default=None, min_length=1, max_length=1024)
    record_type: Literal["A", "AAAA", "CNAME"] | None = None
    primary_set_identifier: str | None = Field(default=None, min_length=1, max_length=128)
    secondary_set_identifier: str | None = Field(default=None, min_length=1, max_length=128)
    standby_weight: int = Field(default=255, ge=1, le=255, description="weighted records: the standby's weight")
    require_healthy_standby: bool = Field(
        default=True, description="wait while the standby's health check is unhealthy; refuse when it is unreadable"
    )
    # database (each defaults to the impairment's scope)
    db_instance_identifier: str | None = Field(default=None, pattern=_DB_ID)
    db_cluster_identifier: str | None = Field(default=None, pattern=_DB_ID)
    target_db_instance_identifier: str | None = Field(
        default=None, pattern=_DB_ID, description="cluster only: the reader to promote (default: RDS chooses)"
    )
    # routing_control (only from the params: naming them in the plan is the opt-in)
    primary_routing_control_arn: str | None = Field(default=None, pattern=_ROUTING_CONTROL_ARN)
    standby_routing_control_arn: str | None = Field(default=None, pattern=_ROUTING_CONTROL_ARN)
    cluster_endpoints: list[ClusterEndpoint] | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        description="the ARC cluster's ClusterEndpoints, as DescribeCluster returns them",
    )
    safety_rules_to_override: list[Annotated[str, Field(pattern=_SAFETY_RULE_ARN)]] = Field(
        default_factory=list,
        max_length=20,
        description="ARNs of safety rules the change may override (break glass); none by default",
    )

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Params:
        other = {
            "dns": _DB_FIELDS + _RC_FIELDS,
            "database": _DNS_FIELDS + _RC_FIELDS,
            "routing_control": _DNS_FIELDS + _DB_FIELDS,
        }[self.kind]
        given = [name for name in other if getattr(self, name) not in (None, [])]
        if self.kind == "routing_control":
            # dns settings that have defaults: refused when a routing_control step sets them
            given += [n for n in ("standby_weight", "require_healthy_standby") if n in self.model_fields_set]
        if given:
            raise ValueError(f"kind {self.kind!r} does not take {', '.join(given)}")
        if self.db_instance_identifier and (self.db_cluster_identifier or self.target_db_instance_identifier):
            raise ValueError("give db_instance_identifier, or db_cluster_identifier (with an optional target)")
        if self.kind == "routing_control":
            missing = [
                n
                for n in ("primary_routing_control_arn", "standby_routing_control_arn", "cluster_endpoints")
                if getattr(self, n) is None
            ]
            if missing:
                raise ValueError(f"kind 'routing_control' needs {', '.join(missing)}")
            if self.primary_routing_control_arn == self.standby_routing_control_arn:
                raise ValueError("the primary and standby routing controls must differ")
            urls = [e.endpoint for e in self.cluster_endpoints or []]
            if len(set(urls)) != len(urls):
                raise ValueError("cluster_endpoints names an endpoint twice")
        return self


def apply(ctx: Context) -> ActionResult:
    if ctx.params.kind == "dns":
        return _dns_apply(ctx)
    if ctx.params.kind == "routing_control":
        return _rc_apply(ctx)
    return _database_apply(ctx)


def rollback(ctx: Context) -> ActionResult:
    applied = ctx.applied or {}
    before = applied.get("before") or {}
    if not before:
        return ctx.result("rollback", "unchanged", [], message="nothing was applied")
    if before.get("kind") == "dns":
        return _dns_rollback(ctx, before)
    if before.get("kind") == "routing_control":
        return _rc_rollback(ctx, before)
    if before.get("db_cluster"):
        return _cluster_rollback(ctx, before)
    return _instance_rollback(ctx, before)


# --- DNS ------------------------------------------------------------------------------------


def _dns_apply(ctx: Context) -> ActionResult:
    client = aws_calls.client("route53", ctx.impairment.account_id)
    before = ctx.before
    if before is None:
        zone, name, record_type, primary_id, secondary_id = _dns_target(ctx)
        _require_managed_zone(client, zone, ctx.managed_tag)
        primary, secondary, routing = _pair(_record_sets(client, zone, name, record_type), primary_id, secondary_id)
        before = {
            "kind": "dns",
            "hosted_zone_id": zone,
            "record_name": name,
            "record_type": record_type,
            "routing": routing,
            "primary": primary,
            "secondary": secondary,
        }
        ctx.record_before(before)
        current: list[dict[str, Any] | None] = [primary, secondary]
    else:
        current = _current_pair(client, before)
    target = _dns_failed_over(before, ctx.params.standby_weight)
    label = _dns_label(before)
    if current == target:
        changed = target != [before["primary"], before["secondary"]]
        return ctx.result(
            "apply",
            "changed" if changed else "unchanged",
            [label],
            before=before,
            after=_dns_state(current),
            message=f"{label}: traffic already goes to the standby {before['secondary']['SetIdentifier']}",
        )
    if current != [before["primary"], before["secondary"]]:
        raise ActionRefused(f"{label}: the record sets changed since they were recorded; not overwriting them")
    standby = before["secondary"]
    note = _require_healthy_standby(client, standby, ctx.params.require_healthy_standby)
    change_id = None
    if not ctx.dry_run:
        change_id = _swap(client, before, current, target, f"failover {ctx.impairment.impairment_id}")
    what = "swapped PRIMARY and SECONDARY" if before["routing"] == "failover" else "moved the weight"
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [label],
        before=before,
        after={**_dns_state(current if ctx.dry_run else target), "change_id": change_id},
        message=f"{label}: {what} to the standby {standby['SetIdentifier']}{note}",
    )


def _dns_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    client = aws_calls.client("route53", ctx.impairment.account_id)
    label = _dns_label(before)
    original = [before["primary"], before["secondary"]]
    target = _dns_failed_over(before, ctx.params.standby_weight)
    current = _current_pair(client, before)
    if current == original:
        # A retry of this rollback finds its own work done.
        return ctx.result(
            "rollback",
            "changed" if ctx.before else "unchanged",
            [label],
            before=_dns_state(current),
            after=_dns_state(current),
            message=f"{label}: the record sets are as they were before the failover",
        )
    if current != target:
        return ctx.result(
            "rollback",
            "unchanged",
            [label],
            before=_dns_state(current),
            after=_dns_state(current),
            message=f"{label}: the record sets were changed by someone else since the failover; left as they are",
        )
    ctx.record_before(_dns_state(current))
    change_id = _swap(client, before, current, original, f"fail back {ctx.impairment.impairment_id}")
    return ctx.result(
        "rollback",
        "changed",
        [label],
        before=_dns_state(current),
        after={**_dns_state(original), "change_id": change_id},
        message=f"{label}: restored the record sets recorded before the failover (primary "
        f"{before['primary']['SetIdentifier']})",
    )


def _dns_target(ctx: Context) -> tuple[str, str, str, str | None, str | None]:
    return _dns_target_of(ctx.params, ctx.impairment.scope)


def _dns_target_of(params: Params, scope: dict[str, str]) -> tuple[str, str, str, str | None, str | None]:
    zone = params.hosted_zone_id or scope.get("dns_hosted_zone_id")
    name = params.record_name or scope.get("dns_record_name")
    if not zone or not name:
        raise PermanentError(
            "failover (dns) needs a hosted zone and a record name: give hosted_zone_id and record_name in the "
            "step's params, or dns_hosted_zone_id and dns_record_name in the impairment's scope"
        )
    return (
        zone.removeprefix("/hostedzone/"),
        name,
        params.record_type or scope.get("dns_record_type") or "A",
        params.primary_set_identifier or scope.get("dns_primary_set"),
        params.secondary_set_identifier or scope.get("dns_secondary_set"),
    )


def _require_managed_zone(client: Any, zone: str, managed_tag: tuple[str, str]) -> None:
    tag_set = aws_calls.call(client, "list_tags_for_resource", ResourceType="hostedzone", ResourceId=zone)
    tags = {t["Key"]: t.get("Value", "") for t in tag_set.get("ResourceTagSet", {}).get("Tags", [])}
    key, value = managed_tag
    if tags.get(key) != value:
        raise ActionRefused(f"hosted zone {zone} is not managed: tag {key}={value} is missing", hosted_zone=zone)


def _normal_name(name: str) -> str:
    # Route 53 returns names with a trailing dot, lower case, and some characters as \\ooo escapes.
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), name).rstrip(".").lower()


def _record_sets(client: Any, zone: str, name: str, record_type: str) -> list[dict[str, Any]]:
    """Every record set of this name and type, across pages (the listing starts at the name)."""
    wanted = _normal_name(name)
    kwargs: dict[str, Any] = {"HostedZoneId": zone, "StartRecordName": name, "StartRecordType": record_type}
    found: list[dict[str, Any]] = []
    while True:
        page = aws_calls.call(client, "list_resource_record_sets", **kwargs)
        found.extend(
            r
            for r in page.get("ResourceRecordSets", [])
            if _normal_name(r["Name"]) == wanted and r["Type"] == record_type
        )
        if not page.get("IsTruncated"):
            return found
        if _normal_name(page["NextRecordName"]) != wanted or page.get("NextRecordType") != record_type:
            return found  # the listing has moved past our records
        start = (page["NextRecordName"], page["NextRecordType"], page.get("NextRecordIdentifier"))
        if start == (kwargs["StartRecordName"], kwargs["StartRecordType"], kwargs.get("StartRecordIdentifier")):
            raise PermanentError(f"listing the record sets of {name} does not advance past {start}")
        kwargs["StartRecordName"], kwargs["StartRecordType"] = start[:2]
        kwargs.pop("StartRecordIdentifier", None)
        if start[2]:
            kwargs["StartRecordIdentifier"] = start[2]


def _pair(
    records: list[dict[str, Any]], primary_id: str | None, secondary_id: str | None
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The primary and standby record sets, and their routing ("failover" or "weighted")."""
    if not records:
        raise PermanentError("no record sets of that name and type in the hosted zone")
    by_id = {r["SetIdentifier"]: r for r in records if "SetIdentifier" in r}
    if primary_id and secondary_id:
        missing = [i for i in (primary_id, secondary_id) if i not in by_id]
        if missing:
            raise PermanentError(f"no record set with set identifier {', '.join(missing)}; found {sorted(by_id)}")
        primary, secondary = by_id[primary_id], by_id[secondary_id]
    else:
        roles = {r.get("Failover"): r for r in records if r.get("Failover")}
        if set(roles) != {"PRIMARY", "SECONDARY"}:
            raise PermanentError(
                "name the primary and standby set identifiers (primary_set_identifier / secondary_set_identifier, "
                "or dns_primary_set / dns_secondary_set in the scope): the records are not one failover pair"
            )
        primary, secondary = roles["PRIMARY"], roles["SECONDARY"]
    if "Failover" in primary and "Failover" in secondary:
        return primary, secondary, "failover"
    if "Weight" in primary and "Weight" in secondary:
        return primary, secondary, "weighted"
    raise PermanentError("the primary and standby are neither failover nor weighted records of one routing policy")


def _dns_failed_over(before: dict[str, Any], standby_weight: int) -> list[dict[str, Any]]:
    """The two record sets as the failover leaves them, computed from the state recorded before."""
    primary, secondary = before["primary"], before["secondary"]
    if before["routing"] == "failover":
        return [{**primary, "Failover": "SECONDARY"}, {**secondary, "Failover": "PRIMARY"}]
    return [{**primary, "Weight": 0}, {**secondary, "Weight": standby_weight}]


def _current_pair(client: Any, before: dict[str, Any]) -> list[dict[str, Any] | None]:
    records = _record_sets(client, before["hosted_zone_id"], before["record_name"], before["record_type"])
    by_id = {r.get("SetIdentifier"): r for r in records}
    return [by_id.get(before["primary"]["SetIdentifier"]), by_id.get(before["secondary"]["SetIdentifier"])]


def _require_healthy_standby(client: Any, standby: dict[str, Any], required: bool) -> str:
    """Do not send traffic to a standby its health check reports unhealthy: wait for it
    (CapacityNotReady, asked again every 30 s for up to 10 minutes), since a standby that was
    just brought up passes its checks a few minutes after its instances are in service; then the
    recovery rolls back."""
    health_check = standby.get("HealthCheckId")
    if not health_check:
        return " (the standby has no health check)"
    if not required:
        return ""
    try:
        observations = aws_calls.call(client, "get_health_check_status", HealthCheckId=health_check)[
            "HealthCheckObservations"
        ]
    except TransientError:
        raise
    except PermanentError as exc:
        # Calculated health checks have no status to read (InvalidInput).
        raise ActionRefused(
            f"cannot read the standby's health check {health_check} ({exc}); set require_healthy_standby to false "
            "to fail over without it"
        ) from exc
    healthy = sum(1 for o in observations if o.get("StatusReport", {}).get("Status", "").startswith("Success"))
    if not observations or healthy / len(observations) <= _HEALTHY_SHARE:
        raise CapacityNotReady(
            f"the standby {standby['SetIdentifier']} is unhealthy: {healthy} of {len(observations)} Route 53 "
            f"checkers report health check {health_check} healthy; waiting for it before moving traffic there",
            health_check=health_check,
        )
    return ""


def _swap(
    client: Any, before: dict[str, Any], current: list[Any], wanted: list[dict[str, Any]], comment: str
) -> str | None:
    """One atomic batch: DELETE the record sets exactly as they are, CREATE them as wanted."""
    changes = [{"Action": "DELETE", "ResourceRecordSet": c} for c, w in zip(current, wanted, strict=True) if c != w]
    changes += [{"Action": "CREATE", "ResourceRecordSet": w} for c, w in zip(current, wanted, strict=True) if c != w]
    if not changes:
        return None
    response = aws_calls.call(
        client,
        "change_resource_record_sets",
        HostedZoneId=before["hosted_zone_id"],
        ChangeBatch={"Comment": comment[:256], "Changes": changes},
    )
    return response.get("ChangeInfo", {}).get("Id")


def _dns_state(pair: list[Any]) -> dict[str, Any]:
    return {"primary": pair[0], "secondary": pair[1]}


def _dns_label(before: dict[str, Any]) -> str:
    return f"{before['hosted_zone_id']}/{_normal_name(before['record_name'])}/{before['record_type']}"


# --- ARC routing controls -------------------------------------------------------------------

_CLUSTER_SERVICE = "route53-recovery-cluster"
# This account's routing controls: they cannot carry the managed tag; a plan naming them opts them in.
ROUTING_CONTROLS_ARN = (
    "arn:${AWS::Partition}:route53-recovery-control::${AWS::AccountId}:controlpanel/*/routingcontrol/*"
)
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


def _cluster_client(endpoint: str, region: str, credentials: dict[str, Any] | None) -> Any:
    """A client of one cluster endpoint: its URL and Region, no SDK retries (the next endpoint,
    then the state machine, is the retry); `credentials` of a member account, or None."""
    import boto3
    from botocore.config import Config

    config = Config(
        # total_max_attempts, not max_attempts: botocore reads max_attempts as retries after the first
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=_CONNECT_TIMEOUT,
        read_timeout=_READ_TIMEOUT,
        user_agent_extra="impairment-recovery",
    )
    keys = (
        {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        }
        if credentials
        else {}
    )
    return boto3.client(_CLUSTER_SERVICE, endpoint_url=endpoint, region_name=region, config=config, **keys)


class _Cluster:
    """The Regional endpoints of one ARC cluster, tried in turn for every call."""

    def __init__(self, endpoints: list[ClusterEndpoint], account: str | None) -> None:
        self._endpoints = list(endpoints)
        # Clients are made only for the endpoints tried.
        self._clients: dict[int, Any] = {}
        # A member account's routing controls are reached with its member role, as other calls are.
        self._credentials = None if not account or account == aws.own_account() else aws._member_credentials(account)
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
                self._clients[index] = _cluster_client(endpoint.endpoint, endpoint.region, self._credentials)
            client = self._clients[index]
            try:
                response = aws_calls.call(client, operation, transient_codes=_NEXT_ENDPOINT_CODES, **kwargs)
            except TransientError as exc:
                failures.append(f"{endpoint.region} ({endpoint.endpoint}): {exc}")
                continue
            except PermanentError as exc:
                from botocore.exceptions import HTTPClientError

                if isinstance(exc.__cause__, HTTPClientError):
                    # The connection broke before an answer (closed, read timeout): not an answer.
                    failures.append(f"{endpoint.region} ({endpoint.endpoint}): {exc}")
                    continue
                raise _cluster_error(exc, label) from exc
            self._next = index
            return response
        api = f"{_CLUSTER_SERVICE}:{_api_name(operation)}"
        raise TransientError(
            f"{label}: no endpoint of the ARC cluster answered {api}: {'; '.join(failures)}",
            operation=api,
            code="NoClusterEndpointAnswered",
        )


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


def dns_standby_in_use(params: dict[str, Any], impairment: ImpairmentDetected) -> dict[str, Any] | None:
    """After a dns step: is the standby's record set the one in use (failover routing: it is
    PRIMARY; weighted: it holds the weight and the primary none)? Read the way the step reads
    them (its params, else the impairment's scope). None when the step does not name the
    records, or not the standby's set identifier (Verify has nothing to check then)."""
    try:
        zone, name, record_type, primary_id, secondary_id = _dns_target_of(
            Params.model_validate(params), impairment.scope
        )
    except PermanentError:
        return None
    if not (primary_id and secondary_id):
        return None  # by roles alone, the standby cannot be told from the primary after a swap
    client = aws_calls.client("route53", impairment.account_id)
    primary, standby, routing = _pair(_record_sets(client, zone, name, record_type), primary_id, secondary_id)
    if routing == "failover":
        in_use = standby["Failover"] == "PRIMARY"
    else:
        in_use = standby.get("Weight", 0) > 0 and primary.get("Weight", 0) == 0
    return {
        "record": f"{zone}/{_normal_name(name)}/{record_type}",
        "standby": {k: standby[k] for k in ("SetIdentifier", "Failover", "Weight") if k in standby},
        "in_use": in_use,
    }


def routing_control_states(params: dict[str, Any], account: str | None = None) -> dict[str, str]:
    """The states of a routing_control step's two routing controls now, e.g. {"primary": "Off",
    "standby": "On"}, read through the cluster's endpoints (Verify checks a failover with it)."""
    parsed = Params.model_validate(params)
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
    if params.kind != "routing_control":
        raise PermanentError(f"the step's params are of kind {params.kind!r}: they name no ARC cluster to fail back on")
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


# --- databases ------------------------------------------------------------------------------


def _database_apply(ctx: Context) -> ActionResult:
    params, scope = ctx.params, ctx.impairment.scope
    cluster = params.db_cluster_identifier or (None if params.db_instance_identifier else scope.get("db_cluster"))
    instance = params.db_instance_identifier or scope.get("db_instance")
    client = aws_calls.client("rds", ctx.impairment.account_id)
    if cluster or (ctx.before or {}).get("db_cluster"):
        return _cluster_apply(ctx, client, cluster)
    if instance or (ctx.before or {}).get("db_instance"):
        return _instance_apply(ctx, client, instance)
    raise PermanentError(
        "failover (database) needs a DB cluster or DB instance: give db_cluster_identifier or "
        "db_instance_identifier in the step's params, or db_cluster or db_instance in the impairment's scope"
    )


def _describe_instance(client: Any, identifier: str) -> dict[str, Any]:
    found = aws_calls.call(client, "describe_db_instances", DBInstanceIdentifier=identifier)["DBInstances"]
    if not found:
        raise PermanentError(f"DB instance {identifier!r} does not exist")
    return found[0]


def _describe_cluster(client: Any, identifier: str) -> dict[str, Any]:
    found = aws_calls.call(client, "describe_db_clusters", DBClusterIdentifier=identifier)["DBClusters"]
    if not found:
        raise PermanentError(f"DB cluster {identifier!r} does not exist")
    return found[0]


def _require_managed_db(client: Any, arn: str, what: str, managed_tag: tuple[str, str]) -> None:
    tags = {
        t["Key"]: t.get("Value", "")
        for t in aws_calls.call(client, "list_tags_for_resource", ResourceName=arn)["TagList"]
    }
    key, value = managed_tag
    if tags.get(key) != value:
        raise ActionRefused(f"{what} is not managed: tag {key}={value} is missing", resource=arn)


def _require_status(status: str, busy: frozenset[str], what: str) -> None:
    if status == "available":
        return
    if status in busy:
        raise TransientError(f"{what} is {status}; waiting for it to be available", status=status)
    raise ActionRefused(f"{what} is {status}: it cannot fail over", status=status)


def _instance_state(db: dict[str, Any]) -> dict[str, Any]:
    return {
        "availability_zone": db.get("AvailabilityZone"),
        "secondary_availability_zone": db.get("SecondaryAvailabilityZone"),
        "status": db.get("DBInstanceStatus"),
    }


def _instance_apply(ctx: Context, client: Any, identifier: str | None) -> ActionResult:
    before = ctx.before
    if before is None:
        db = _describe_instance(client, identifier)
        what = f"DB instance {identifier}"
        _require_managed_db(client, db["DBInstanceArn"], what, ctx.managed_tag)
        if db.get("DBClusterIdentifier"):
            raise PermanentError(
                f"{what} belongs to DB cluster {db['DBClusterIdentifier']}: fail over the cluster (db_cluster)"
            )
        if not db.get("MultiAZ"):
            raise ActionRefused(f"{what} is not Multi-AZ: it has no standby to fail over to")
        _require_status(db["DBInstanceStatus"], _INSTANCE_BUSY, what)
        before = {"kind": "database", "db_instance": identifier, "arn": db["DBInstanceArn"], **_instance_state(db)}
        ctx.record_before(before)
    else:
        db = _describe_instance(client, before["db_instance"])
    identifier = before["db_instance"]
    state = _instance_state(db)
    if state["availability_zone"] != before["availability_zone"] or (
        ctx.before is not None and state["status"] == "rebooting"
    ):
        # A retry: the failover this step asked for is done or under way.
        return ctx.result(
            "apply",
            "changed",
            [identifier],
            before=before,
            after=state,
            message=f"DB instance {identifier}: failover from {before['availability_zone']} already under way or done",
        )
    _require_status(state["status"], _INSTANCE_BUSY, f"DB instance {identifier}")
    if not ctx.dry_run:
        aws_calls.call(client, "reboot_db_instance", DBInstanceIdentifier=identifier, ForceFailover=True)
        state = _instance_state(_describe_instance(client, identifier))
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [identifier],
        before=before,
        after=state,
        message=f"DB instance {identifier}: rebooted with failover away from {before['availability_zone']} "
        "(RDS Multi-AZ failover typically takes 60-120 s)",
    )


def _instance_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    client = aws_calls.client("rds", ctx.impairment.account_id)
    identifier = before["db_instance"]
    state = _instance_state(_describe_instance(client, identifier))
    original = before["availability_zone"]
    if state["availability_zone"] == original:
        if state["status"] == "rebooting" and not ctx.before:
            raise TransientError(f"DB instance {identifier} is still failing over; failing back once it is done")
        return ctx.result(
            "rollback",
            "changed" if ctx.before else "unchanged",
            [identifier],
            before=ctx.before or state,
            after=state,
            message=f"DB instance {identifier} is in its original Availability Zone {original}",
        )
    if ctx.before is not None and state["status"] == "rebooting":
        return ctx.result(
            "rollback",
            "changed",
            [identifier],
            before=ctx.before,
            after=state,
            message=f"DB instance {identifier}: failing back to {original} under way",
        )
    _require_status(state["status"], _INSTANCE_BUSY, f"DB instance {identifier}")
    ctx.record_before(state)
    aws_calls.call(client, "reboot_db_instance", DBInstanceIdentifier=identifier, ForceFailover=True)
    return ctx.result(
        "rollback",
        "changed",
        [identifier],
        before=state,
        after=_instance_state(_describe_instance(client, identifier)),
        message=f"DB instance {identifier}: rebooted with failover back to {original}",
    )


def _writer(cluster: dict[str, Any]) -> str | None:
    return next((m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m["IsClusterWriter"]), None)


def _cluster_state(cluster: dict[str, Any]) -> dict[str, Any]:
    return {"writer": _writer(cluster), "status": cluster.get("Status")}


def _cluster_apply(ctx: Context, client: Any, identifier: str | None) -> ActionResult:
    before = ctx.before
    target = ctx.params.target_db_instance_identifier
    if before is None:
        cluster = _describe_cluster(client, identifier)
        what = f"DB cluster {identifier}"
        _require_managed_db(client, cluster["DBClusterArn"], what, ctx.managed_tag)
        _require_status(cluster["Status"], _CLUSTER_BUSY, what)
        writer = _writer(cluster)
        members = sorted(m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []))
        if writer is None:
            raise PermanentError(f"{what} has no writer instance")
        if len(members) < 2:
            raise ActionRefused(f"{what} has no reader to fail over to")
        if target is not None and (target not in members or target == writer):
            raise PermanentError(f"{target} is not a reader of {what}; its members: {members}")
        before = {
            "kind": "database",
            "db_cluster": identifier,
            "arn": cluster["DBClusterArn"],
            "members": members,
            **_cluster_state(cluster),
        }
        ctx.record_before(before)
    else:
        cluster = _describe_cluster(client, before["db_cluster"])
    identifier = before["db_cluster"]
    state = _cluster_state(cluster)
    if state["writer"] != before["writer"] or (ctx.before is not None and state["status"] == "failing-over"):
        return ctx.result(
            "apply",
            "changed",
            [identifier],
            before=before,
            after=state,
            message=f"DB cluster {identifier}: failover from writer {before['writer']} already under way or done",
        )
    _require_status(state["status"], _CLUSTER_BUSY, f"DB cluster {identifier}")
    if not ctx.dry_run:
        kwargs = {"TargetDBInstanceIdentifier": target} if target else {}
        aws_calls.call(client, "failover_db_cluster", DBClusterIdentifier=identifier, **kwargs)
        state = _cluster_state(_describe_cluster(client, identifier))
    return ctx.result(
        "apply",
        result_of(ctx, True),
        [identifier],
        before=before,
        after=state,
        message=f"DB cluster {identifier}: failover from writer {before['writer']}"
        + (f" to {target}" if target else ""),
    )


def _cluster_rollback(ctx: Context, before: dict[str, Any]) -> ActionResult:
    client = aws_calls.client("rds", ctx.impairment.account_id)
    identifier, original = before["db_cluster"], before["writer"]
    cluster = _describe_cluster(client, identifier)
    state = _cluster_state(cluster)
    if state["writer"] == original:
        return ctx.result(
            "rollback",
            "changed" if ctx.before else "unchanged",
            [identifier],
            before=ctx.before or state,
            after=state,
            message=f"DB cluster {identifier}: {original} is the writer, as before the failover",
        )
    if state["status"] == "failing-over":
        if ctx.before is not None:
            return ctx.result(
                "rollback",
                "changed",
                [identifier],
                before=ctx.before,
                after=state,
                message=f"DB cluster {identifier}: failing back to {original} under way",
            )
        raise TransientError(f"DB cluster {identifier} is still failing over; failing back once it is done")
    _require_status(state["status"], _CLUSTER_BUSY, f"DB cluster {identifier}")
    if original not in {m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])}:
        raise PermanentError(f"DB cluster {identifier}: its previous writer {original} is no longer a member")
    _require_status(
        _describe_instance(client, original).get("DBInstanceStatus", ""), _INSTANCE_BUSY, f"DB instance {original}"
    )
    ctx.record_before(state)
    aws_calls.call(client, "failover_db_cluster", DBClusterIdentifier=identifier, TargetDBInstanceIdentifier=original)
    return ctx.result(
        "rollback",
        "changed",
        [identifier],
        before=state,
        after=_cluster_state(_describe_cluster(client, identifier)),
        message=f"DB cluster {identifier}: failed back to writer {original}",
    )


SPEC = ActionSpec(
    name=NAME,
    description=(
        "Fail over to the standby: Route 53 records, ARC routing controls, an RDS Multi-AZ instance or a DB cluster"
    ),
    params=Params,
    iam_actions=(
        "route53:ListResourceRecordSets",
        "route53:ListTagsForResource",
        "route53:GetHealthCheckStatus",
        "rds:DescribeDBInstances",
        "rds:DescribeDBClusters",
        "rds:ListTagsForResource",
        "rds:RebootDBInstance",
        "rds:FailoverDBCluster",
    ),
    # Route 53 has no resource-tag condition key: the action checks the zone's tag itself.
    iam_actions_without_tag_condition=("route53:ChangeResourceRecordSets",),
    # ARC's cluster data plane has no tag condition key either: routing controls of this account
    # only, and the action changes only the two a plan names (the opt-in). Overriding safety rules
    # is allowed (no AllowSafetyRulesOverrides condition) because a plan may list rules to override.
    iam_grants=(
        IamGrant(
            actions=(f"{_CLUSTER_SERVICE}:GetRoutingControlState", f"{_CLUSTER_SERVICE}:UpdateRoutingControlStates"),
            resources=(ROUTING_CONTROLS_ARN,),
        ),
    ),
    apply=apply,
    rollback=rollback,
)

apply_handler, rollback_handler = handlers(SPEC)
