"""OpsCenter: one OpsItem per escalated impairment, resolved when the impairment is.

A page creates the OpsItem with the page's dedup key as its /aws/dedup string (Systems Manager then
creates no second one while the first is open), the context as operational data (searchable: the
impairment, the workload, the dedup key; the whole message as text) and the affected resources
that are ARNs as /aws/resources. A resolve finds the open OpsItems of its dedup key
(DescribeOpsItems, filtered by that operational data) and sets them Resolved.

Design: docs/operations.md#opsitems
"""

from __future__ import annotations

import json
from typing import Any

from core import aws, paging
from core.errors import classify_client_error

SOURCE = "impairment-recovery"
DEDUP_DATA_KEY = "recovery_dedup_key"
_PRIORITY = {"critical": 1, "error": 2, "warning": 3, "info": 4}  # 1 is the highest
_DETAILS_LIMIT = 20_000
_OPEN = ["Open", "InProgress"]


def sync(body: Any, ssm: Any = None) -> str | None:
    """Create or resolve the OpsItem of a topic message; what was done (None: not a page).
    Raises TransientError to be tried again, PermanentError for a request that cannot succeed."""
    envelope = paging.envelope(body)
    if envelope is None:
        return None
    client = ssm or aws.client("ssm")
    if envelope["event_action"] == paging.RESOLVE:
        return f"resolved {len(resolve(client, envelope['dedup_key']))}"
    return f"opened {create(client, body, envelope)}"


def create(ssm: Any, body: dict[str, Any], envelope: dict[str, str]) -> str:
    """CreateOpsItem; the id of the OpsItem (the one already open for this dedup key, if any)."""
    message = paging.details(body)
    message.pop("event_action", None)
    impairment = message.get("impairment") if isinstance(message.get("impairment"), dict) else {}
    data = {
        "/aws/dedup": _data(json.dumps({"dedupString": envelope["dedup_key"]}), searchable=True),
        DEDUP_DATA_KEY: _data(envelope["dedup_key"], searchable=True),
        "workload": _data(envelope["workload"], searchable=True),
        "details": _data(json.dumps(message, default=str)[:_DETAILS_LIMIT], searchable=False),
    }
    if envelope.get("impairment_id"):
        data["impairment_id"] = _data(envelope["impairment_id"], searchable=True)
    if envelope.get("execution_url"):
        data["execution"] = _data(envelope["execution_url"], searchable=False)
    arns = [r for r in paging.related_resources(impairment) if r.split("/", 1)[-1].startswith("arn:")]
    if arns:
        data["/aws/resources"] = _data(json.dumps([{"arn": a.split("/", 1)[-1]} for a in arns]), searchable=True)
    request = {
        "Title": str(body["content"].get("title") or message.get("summary") or "recovery needs a human")[:1024],
        "Description": str(message.get("summary") or body["content"].get("description") or "-")[:2048],
        "Source": SOURCE,
        "Category": "Availability",
        "Severity": str(_PRIORITY.get(envelope["severity"], 2)),
        "Priority": _PRIORITY.get(envelope["severity"], 2),
        "OperationalData": data,
    }
    try:
        return str(ssm.create_ops_item(**request)["OpsItemId"])
    except Exception as exc:
        if _code(exc) == "OpsItemAlreadyExistsException":
            return str(getattr(exc, "response", {}).get("OpsItemId") or "existing")
        raise classify_client_error(exc, "ssm:CreateOpsItem") from exc


def resolve(ssm: Any, dedup_key: str) -> list[str]:
    """Set every open OpsItem of the dedup key Resolved; their ids."""
    found = open_items(ssm, dedup_key)
    for ops_item_id in found:
        try:
            ssm.update_ops_item(OpsItemId=ops_item_id, Status="Resolved")
        except Exception as exc:
            if _code(exc) == "OpsItemNotFoundException":
                continue  # deleted meanwhile: nothing left to resolve
            raise classify_client_error(exc, "ssm:UpdateOpsItem") from exc
    return found


def open_items(ssm: Any, dedup_key: str) -> list[str]:
    """The ids of the open OpsItems carrying the dedup key, every page of DescribeOpsItems."""
    filters = [
        {
            "Key": "OperationalData",
            "Values": [json.dumps({"key": DEDUP_DATA_KEY, "value": dedup_key})],
            "Operator": "Equal",
        },
        {"Key": "Status", "Values": _OPEN, "Operator": "Equal"},
    ]
    found: list[str] = []
    token: str | None = None
    while True:
        try:
            answer = ssm.describe_ops_items(
                OpsItemFilters=filters, MaxResults=50, **({"NextToken": token} if token else {})
            )
        except Exception as exc:
            raise classify_client_error(exc, "ssm:DescribeOpsItems") from exc
        found += [str(s["OpsItemId"]) for s in answer.get("OpsItemSummaries") or [] if s.get("OpsItemId")]
        token = answer.get("NextToken")
        if not token:
            return found


def _data(value: str, searchable: bool) -> dict[str, str]:
    return {"Value": value, "Type": "SearchableString" if searchable else "String"}


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")
