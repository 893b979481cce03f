"""The SageMaker pipelines and model package groups of a deployed stack, created in moto.

moto's CloudFormation skips `AWS::SageMaker::Pipeline` and `AWS::SageMaker::ModelPackageGroup`
(and still reports the stack complete), so after `cdk deploy` they do not exist locally. This
reads them from the template in the cloud assembly that deploy used, resolves their
CloudFormation values against what moto did deploy (exports, resources, pseudo parameters), and
creates them through the SageMaker API: the pipeline definition is the very text the template
holds, with its `Fn::Sub` values filled in as CloudFormation would.

    created = create_skipped_sagemaker_resources(aws, Path("cdk.out"), "mlops-local-pipelines")
    created.pipelines   # ["mlops-local-cnn", ...]
    create_stage_pipelines(aws, Path("cdk.out"), "mlops-local")   # the pipelines and batch stacks'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from infra import naming
from mlops.local.moto import LocalAws
from mlops.local.pipeline_references import DefinitionError

PIPELINE = "AWS::SageMaker::Pipeline"
MODEL_PACKAGE_GROUP = "AWS::SageMaker::ModelPackageGroup"
# Resource properties that are also Create* request fields (the rest are CloudFormation's own).
GROUP_REQUEST_KEYS = ("ModelPackageGroupName", "ModelPackageGroupDescription", "Tags")
PIPELINE_REQUEST_KEYS = (
    "PipelineName",
    "PipelineDisplayName",
    "PipelineDescription",
    "RoleArn",
    "Tags",
    "ParallelismConfiguration",
)
_SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]+)\}")


@dataclass
class CreatedResources:
    groups: list[str] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)


def stack_template(assembly_dir: Path, stack_name: str) -> dict[str, Any]:
    """The template of `stack_name` in the cloud assembly (its manifest names the file)."""
    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    for artifact_id, artifact in manifest["artifacts"].items():
        if (
            artifact["type"] == "aws:cloudformation:stack"
            and artifact["properties"].get("stackName", artifact_id) == stack_name
        ):
            return json.loads((assembly_dir / artifact["properties"]["templateFile"]).read_text())
    raise DefinitionError(f"the cloud assembly {assembly_dir} has no stack {stack_name}")


def create_stage_pipelines(aws: LocalAws, assembly_dir: Path, prefix: str) -> CreatedResources:
    """The training, tuning and monitor pipelines and the groups of the stage's pipelines stack,
    and the transform pipelines of its batch stack, so that whatever starts one finds it."""
    created = CreatedResources()
    for suffix in (naming.PIPELINES_STACK_SUFFIX, naming.BATCH_STACK_SUFFIX):
        stack = create_skipped_sagemaker_resources(aws, assembly_dir, naming.stack_name(prefix, suffix))
        created.groups += stack.groups
        created.pipelines += stack.pipelines
    return created


def create_skipped_sagemaker_resources(aws: LocalAws, assembly_dir: Path, stack_name: str) -> CreatedResources:
    """Creates each model package group, then each pipeline, of the stack that moto lacks."""
    resources = stack_template(assembly_dir, stack_name).get("Resources", {})
    values = TemplateValues(aws, stack_name, resources)
    sagemaker = aws.client("sagemaker")
    created = CreatedResources()
    for resource in resources.values():
        if resource["Type"] == MODEL_PACKAGE_GROUP:
            properties = values.resolve(resource.get("Properties", {}))
            if not _exists(
                sagemaker.describe_model_package_group, ModelPackageGroupName=properties["ModelPackageGroupName"]
            ):
                sagemaker.create_model_package_group(**_request(properties, GROUP_REQUEST_KEYS))
                created.groups.append(properties["ModelPackageGroupName"])
    for resource in resources.values():
        if resource["Type"] == PIPELINE:
            properties = values.resolve(resource.get("Properties", {}))
            if not _exists(sagemaker.describe_pipeline, PipelineName=properties["PipelineName"]):
                sagemaker.create_pipeline(**_create_pipeline_request(aws, properties))
                created.pipelines.append(properties["PipelineName"])
    return created


def _create_pipeline_request(aws: LocalAws, properties: dict[str, Any]) -> dict[str, Any]:
    """AWS::SageMaker::Pipeline properties -> CreatePipeline (the definition as JSON text)."""
    source = properties["PipelineDefinition"]
    if "PipelineDefinitionBody" in source:
        body = source["PipelineDefinitionBody"]
    else:
        location = source["PipelineDefinitionS3Location"]
        body = aws.client("s3").get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"].read().decode()
    return {
        **_request(properties, PIPELINE_REQUEST_KEYS),
        "PipelineDefinition": body if isinstance(body, str) else json.dumps(body),
    }


def _request(properties: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The resource properties that the Create* API takes under the same names."""
    return {key: value for key, value in properties.items() if key in keys}


