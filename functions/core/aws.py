"""The one way to reach AWS: boto3 clients, created lazily (never at import, so tests under moto
see them) and reused across invocations of a warm Lambda; and the calls made with them, every
error classified (core.errors) and every page followed.

Account- and region-aware: a client for a member account (client(service, account="111122223333"))
uses the credentials of the member role there (MEMBER_ROLE_NAME, deployed by
infra/member_stack.py), assumed through STS and kept until shortly before they expire. This function's own account, or
no account, gives a client of the function's own credentials. A region, when given, is the
client's (the region probe describes its workloads' groups in their region); none is the
function's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import PermanentError, RecoveryError

MEMBER_ROLE_NAME_ENV = "MEMBER_ROLE_NAME"
MEMBER_ACCOUNTS_ENV = "MEMBER_ACCOUNTS"
SESSION_NAME = "impairment-recovery"
# Credentials are renewed this long before they expire, so no call runs with expiring ones.
REFRESH_BEFORE = timedelta(minutes=5)

# (service, max_attempts, region, timeouts, endpoint) -> the client
_clients: dict[tuple[str, int, str | None, tuple[int, int], str | None], Any] = {}
# (service, max_attempts, region, timeouts, endpoint, account) -> (the credentials it was made with, the client)
_member_clients: dict[tuple[str, int, str | None, tuple[int, int], str | None, str], tuple[dict[str, Any], Any]] = {}
_credentials: dict[str, dict[str, Any]] = {}
_identity: dict[str, str] = {}


class Caches:
    """What a warm Lambda environment keeps between invocations: its clients, the member
    credentials it assumed, its own identity, and what other modules keep there (`kept`, by
    module: core/kube.py's connections). In Lambda one environment runs one invocation at a time,
    so the process's caches (the module's dicts above) are its environment's."""

    __slots__ = ("clients", "credentials", "identity", "kept", "member_clients")

    def __init__(
        self,
        clients: dict | None = None,
        member_clients: dict | None = None,
        credentials: dict | None = None,
        identity: dict | None = None,
        kept: dict | None = None,
    ) -> None:
        self.clients = {} if clients is None else clients
        self.member_clients = {} if member_clients is None else member_clients
        self.credentials = {} if credentials is None else credentials
        self.identity = {} if identity is None else identity
        self.kept = {} if kept is None else kept


_process = Caches(_clients, _member_clients, _credentials, _identity)
# The local emulator runs many invocations at once in one process, each in a warm environment of
# its own: it gives each invocation its environment's caches (None: the process's).
_caches_of_invocation: Callable[[], Caches | None] | None = None


def use_caches(provider: Callable[[], Caches | None] | None) -> None:
    """Take the caches from `provider` (emulator only: the running invocation's; None: the process's)."""
    global _caches_of_invocation
    _caches_of_invocation = provider


def _caches() -> Caches:
    if _caches_of_invocation is not None:
        found = _caches_of_invocation()
        if found is not None:
            return found
    return _process


# (connect, read) seconds of every client unless a caller asks for others.
DEFAULT_TIMEOUTS = (5, 20)


def _config(max_attempts: int, timeouts: tuple[int, int] = DEFAULT_TIMEOUTS) -> Any:
    from botocore.config import Config

    return Config(
        # total_max_attempts: botocore reads `max_attempts` as the retries after the first attempt,
        # so max_attempts=1 would make two attempts where this module promises one.
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=timeouts[0],
        read_timeout=timeouts[1],
        user_agent_extra="impairment-recovery",
    )


def client(
    service: str,
    *,
    max_attempts: int = 3,
    account: str | None = None,
    region: str | None = None,
    timeouts: tuple[int, int] = DEFAULT_TIMEOUTS,
    endpoint: str | None = None,
) -> Any:
    """A client with botocore's standard retry mode, in `account` (None: this function's own) and
    `region` (None: the function's own), with (connect, read) `timeouts` in seconds, at `endpoint`
    (None: the service's; ARC's routing controls are reached at their cluster's endpoints).

    Recovery actions pass max_attempts=1: retries there belong to one layer, the state machine,
    which retries TransientError with backoff and jitter. The region probe passes another region
    and short timeouts: an impaired region must cost it seconds, not the default's minute.
    """
    import boto3

    options: dict[str, Any] = {"region_name": region} if region else {}
    if endpoint:
        options["endpoint_url"] = endpoint
    caches = _caches()
    if not account or account == own_account():
        key = (service, max_attempts, region, timeouts, endpoint)
        if key not in caches.clients:
            caches.clients[key] = boto3.client(service, config=_config(max_attempts, timeouts), **options)
        return caches.clients[key]
    credentials = _member_credentials(account)
    member_key = (service, max_attempts, region, timeouts, endpoint, account)
    cached = caches.member_clients.get(member_key)
    if cached is None or cached[0] is not credentials:
        made = boto3.client(
            service,
            config=_config(max_attempts, timeouts),
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            **options,
        )
        cached = caches.member_clients[member_key] = (credentials, made)
    return cached[1]


