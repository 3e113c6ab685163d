"""Reads a synthesized CloudFormation template (cdk.out) and resolves what the emulator needs:
physical names, ARNs and the intrinsic functions CDK emits."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TemplateError(RuntimeError):
    """The template cannot be read or resolved."""


def find_template(cdk_out: Path) -> Path:
    """The stack template in a cloud assembly (the first CloudFormation stack artifact)."""
    manifest = cdk_out / "manifest.json"
    if not manifest.exists():
        raise TemplateError(f"no synthesized stack in {cdk_out}: run `make synth` (or `npx cdk synth`) first")
    artifacts = json.loads(manifest.read_text()).get("artifacts", {})
    for artifact in artifacts.values():
        if artifact.get("type") == "aws:cloudformation:stack":
            return cdk_out / artifact["properties"]["templateFile"]
    raise TemplateError(f"{manifest} lists no CloudFormation stack")


@dataclass
class Template:
    body: dict[str, Any]
    stack_name: str
    region: str
    account: str
    partition: str = "aws"
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, region: str, account: str) -> Template:
        try:
            body = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise TemplateError(f"cannot read template {path}: {exc}") from exc
        stack_name = Path(path).name.removesuffix(".template.json")
        template = cls(body=body, stack_name=stack_name, region=region, account=account)
        template._assign_names()
        return template

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.body.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == resource_type}

    @property
    def metadata(self) -> dict[str, Any]:
        return self.body.get("Metadata", {})

    # --- names and ARNs ---
    _NAME_PROPS = {
        "AWS::Lambda::Function": "FunctionName",
        "AWS::DynamoDB::GlobalTable": "TableName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::SNS::Topic": "TopicName",
        "AWS::SQS::Queue": "QueueName",
        "AWS::Events::EventBus": "Name",
        "AWS::Events::Rule": "Name",
        "AWS::StepFunctions::StateMachine": "StateMachineName",
        "AWS::CloudWatch::Alarm": "AlarmName",
        "AWS::IAM::Role": "RoleName",
        "AWS::Logs::LogGroup": "LogGroupName",
    }

    def _assign_names(self) -> None:
        for logical_id, resource in self.resources.items():
            prop = self._NAME_PROPS.get(resource.get("Type", ""))
            explicit = (resource.get("Properties") or {}).get(prop) if prop else None
            if isinstance(explicit, str):
                self.names[logical_id] = explicit
            else:
                # CloudFormation's own pattern: <stack>-<logical id>-<suffix>; kept short for Lambda (64).
                self.names[logical_id] = f"{self.stack_name}-{logical_id}"[:60]

    def arn(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        name = self.names[logical_id]
        kind = resource["Type"]
        base = f"arn:{self.partition}"
        return {
            "AWS::Lambda::Function": f"{base}:lambda:{self.region}:{self.account}:function:{name}",
            "AWS::DynamoDB::GlobalTable": f"{base}:dynamodb:{self.region}:{self.account}:table/{name}",
            "AWS::DynamoDB::Table": f"{base}:dynamodb:{self.region}:{self.account}:table/{name}",
            "AWS::SNS::Topic": f"{base}:sns:{self.region}:{self.account}:{name}",
            "AWS::SQS::Queue": f"{base}:sqs:{self.region}:{self.account}:{name}",
            "AWS::Events::EventBus": f"{base}:events:{self.region}:{self.account}:event-bus/{name}",
            "AWS::Events::Rule": f"{base}:events:{self.region}:{self.account}:rule/{name}",
            "AWS::StepFunctions::StateMachine": f"{base}:states:{self.region}:{self.account}:stateMachine:{name}",
            "AWS::CloudWatch::Alarm": f"{base}:cloudwatch:{self.region}:{self.account}:alarm:{name}",
            "AWS::IAM::Role": f"{base}:iam::{self.account}:role/{name}",
            "AWS::Logs::LogGroup": f"{base}:logs:{self.region}:{self.account}:log-group:{name}:*",
            "AWS::KMS::Key": f"{base}:kms:{self.region}:{self.account}:key/{name}",
        }.get(kind, f"{base}:emulated:{self.region}:{self.account}:{logical_id}")

    def ref(self, logical_id: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/emulated"
            ),
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id in self.body.get("Parameters", {}):
            return str(self.body["Parameters"][logical_id].get("Default", ""))
        if logical_id not in self.resources:
            raise TemplateError(f"Ref to unknown resource {logical_id}")
        kind = self.resources[logical_id]["Type"]
        if kind in ("AWS::SNS::Topic", "AWS::StepFunctions::StateMachine"):
            return self.arn(logical_id)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.names[logical_id]}"
        return self.names[logical_id]

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute in ("Arn", "StateMachineArn"):
            return self.arn(logical_id)
        if attribute in ("Name", "TopicName", "QueueName"):
            return self.names[logical_id]
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        raise TemplateError(f"unsupported Fn::GetAtt {logical_id}.{attribute}")

    # --- intrinsic functions ---
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in self.resolve(parts))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, source = arg
                return str(self.resolve(source)).split(separator)
            if key.startswith("Fn::"):
                raise TemplateError(f"unsupported intrinsic {key}")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)
