"""Where `recoveryctl` reads and changes the recovery system: the local emulator's recorded state,
or a deployed stack. Both backends answer the same questions, so every command works against
either.

The deployed stack is found by name through CloudFormation (its outputs name the table, the state
machine and the topic; its template's Metadata names the workloads and plans). Impairments are
listed with one GSI1 query per workload named in that metadata: a query reads only the records of
the time range asked for, where a scan would read the whole table (every action record and lock)
and grow with history. A stack whose template carries no workload list falls back to a filtered
scan, and says so.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from recoveryctl.state import LocalState, jsonable

METADATA_KEY = "ImpairmentRecovery"
DEFAULT_STACK = "ImpairmentRecovery"


class BackendError(RuntimeError):
    """The target cannot be reached or read; the message says what to do."""


class Backend:
    """What every command needs from a target."""

    target = ""

    def describe(self) -> str:
        raise NotImplementedError

    def impairments(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Impairment records detected since `since`, oldest first."""
        raise NotImplementedError

    def impairment(self, impairment_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def actions(self, impairment_id: str) -> list[dict[str, Any]]:
        """Every action record of an impairment (apply and rollback), in step order."""
        raise NotImplementedError

    def actions_of(self, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        return {r["impairment_id"]: self.actions(r["impairment_id"]) for r in records}

    def executions(self, since: datetime | None = None) -> dict[str, dict[str, Any]]:
        """Executions started since `since`, by name (the impairment id)."""
        raise NotImplementedError

    def execution(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The execution of an impairment: name, arn, status, startDate, stopDate, error, cause."""
        raise NotImplementedError

    def history(self, execution: dict[str, Any]) -> list[dict[str, Any]]:
        """The execution's whole event history, oldest first."""
        raise NotImplementedError

    def escalations(self, impairment_id: str) -> list[Any]:
        """The messages a human received about it (when the target keeps them)."""
        return []

    def paging(self) -> dict[str, Any] | None:
        """Who a page reaches: the escalation topic's subscriptions (None: the target cannot say;
        the local emulator keeps every page it sends)."""
        return None

    def switches(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_paused(self, paused: bool, reason: str, actor: str) -> None:
        raise NotImplementedError

    def set_plan_enabled(self, plan: str, enabled: bool, actor: str) -> None:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """The stack's {"workloads": [...], "plans": [...]}."""
        raise NotImplementedError

    def plans(self) -> list[dict[str, Any]]:
        return list(self.metadata().get("plans") or [])


def _by_detected(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: str(r.get("detected_at") or ""))


def _is_record(item: dict[str, Any]) -> bool:
    return str(item.get("pk", "")).startswith("IMPAIRMENT#") and item.get("sk") == "RECORD"


def _detected_since(record: dict[str, Any], since: datetime | None) -> bool:
    if since is None:
        return True
    try:
        return datetime.fromisoformat(str(record.get("detected_at"))) >= since
    except ValueError:
        return False


# --- local -----------------------------------------------------------------------------------
class LocalBackend(Backend):
    """The emulator's recorded drills (LocalState) and the synthesized template."""

    target = "local"

    def __init__(self, state: LocalState, template_path: Path | None = None, cdk_out: Path = Path("cdk.out")) -> None:
        self.state = state
        self.template_path = template_path
        self.cdk_out = cdk_out
        self._runs: list[dict[str, Any]] | None = None

    def describe(self) -> str:
        return f"local emulator state in {self.state.directory}"

    def _loaded(self) -> list[dict[str, Any]]:
        if self._runs is None:
            self._runs = self.state.runs()
        return self._runs

    def require_state(self) -> None:
        if not self._loaded():
            raise BackendError(
                f"no local state yet in {self.state.directory}: run `recoveryctl drill --scenario instance-failure` "
                "first (or point --state-dir / RECOVERYCTL_STATE_DIR at an existing one, or use --deployed)"
            )

    def _items(self) -> list[dict[str, Any]]:
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for run in self._loaded():  # oldest first: a later drill's item replaces an earlier one
            for item in run.get("items", []):
                items[(item.get("pk"), item.get("sk"))] = item
        return list(items.values())

    def impairments(self, since: datetime | None = None) -> list[dict[str, Any]]:
        self.require_state()
        return _by_detected([i for i in self._items() if _is_record(i) and _detected_since(i, since)])

    def impairment(self, impairment_id: str) -> dict[str, Any] | None:
        self.require_state()
        key = (f"IMPAIRMENT#{impairment_id}", "RECORD")
        return next((i for i in self._items() if (i.get("pk"), i.get("sk")) == key), None)

    def actions(self, impairment_id: str) -> list[dict[str, Any]]:
        pk = f"IMPAIRMENT#{impairment_id}"
        found = [i for i in self._items() if i.get("pk") == pk and str(i.get("sk", "")).startswith("ACTION#")]
        return sorted(found, key=lambda i: i["sk"])

    def _all_executions(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for run in self._loaded():
            for execution in run.get("executions", []):
                found[execution["name"]] = execution
        return found

    def executions(self, since: datetime | None = None) -> dict[str, dict[str, Any]]:
        return {
            name: {k: v for k, v in e.items() if k != "history"}
            for name, e in self._all_executions().items()
            if since is None or datetime.fromisoformat(e["startDate"]) >= since
        }

    def execution(self, record: dict[str, Any]) -> dict[str, Any] | None:
        executions = self._all_executions()
        found = executions.get(record.get("impairment_id", ""))
        if found is None and record.get("execution_arn"):
            found = next((e for e in executions.values() if e.get("executionArn") == record["execution_arn"]), None)
        return {k: v for k, v in found.items() if k != "history"} if found else None

    def history(self, execution: dict[str, Any]) -> list[dict[str, Any]]:
        found = self._all_executions().get(execution.get("name", ""))
        return list((found or {}).get("history") or [])

    def escalations(self, impairment_id: str) -> list[Any]:
        return [m for run in self._loaded() if run.get("impairment_id") == impairment_id for m in run["escalations"]]

    def switches(self) -> dict[str, Any]:
        return self.state.switches()

    def set_paused(self, paused: bool, reason: str, actor: str) -> None:
        self.state.set_switches(paused=paused, pause_reason=reason, changed_by=actor)

    def set_plan_enabled(self, plan: str, enabled: bool, actor: str) -> None:
        disabled = set(self.state.switches().get("disabled_plans") or [])
        disabled = disabled - {plan} if enabled else disabled | {plan}
        self.state.set_switches(disabled_plans=sorted(disabled), changed_by=actor)

    def metadata(self) -> dict[str, Any]:
        from recoveryctl.emulator.template import TemplateError, find_template

        try:
            path = self.template_path or find_template(self.cdk_out)
            template = json.loads(Path(path).read_text())
        except TemplateError as exc:
            raise BackendError(str(exc)) from exc
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the template {path}: {exc}: run `make synth`") from exc
        return (template.get("Metadata") or {}).get(METADATA_KEY) or {}


# --- deployed --------------------------------------------------------------------------------
class DeployedBackend(Backend):
    """A stack deployed in an AWS account, found by name through CloudFormation."""

    target = "deployed"

    def __init__(self, stack: str = DEFAULT_STACK, region: str | None = None, session: Any = None) -> None:
        import boto3

        self.stack = stack
        self.session = session or boto3.session.Session(region_name=region)
        self.region = region or self.session.region_name
        if not self.region:
            raise BackendError("no AWS region: pass --region, or set AWS_REGION (or a region in your AWS profile)")
        self._clients: dict[str, Any] = {}
        self.outputs = self._find_stack()
        self._metadata: dict[str, Any] | None = None
        self._store: Any = None
        self.listing_note = ""

    def describe(self) -> str:
        return f"stack {self.stack} in {self.region}"

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    def call(self, what: str, function: Any, **kwargs: Any) -> Any:
        """One AWS call, its failures said in words a person can act on."""
        from botocore.exceptions import BotoCoreError, ClientError

        from core.errors import RecoveryError

        try:
            return function(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise explain(what, exc) from exc
        except RecoveryError as exc:  # the store classified it: explained by the AWS error behind it
            cause = exc.__cause__
            raise explain(what, cause if isinstance(cause, (BotoCoreError, ClientError)) else exc) from exc

    def _find_stack(self) -> dict[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        stacks: list[dict[str, Any]] = []
        try:
            for page in self.client("cloudformation").get_paginator("describe_stacks").paginate(StackName=self.stack):
                stacks.extend(page.get("Stacks", []))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationError" and "does not exist" in str(exc):
                raise BackendError(
                    f"stack {self.stack} not found in {self.region}: deploy it with `make deploy`, "
                    "or pass --stack NAME / --region REGION"
                ) from exc
            raise explain("cloudformation:DescribeStacks", exc) from exc
        except BotoCoreError as exc:
            raise explain("cloudformation:DescribeStacks", exc) from exc
        if not stacks:
            raise BackendError(f"stack {self.stack} not found in {self.region}: deploy it with `make deploy`")
        stack = stacks[0]
        if stack.get("StackStatus", "").endswith("_FAILED") or stack.get("StackStatus") == "DELETE_COMPLETE":
            raise BackendError(
                f"stack {self.stack} is {stack['StackStatus']}: fix the deployment (`make deploy`) and try again"
            )
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        constants = _constants()
        missing = [k for k in (constants.OUTPUT_TABLE, constants.OUTPUT_STATE_MACHINE) if k not in outputs]
        if missing:
            raise BackendError(
                f"stack {self.stack} has no output {', '.join(missing)}: is it the impairment recovery stack? "
                "Pass --stack with the right name"
            )
        return outputs

    @property
    def table_name(self) -> str:
        return self.outputs[_constants().OUTPUT_TABLE]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs[_constants().OUTPUT_STATE_MACHINE]

    @property
    def store(self) -> Any:
        from core.store import RecoveryStore

        if self._store is None:
            self._store = RecoveryStore(self.table_name, client=self.client("dynamodb"), session=self.session)
        return self._store

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            body = self.call(
                "cloudformation:GetTemplate",
                self.client("cloudformation").get_template,
                StackName=self.stack,
                TemplateStage="Original",
            ).get("TemplateBody")
            if isinstance(body, str):
                try:
                    body = json.loads(body)
                except ValueError:
                    body = {}  # a YAML template: not one this project deploys
            self._metadata = ((body or {}).get("Metadata") or {}).get(METADATA_KEY) or {}
        return self._metadata

    def impairments(self, since: datetime | None = None) -> list[dict[str, Any]]:
        store = self.store
        workloads = [w["name"] for w in self.metadata().get("workloads") or [] if w.get("name")]
        if workloads:
            self.listing_note = f"GSI1 query per workload ({', '.join(workloads)})"
            records: list[dict[str, Any]] = []
            for workload in workloads:
                records.extend(self.call("dynamodb:Query", store.list_impairments, workload=workload, since=since))
            return _by_detected(records)
        self.listing_note = "filtered scan (the stack's template names no workloads)"
        return _by_detected([r for r in self._scan_records() if _detected_since(r, since)])

    def _scan_records(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Attr

        table = self.store.table
        kwargs: dict[str, Any] = {"FilterExpression": Attr("sk").eq("RECORD") & Attr("pk").begins_with("IMPAIRMENT#")}
        items: list[dict[str, Any]] = []
        while True:
            page = self.call("dynamodb:Scan", table.scan, **kwargs)
            items.extend(jsonable(page.get("Items", [])))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def impairment(self, impairment_id: str) -> dict[str, Any] | None:
        return self.call("dynamodb:GetItem", self.store.get_impairment, impairment_id=impairment_id)

    def actions(self, impairment_id: str) -> list[dict[str, Any]]:
        return self.call("dynamodb:Query", self.store.list_actions, impairment_id=impairment_id)

    def executions(self, since: datetime | None = None) -> dict[str, dict[str, Any]]:
        sfn = self.client("stepfunctions")
        found: dict[str, dict[str, Any]] = {}
        paginator = sfn.get_paginator("list_executions")
        pages = self.call(
            "states:ListExecutions", lambda: list(paginator.paginate(stateMachineArn=self.state_machine_arn))
        )
        for page in pages:  # newest first
            for summary in page.get("executions", []):
                if since is not None and summary["startDate"] < since:
                    return found
                found[summary["name"]] = jsonable(summary)
        return found

    def execution(self, record: dict[str, Any]) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        arn = record.get("execution_arn") or self._execution_arn(record.get("impairment_id", ""))
        try:
            described = self.client("stepfunctions").describe_execution(executionArn=arn)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ExecutionDoesNotExist", "InvalidArn"):
                return None
            raise explain("states:DescribeExecution", exc) from exc
        described.pop("ResponseMetadata", None)
        return jsonable(described)

    def _execution_arn(self, name: str) -> str:
        # arn:aws:states:<region>:<account>:stateMachine:<machine> -> ...:execution:<machine>:<name>
        prefix, machine = self.state_machine_arn.rsplit(":stateMachine:", 1)
        return f"{prefix}:execution:{machine}:{name}"

    def history(self, execution: dict[str, Any]) -> list[dict[str, Any]]:
        paginator = self.client("stepfunctions").get_paginator("get_execution_history")
        pages = self.call(
            "states:GetExecutionHistory", lambda: list(paginator.paginate(executionArn=execution["executionArn"]))
        )
        return [jsonable(event) for page in pages for event in page.get("events", [])]

    def switches(self) -> dict[str, Any]:
        return self.call("dynamodb:GetItem", self.store.get_switches)

    def set_paused(self, paused: bool, reason: str, actor: str) -> None:
        self.call("dynamodb:UpdateItem", self.store.set_paused, paused=paused, reason=reason, actor=actor)

    def set_plan_enabled(self, plan: str, enabled: bool, actor: str) -> None:
        self.call("dynamodb:UpdateItem", self.store.set_plan_enabled, plan=plan, enabled=enabled, actor=actor)

    def paging(self) -> dict[str, Any]:
        """The escalation topic's subscriptions (ListSubscriptionsByTopic, every page of up to
        100): by protocol, confirmed or pending. Only a confirmed subscription receives a page;
        SNS lists one awaiting its confirmation with SubscriptionArn "PendingConfirmation"."""
        topic = self.outputs.get(_constants().OUTPUT_TOPIC)
        if not topic:
            return {"topic_arn": None, "confirmed": 0, "pending": 0, "by_protocol": {}, "can_page": None}
        paginator = self.client("sns").get_paginator("list_subscriptions_by_topic")
        pages = self.call("sns:ListSubscriptionsByTopic", lambda: list(paginator.paginate(TopicArn=topic)))
        by_protocol: dict[str, int] = {}
        confirmed = pending = 0
        for page in pages:
            for subscription in page.get("Subscriptions", []):
                if str(subscription.get("SubscriptionArn", "")).startswith("arn:"):
                    confirmed += 1
                    protocol = str(subscription.get("Protocol") or "?")
                    by_protocol[protocol] = by_protocol.get(protocol, 0) + 1
                elif subscription.get("SubscriptionArn") == "PendingConfirmation":
                    pending += 1
        return {
            "topic_arn": topic,
            "confirmed": confirmed,
            "pending": pending,
            "by_protocol": dict(sorted(by_protocol.items())),
            "can_page": confirmed > 0,
        }

    def actor(self) -> str:
        """Who is acting: the caller's IAM identity."""
        identity = self.call("sts:GetCallerIdentity", self.client("sts").get_caller_identity)
        return str(identity.get("Arn") or identity.get("UserId"))


def _constants() -> Any:
    """infra/constants.py: the stack's output names (one definition, shared with the stack). The
    CLI runs from the repository (it needs functions/ too), so the repository root is importable."""
    from recoveryctl import infra_importable

    infra_importable()
    from infra import constants

    return constants


def explain(what: str, exc: Exception) -> BackendError:
    """An AWS failure as a BackendError that says what to do."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoCredentialsError):
        return BackendError("no AWS credentials found: sign in (aws sso login, or set AWS_PROFILE) and try again")
    if isinstance(exc, NoRegionError):
        return BackendError("no AWS region: pass --region, or set AWS_REGION")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", "")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return BackendError(f"{what}: access denied ({message}): use credentials allowed to operate the stack")
        if code in ("ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId"):
            return BackendError(f"{what}: your AWS credentials are not valid ({code}): sign in again")
        return BackendError(f"{what} failed: {code}: {message}")
    return BackendError(f"{what} failed: {exc}")