def own_account() -> str:
    """This function's account: from its ARN when an entry point gave it (know_identity), else STS
    GetCallerIdentity, once per warm Lambda."""
    known = _caches().identity
    if "account" not in known:
        identity = client("sts").get_caller_identity()
        known["account"] = identity["Account"]
        known["partition"] = identity["Arn"].split(":", 2)[1]
    return known["account"]


def know_identity(function_arn: Any) -> None:
    """Take this function's account and partition from its own ARN (the invocation context's
    invoked_function_arn), so no GetCallerIdentity is needed: that call, made once per cold
    environment of every function, was the largest share of a cross-account recovery's STS calls."""
    parts = function_arn.split(":") if isinstance(function_arn, str) else []
    if len(parts) < 7 or parts[0] != "arn" or not parts[4].isdigit():
        return  # not a Lambda ARN (a test's stand-in): GetCallerIdentity on first need
    known = _caches().identity
    if "account" not in known:
        known["account"] = parts[4]
        known["partition"] = parts[1]


def member_accounts() -> list[str] | None:
    """The configured member accounts (MEMBER_ACCOUNTS, a JSON list), or None when none are."""
    import json

    raw = os.environ.get(MEMBER_ACCOUNTS_ENV)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise PermanentError(f"{MEMBER_ACCOUNTS_ENV} is not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise PermanentError(f"{MEMBER_ACCOUNTS_ENV} is not a JSON list of account ids")
    return value


def member_role_arn(account: str) -> str:
    """The member role to assume in `account`; refused for an account that is not a member."""
    role_name = os.environ.get(MEMBER_ROLE_NAME_ENV)
    if not role_name:
        raise PermanentError(f"account {account} is not this deployment's and no member accounts are configured")
    members = member_accounts()
    if members is not None and account not in members:
        raise PermanentError(f"account {account} is not a member account ({', '.join(members) or 'none'})")
    own_account()
    return f"arn:{_caches().identity['partition']}:iam::{account}:role/{role_name}"


def member_credentials(account: str) -> dict[str, Any]:
    """The member role's credentials in `account` (cached until shortly before they expire): for
    what signs with them outside a client (an EKS token, core/kube.py)."""
    return _member_credentials(account)


def _member_credentials(account: str) -> dict[str, Any]:
    cached = _caches().credentials.get(account)
    if cached is not None and cached["Expiration"] - REFRESH_BEFORE > datetime.now(UTC):
        return cached
    from core.errors import classify_client_error

    role_arn = member_role_arn(account)
    try:
        response = client("sts").assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)
    except Exception as exc:
        raise classify_client_error(exc, "sts:AssumeRole") from exc
    credentials = dict(response["Credentials"])
    expiration = credentials["Expiration"]
    if isinstance(expiration, str):
        expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    credentials["Expiration"] = expiration
    _caches().credentials[account] = credentials
    return credentials


def reset() -> None:
    """Forget cached clients, credentials and identity (tests; in the emulator, the running
    invocation's environment's)."""
    caches = _caches()
    for cache in (caches.clients, caches.member_clients, caches.credentials, caches.identity, caches.kept):
        cache.clear()


def kept(module: str) -> dict[str, Any]:
    """What `module` keeps in the warm environment between invocations (a dict it owns)."""
    return _caches().kept.setdefault(module, {})


# --- calling: every error classified ------------------------------------------------------------


def _operation_name(client: Any, operation: str) -> str:
    """ "service:Operation" as IAM names it (the signing name: elbv2 is elasticloadbalancing),
    which is also how core.errors picks a service's transient codes."""
    api_name = client.meta.method_to_api_mapping.get(operation, operation)
    return f"{client.meta.service_model.signing_name}:{api_name}"


def _classified(exc: Exception, client: Any, operation: str, transient_codes: Iterable[str] = ()) -> RecoveryError:
    from core.errors import TransientError, classify_client_error

    error = classify_client_error(exc, _operation_name(client, operation))
    if not isinstance(error, TransientError) and error.details.get("code") in set(transient_codes):
        error = TransientError(str(error), **error.details)
    return error


def call(client: Any, operation: str, *, transient_codes: Iterable[str] = (), **kwargs: Any) -> Any:
    """Call `operation` (a boto3 method name) and classify any error it raises.

    transient_codes: further error codes that are transient for this call only (for example
    SSM's InvocationDoesNotExist just after SendCommand, before the invocation is visible).
    The error names the IAM action ("autoscaling:SetDesiredCapacity") and keeps the AWS code.
    """
    try:
        return getattr(client, operation)(**kwargs)
    except Exception as exc:
        raise _classified(exc, client, operation, transient_codes) from exc


def pages(client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every page of a paginated call (botocore's paginator knows each API's token fields), with
    every error classified as `call` does. PaginationConfig is the paginator's."""
    try:
        yield from client.get_paginator(operation).paginate(**kwargs)
    except Exception as exc:
        raise _classified(exc, client, operation) from exc


def items(client: Any, operation: str, result_key: str, **kwargs: Any) -> list[Any]:
    """Every item (under `result_key`) of every page of a paginated call."""
    return [item for page in pages(client, operation, **kwargs) for item in page.get(result_key, [])]
