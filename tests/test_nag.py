"""cdk-nag: every stage synthesizes with zero unacknowledged findings, and every acknowledgement
has a reason (`acknowledge` insists), suppresses a finding, and is computed the way cdk-nag prints it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from constructs import IConstruct
from synth_support import synthesized

from infra.nag import acknowledge, add_nag_checks, flatten_cfn_reference

STAGES = ("local", "dev", "prod")


def _acknowledgements(root: IConstruct) -> dict[str, dict[str, str]]:
    """construct path -> {acknowledged id: reason}, for the whole construct tree."""
    found: dict[str, dict[str, str]] = {}
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found.setdefault(construct.node.path, {}).update(entry.data)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_stage_synthesizes_with_no_unacknowledged_finding(stage: str) -> None:
    report = synthesized(stage).validation_report  # synthesized() raises on any finding
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_every_acknowledgement_suppresses_a_finding_and_the_report_shows_its_reason(stage: str) -> None:
    """An acknowledgement whose id no longer matches (say, a renamed bucket) would let a new,
    different finding through unnoticed elsewhere; none may be stale, in any stack. The reason
    given in the code is the one the validation report (what a reviewer reads) shows."""
    synth = synthesized(stage)
    suppressed = {
        (violation["acknowledgedAt"], violation["acknowledgedId"]): violation["reason"]
        for plugin in synth.validation_report["pluginReports"]
        for violation in plugin.get("suppressedViolations", [])
    }
    acknowledged = {
        (path, rule): reason
        for path, rules in _acknowledgements(synth.stacks.storage.node.root).items()
        for rule, reason in rules.items()
    }
    assert acknowledged
    stale = sorted(set(acknowledged) - set(suppressed))
    assert stale == [], "acknowledgements that match no finding"
    assert {key: suppressed[key] for key in acknowledged} == acknowledged


@pytest.mark.slow
def test_the_expected_findings_are_acknowledged_where_they_arise() -> None:
    synth = synthesized("prod")
    acknowledged = _acknowledgements(synth.stacks.storage.node.root)
    role = synth.stacks.execution_role.execution_role.role.node.path
    # Only the role has acknowledgements; the access-log bucket needs none (nag accepts a log target).
    assert [path for path in acknowledged if path.startswith(synth.stacks.storage.stack_name)] == []
    account = synth.config.account or "<AWS::AccountId>"
    partition_account = f"arn:<AWS::Partition>:s3:::mlops-prod-artifacts-{account}-us-east-1"
    assert {
        "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
        f"AwsSolutions::AwsSolutions-IAM5[Resource::{partition_account}/models/*]",
        f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:us-east-1:{account}:"
        "log-group:/aws/sagemaker/Endpoints/*]",
    } <= set(acknowledged[role])


def test_nag_fails_synth_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Careless")
    s3.Bucket(stack, "Bucket")
    add_nag_checks(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    assert "AwsSolutions-S1" in (tmp_path / "validation-report.json").read_text()


def test_an_acknowledged_finding_passes(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Justified")
    bucket = s3.Bucket(stack, "Bucket", enforce_ssl=True)
    acknowledge(bucket, "AwsSolutions-S1", "a test bucket that nobody ever writes to")
    add_nag_checks(app)
    app.synth()


@pytest.mark.parametrize(
    ("finding", "reason", "message"),
    [
        ("AwsSolutions-S1", "  ", "needs a reason"),
        ("S1", "a perfectly good reason", "expected an AwsSolutions rule id"),
    ],
)
def test_acknowledge_insists_on_a_rule_id_and_a_reason(finding: str, reason: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        acknowledge(cdk.Stack(cdk.App(), "S"), finding, reason)


@pytest.mark.parametrize(
    ("value", "flat"),
    [
        ("plain", "plain"),
        ({"Ref": "AWS::AccountId"}, "<AWS::AccountId>"),
        ({"Fn::GetAtt": ["Bucket12", "Arn"]}, "<Bucket12.Arn>"),
        ({"Fn::ImportValue": "stack:Export"}, "stack:Export"),
        ({"Fn::Sub": "arn:${AWS::Partition}:s3:::b"}, "arn:<AWS::Partition>:s3:::b"),
        (
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::b/", {"Fn::GetAtt": ["K", "Arn"]}]]},
            "arn:<AWS::Partition>:s3:::b/<K.Arn>",
        ),
        (None, ""),
    ],
)
def test_flatten_matches_cdk_nag(value: Any, flat: str) -> None:
    assert flatten_cfn_reference(value) == flat
