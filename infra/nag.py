"""cdk-nag's AWS Solutions checks, and the one way this project acknowledges a finding.

With the checks added, `app.synth()` (and so `cdk synth`/`cdk deploy`) fails on any finding
that is not acknowledged. Acknowledge next to the resource concerned, always with a reason:

    acknowledge(bucket, "AwsSolutions-S1", "this bucket is the access-log destination")
    acknowledge_wildcard_resources(role, [arn_with_star], "objects under a prefix")
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

NAG_PACK = "AwsSolutions"


def add_nag_checks(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Records a justified exception to one finding (`RuleId` or `RuleId[FindingId]`) on `scope`
    and everything below it."""
    if not finding.startswith(f"{NAG_PACK}-"):
        raise ValueError(f"expected an {NAG_PACK} rule id such as {NAG_PACK}-S1, got {finding!r}")
    if not reason.strip():
        raise ValueError(f"acknowledging {finding} needs a reason")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{NAG_PACK}::{finding}", reason=reason))


def acknowledge_wildcard_resources(scope: IConstruct, resources: Iterable[str], reason: str) -> None:
    """Acknowledges AwsSolutions-IAM5 for each of `resources` (ARNs, tokens allowed) with a `*`.

    The finding id embeds the ARN as cdk-nag prints it, computed here the same way, so no one
    hand-types resolved tokens. It only matches ARNs that resolve in `scope`'s own stack
    (pseudo parameters and same-stack references), which is why bucket ARNs are built from
    bucket names rather than imported from another stack.
    """
    stack = cdk.Stack.of(scope)
    for resource in resources:
        flat = flatten_cfn_reference(stack.resolve(resource))
        if "*" in flat:
            acknowledge(scope, f"{NAG_PACK}-IAM5[Resource::{flat}]", reason)


def flatten_cfn_reference(value: Any) -> str:
    """cdk-nag's `flattenCfnReference` (src/utils/flatten-cfn-reference.ts), in Python."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return delimiter.join(flatten_cfn_reference(item) for item in items)
        if "Fn::Sub" in value:
            return flatten_cfn_reference(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{flatten_cfn_reference(resource)}.{flatten_cfn_reference(attribute)}>"
        if "Fn::ImportValue" in value:
            return flatten_cfn_reference(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{flatten_cfn_reference(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))
