"""One way for an action to call AWS: a client without SDK retries, and every error classified
for the state machine (transient -> TransientError, retried with backoff; anything else ->
PermanentError, which leads to rollback)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core import aws
from core.errors import TransientError, classify_client_error


def client(service: str, account: str | None = None) -> Any:
    """The client an action uses: no SDK retries, since retries belong to the state machine; in
    the impairment's member account when it has one (the member role, assumed)."""
    return aws.client(service, max_attempts=1, account=account)


def call(client: Any, operation: str, *, transient_codes: Iterable[str] = (), **kwargs: Any) -> Any:
    """Call `operation` (a boto3 method name) and classify any error it raises.

    transient_codes: further error codes that are transient for this call only (for example
    SSM's InvocationDoesNotExist just after SendCommand, before the invocation is visible).
    The error names the IAM action ("autoscaling:SetDesiredCapacity") and keeps the AWS code.
    """
    try:
        return getattr(client, operation)(**kwargs)
    except Exception as exc:
        prefix = client.meta.service_model.signing_name
        api_name = client.meta.method_to_api_mapping.get(operation, operation)
        name = f"{prefix}:{api_name}"
        # The table in core.errors decides for every call (its service part is the signing name);
        # `transient_codes` adds what is transient for this call only.
        error = classify_client_error(exc, name)
        if not isinstance(error, TransientError) and error.details.get("code") in set(transient_codes):
            error = TransientError(str(error), **error.details)
        raise error from exc


def pages(
    client: Any,
    operation: str,
    result_key: str,
    token_key: str = "NextToken",  # noqa: S107 - the name of the pagination field, not a secret
    **kwargs: Any,
) -> list[Any]:
    """Every item of a paginated call whose pages are chained by `token_key` (request and response)."""
    items: list[Any] = []
    while True:
        page = call(client, operation, **kwargs)
        items.extend(page.get(result_key, []))
        token = page.get(token_key)
        if not token:
            return items
        kwargs[token_key] = token