def _exists(describe: Any, **name: str) -> bool:
    try:
        describe(**name)
    except ClientError:
        return False
    return True


class TemplateValues:
    """CloudFormation's intrinsic functions, resolved against a deployed stack in moto.

    Ref (pseudo parameters and resources), Fn::ImportValue, Fn::Join, Fn::Sub and Fn::GetAtt of
    an IAM role's Arn: what this project's pipeline resources use. Anything else is named in a
    DefinitionError rather than passed on unresolved.
    """

    def __init__(self, aws: LocalAws, stack_name: str, resources: dict[str, Any]) -> None:
        self._aws = aws
        self._stack_name = stack_name
        self._resources = resources
        self._exports: dict[str, str] | None = None
        self._physical_ids: dict[str, str] | None = None
        self._pseudo = {
            "AWS::AccountId": aws.account,
            "AWS::Region": aws.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
        }

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::ImportValue":
                return self._import(self.resolve(argument))
            if function == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::GetAtt":
                logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self._get_att(logical_id, attribute)
            if function.startswith("Fn::"):
                raise DefinitionError(
                    f"{function} in stack {self._stack_name} is not a function the local runner resolves"
                )
        return {key: self.resolve(item) for key, item in value.items()}

    def _ref(self, name: str) -> str:
        if name in self._pseudo:
            return self._pseudo[name]
        return self._physical_id(name)

    def _physical_id(self, logical_id: str) -> str:
        if self._physical_ids is None:
            pages = (
                self._aws.client("cloudformation")
                .get_paginator("list_stack_resources")
                .paginate(StackName=self._stack_name)
            )
            self._physical_ids = {
                summary["LogicalResourceId"]: summary.get("PhysicalResourceId", "")
                for page in pages
                for summary in page["StackResourceSummaries"]
            }
        if not self._physical_ids.get(logical_id):
            raise DefinitionError(f"resource {logical_id} of stack {self._stack_name} is not deployed")
        return self._physical_ids[logical_id]

    def _import(self, export_name: str) -> str:
        if self._exports is None:
            pages = self._aws.client("cloudformation").get_paginator("list_exports").paginate()
            self._exports = {export["Name"]: export["Value"] for page in pages for export in page["Exports"]}
        if export_name not in self._exports:
            raise DefinitionError(f"stack {self._stack_name} imports {export_name}, which no deployed stack exports")
        return self._exports[export_name]

    def _get_att(self, logical_id: str, attribute: str) -> str:
        kind = self._resources.get(logical_id, {}).get("Type")
        if (kind, attribute) != ("AWS::IAM::Role", "Arn"):
            raise DefinitionError(
                f"Fn::GetAtt {logical_id}.{attribute} ({kind}) in stack {self._stack_name}: "
                "the local runner resolves only the Arn of IAM roles"
            )
        role = self._aws.client("iam").get_role(RoleName=self._physical_id(logical_id))
        return role["Role"]["Arn"]

    def _sub(self, argument: str | list[Any]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def value(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal:
                return "${" + name + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self._get_att(*name.split(".", 1))
            return self._ref(name)

        return _SUB_VARIABLE.sub(value, text)
