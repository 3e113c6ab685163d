"""IAM's policy simulation for tests under moto, which has none: a botocore before-call hook on
the default session answers iam:SimulatePrincipalPolicy in its real shape (one EvaluationResult
per action with ResourceSpecificResults, IsTruncated/Marker pages of `page_size` actions), from
a table of decisions; every call is recorded with the account whose credentials made it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse


@dataclass
class Simulator:
    # (role ARN, IAM action, resource) -> decision; anything else is allowed
    decisions: dict[tuple[str, str, str], str] = field(default_factory=dict)
    page_size: int = 100
    throttle: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(params)
        if self.throttle:
            return {
                "Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        role, actions, resources = params["PolicySourceArn"], params["ActionNames"], params.get("ResourceArns", ["*"])
        start = int(params.get("Marker") or 0)
        page = actions[start : start + self.page_size]
        results = []
        for action in page:
            specific = [
                {"EvalResourceName": r, "EvalResourceDecision": self.decisions.get((role, action, r), "allowed")}
                for r in resources
            ]
            overall = next(
                (s["EvalResourceDecision"] for s in specific if s["EvalResourceDecision"] != "allowed"), "allowed"
            )
            results.append(
                {
                    "EvalActionName": action,
                    "EvalResourceName": "*",
                    "EvalDecision": overall,
                    "MatchedStatements": [],
                    "MissingContextValues": [],
                    "ResourceSpecificResults": specific,
                }
            )
        more = start + self.page_size < len(actions)
        return {
            "EvaluationResults": results,
            "IsTruncated": more,
            **({"Marker": str(start + self.page_size)} if more else {}),
            "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "simulated"},
        }


@pytest.fixture
def iam_simulation(mocked_aws: None) -> Iterator[Simulator]:
    import boto3

    simulator = Simulator()
    session = boto3._get_default_session()

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["simulated_params"] = dict(params)

    def answer(model: Any, context: dict[str, Any], request_signer: Any = None, **kwargs: Any) -> Any:
        parsed = simulator.answer(context["simulated_params"])
        status = parsed["ResponseMetadata"]["HTTPStatusCode"]
        return AWSResponse("https://iam.amazonaws.com", status, {}, None), parsed

    session.events.register("before-parameter-build.iam.SimulatePrincipalPolicy", remember, unique_id="sim-params")
    session.events.register("before-call.iam.SimulatePrincipalPolicy", answer, unique_id="sim-answer")
    yield simulator
    session.events.unregister("before-call.iam.SimulatePrincipalPolicy", unique_id="sim-answer")
    session.events.unregister("before-parameter-build.iam.SimulatePrincipalPolicy", unique_id="sim-params")
