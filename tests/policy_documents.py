"""Every IAM policy document of a synthesized cloud assembly, with its CloudFormation values filled in.

A linter of IAM's vocabulary checks resource ARNs against each action's resource types, so the
documents must hold ARNs, not `{"Fn::ImportValue": ...}`. Values are filled in as CloudFormation
would at deploy time: pseudo parameters from the stage, `Ref`/`Fn::GetAtt` of the template's own
resources by type (a bucket's name, a key's ARN, a role's ARN), `Fn::ImportValue` from the
exporting template's output, `Fn::Join` and `Fn::Sub`. A value this does not know fails loudly
rather than turning into a wildcard.

    for document in policy_documents(synth.template_files, account="123456789012", region="us-east-1"):
        document.where, document.kind, document.policy, document.attached_to
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Resource types whose policies this reads, and where in their properties the documents are.
_IDENTITY = "identity"
_RESOURCE = "resource"
_TRUST = "trust"


@dataclass(frozen=True)
class PolicyDocument:
    where: str
    """`<template>/<logical id>/<policy name>`: where the document is written."""
    kind: str
    """identity (a role's or a policy resource's), resource (bucket, key, model package group, event
    bus) or trust (who may assume a role)."""
    policy: dict[str, Any]
    attached_to: tuple[str, ...]
    """ARNs: the roles an identity document is attached to, the role a trust document guards, the
    bucket or key a resource policy is written on (a policy evaluator needs to know whose it is)."""


class _Template:
    def __init__(self, path: Path, assembly: _Assembly) -> None:
        self.name = path.name.removesuffix(".template.json")
        self.body = json.loads(path.read_text())
        self.resources: dict[str, Any] = self.body.get("Resources", {})
        self._assembly = assembly

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Fn::", "Ref")):
            return {key: self.resolve(item) for key, item in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(argument)
        if function == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._get_att(resource, attribute)
        if function == "Fn::Join":
            delimiter, items = argument
            return delimiter.join(str(self.resolve(item)) for item in items)
        if function == "Fn::ImportValue":
            return self._assembly.export(self.resolve(argument))
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            variables = {name: self.resolve(item) for name, item in variables.items()}
            return re.sub(
                r"\$\{([^}]+)\}",
                lambda match: str(
                    variables[match[1]]
                    if match[1] in variables
                    else self._get_att(*match[1].split(".", 1))
                    if "." in match[1]
                    else self._ref(match[1])
                ),
                text,
            )
        raise ValueError(f"{self.name}: cannot fill in {function} ({json.dumps(argument)[:200]})")

    def _ref(self, name: str) -> str:
        pseudo = self._assembly.pseudo_parameters(self.name)
        if name in pseudo:
            return pseudo[name]
        resource = self.resources.get(name)
        if resource is None:
            raise ValueError(f"{self.name}: Ref to {name}, which the template does not define")
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            return self.resolve(properties.get("BucketName", name.lower()))
        if kind == "AWS::KMS::Key":
            return self._key_id(name)
        if kind == "AWS::IAM::Role":
            return self.resolve(properties.get("RoleName", name))
        if kind == "AWS::IAM::OIDCProvider":  # Ref gives the provider's ARN, named after its issuer
            host = self.resolve(properties["Url"]).removeprefix("https://")
            return f"arn:aws:iam::{self._assembly.account}:oidc-provider/{host}"
        raise ValueError(f"{self.name}: Ref to a {kind} ({name}), which this does not fill in")

    def _get_att(self, name: str, attribute: str) -> str:
        resource = self.resources.get(name)
        if resource is None or attribute != "Arn":
            raise ValueError(f"{self.name}: Fn::GetAtt {name}.{attribute}, which this does not fill in")
        kind = resource["Type"]
        account, region = self._assembly.account, self._assembly.region
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self._ref(name)}"
        if kind == "AWS::KMS::Key":
            return f"arn:aws:kms:{region}:{account}:key/{self._key_id(name)}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{account}:role/{self._ref(name)}"
        raise ValueError(f"{self.name}: Fn::GetAtt of a {kind} ({name}), which this does not fill in")

    @staticmethod
    def _key_id(name: str) -> str:
        # A key ID is a UUID; any fixed one will do (linters check the ARN's shape).
        return f"1234abcd-12ab-34cd-56ef-{zlib.crc32(name.encode()):012d}"

    def documents(self) -> Iterator[PolicyDocument]:
        for logical_id, resource in sorted(self.resources.items()):
            kind, properties = resource["Type"], resource.get("Properties", {})
            where = f"{self.name}/{logical_id}"
            found: list[tuple[str, str, Any, tuple[str, ...]]] = []
            if kind == "AWS::IAM::Role":
                role = (self._get_att(logical_id, "Arn"),)
                found.append(
                    (f"{where}/AssumeRolePolicyDocument", _TRUST, properties["AssumeRolePolicyDocument"], role)
                )
                found += [
                    (f"{where}/{policy['PolicyName']}", _IDENTITY, policy["PolicyDocument"], role)
                    for policy in properties.get("Policies", [])
                ]
            elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                if properties.get("Users") or properties.get("Groups"):
                    raise ValueError(f"{where}: attached to users or groups, which this does not fill in")
                roles = tuple(
                    f"arn:aws:iam::{self._assembly.account}:role/{self.resolve(role)}"
                    for role in properties.get("Roles", [])
                )
                found.append((where, _IDENTITY, properties["PolicyDocument"], roles))
            elif kind == "AWS::S3::BucketPolicy":
                bucket = (f"arn:aws:s3:::{self.resolve(properties['Bucket'])}",)
                found.append((where, _RESOURCE, properties["PolicyDocument"], bucket))
            elif kind == "AWS::SageMaker::ModelPackageGroup" and "ModelPackageGroupPolicy" in properties:
                group = self.resolve(properties["ModelPackageGroupName"])
                arn = f"arn:aws:sagemaker:{self._assembly.region}:{self._assembly.account}:model-package-group/{group}"
                found.append(
                    (f"{where}/ModelPackageGroupPolicy", _RESOURCE, properties["ModelPackageGroupPolicy"], (arn,))
                )
            elif kind == "AWS::KMS::Key":
                found.append(
                    (f"{where}/KeyPolicy", _RESOURCE, properties["KeyPolicy"], (self._get_att(logical_id, "Arn"),))
                )
            elif kind == "AWS::Events::EventBusPolicy":
                # One statement of the bus's policy, which EventBridge keeps by its StatementId.
                bus = self.resolve(properties["EventBusName"])
                arn = f"arn:aws:events:{self._assembly.region}:{self._assembly.account}:event-bus/{bus}"
                document = {"Version": "2012-10-17", "Statement": [properties["Statement"]]}
                found.append((where, _RESOURCE, document, (arn,)))
            for location, document_kind, document, attached_to in found:
                yield PolicyDocument(location, document_kind, self.resolve(document), attached_to)


class _Assembly:
    def __init__(self, template_files: Sequence[Path], *, account: str, region: str) -> None:
        self.account, self.region = account, region
        self.templates = [_Template(path, self) for path in template_files]

    def pseudo_parameters(self, stack: str) -> dict[str, str]:
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack,
        }

    def export(self, name: str) -> Any:
        for template in self.templates:
            for output in template.body.get("Outputs", {}).values():
                if output.get("Export") and template.resolve(output["Export"]["Name"]) == name:
                    return template.resolve(output["Value"])
        raise ValueError(f"Fn::ImportValue {name}: no template of the assembly exports it")


def policy_documents(template_files: Sequence[Path], *, account: str, region: str) -> list[PolicyDocument]:
    """Every policy document of the templates (roles' trust and inline policies, policy resources,
    bucket, key, model package group and event bus policies), its values filled in for `account`
    and `region`."""
    assembly = _Assembly(template_files, account=account, region=region)
    return [document for template in assembly.templates for document in template.documents()]
