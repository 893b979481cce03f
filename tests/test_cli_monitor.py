"""`mlops monitor` against a moto server: it starts the monitor pipeline on the version the endpoint
stack serves (the stack's parameters, as `mlops deploy` sets them from the model package), and
lists and shows the drift reports; bad input is one line and exit code 2.

The stacks are stand-ins holding only what the command reads (the storage stack's bucket output,
the endpoint stack's two parameters); the monitor pipeline is created from the real definition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from cli_support import run_mlops
from test_pipeline_definition import SAMPLE_VALUES, stage

from infra import naming
from infra.definitions import monitor_pipeline
from infra.definitions.training_pipeline import substitute_placeholders
from mlops.local.moto import LocalAws, moto_server
from mlops.monitoring import monitored_version_parameters

LOCAL = stage("local")
BUCKET = "mlops-local-artifacts-123456789012-us-east-1"
MODEL = f"s3://{BUCKET}/models/cnn/job/output/model.tar.gz"
BASELINE = f"s3://{BUCKET}/pipelines/cnn/exec/evaluation/baseline.json"
MONITOR = naming.monitor_pipeline_name(LOCAL.prefix(), "cnn")


def _stack(parameters: dict[str, str] | None = None, outputs: dict[str, str] | None = None) -> str:
    return json.dumps(
        {
            "Parameters": {name: {"Type": "String"} for name in parameters or {}},
            "Resources": {"Nothing": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {name: {"Value": value} for name, value in (outputs or {}).items()},
        }
    )


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAws]:
    with moto_server() as started:
        yield started


@pytest.fixture
def aws(server: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    requests.post(f"{server.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")
    server.client("sagemaker").create_pipeline(
        PipelineName=MONITOR,
        RoleArn=SAMPLE_VALUES["ExecutionRoleArn"],
        PipelineDefinition=substitute_placeholders(
            monitor_pipeline.monitor_definition_body(LOCAL, "cnn"), SAMPLE_VALUES
        ),
    )
    server.client("s3").create_bucket(Bucket=BUCKET)
    cloudformation = server.client("cloudformation")
    cloudformation.create_stack(
        StackName="mlops-local-storage", TemplateBody=_stack(outputs={"ArtifactsBucketName": BUCKET})
    )
    return server


def deploy_endpoint_stack(aws: LocalAws, model: str = MODEL, baseline: str = BASELINE) -> None:
    parameters = {
        monitor_pipeline.MONITORED_MODEL_PARAMETER: model,
        monitor_pipeline.MONITORED_BASELINE_PARAMETER: baseline,
    }
    aws.client("cloudformation").create_stack(
        StackName="mlops-local-endpoint-cnn",
        TemplateBody=_stack(parameters),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
    )


def test_monitor_starts_the_pipeline_on_the_served_version(aws, monkeypatch, capsys):
    deploy_endpoint_stack(aws)
    code, out, err = run_mlops(monkeypatch, capsys, "monitor", "cnn", "--window-minutes", "180")
    assert code == 0, err
    (summary,) = aws.client("sagemaker").list_pipeline_executions(PipelineName=MONITOR)["PipelineExecutionSummaries"]
    parameters = aws.client("sagemaker").list_pipeline_parameters_for_execution(
        PipelineExecutionArn=summary["PipelineExecutionArn"]
    )["PipelineParameters"]
    assert {item["Name"]: item["Value"] for item in parameters} == {
        "ModelDataUrl": MODEL,
        "BaselineUri": BASELINE,
        "WindowMinutes": "180",
    }
    assert summary["PipelineExecutionArn"] in out and f"on the served model {MODEL}" in out


@pytest.mark.slow
def test_reports_are_listed_newest_first_and_the_last_shown_in_full(aws, monkeypatch, capsys):
    s3 = aws.client("s3")
    for execution, decision in (("first", "no drift (p=0.6 >= 0.01)"), ("second", "drift (p=1e-09 < 0.01)")):
        report = {
            "network": "cnn",
            "window": {"start": f"{execution}-start", "end": f"{execution}-end"},
            "decision": decision,
            "captures": {"examples": 120, "unparsable": {"count": 3}},
            "tests": [{"family": "embedding", "name": "maximum mean discrepancy", "statistic": 0.2, "p_value": 0.001}],
        }
        s3.put_object(Bucket=BUCKET, Key=f"pipelines/cnn/monitor/{execution}/drift.json", Body=json.dumps(report))
        time.sleep(1.1)  # S3 keeps LastModified to the second
    code, out, err = run_mlops(monkeypatch, capsys, "monitor", "cnn", "--reports")
    assert code == 0, err
    assert out.index("second-start") < out.index("first-start")
    assert "drift (p=1e-09 < 0.01)" in out and "120" in out
    code, out, err = run_mlops(monkeypatch, capsys, "monitor", "cnn", "--last")
    assert code == 0, err
    assert "second-start" in out and "first-start" not in out
    assert "maximum mean discrepancy" in out and f"s3://{BUCKET}/pipelines/cnn/monitor/second/drift.json" in out


@pytest.mark.parametrize(
    "arrange, arguments, message",
    [
        (None, ("monitor", "cnn"), "stack mlops-local-endpoint-cnn is not deployed"),
        ("no baseline", ("monitor", "cnn"), "has no drift baseline"),
        (None, ("monitor", "cnn", "--stage", "dev"), "stage dev captures no endpoint traffic"),
        (None, ("monitor", "cnn", "--reports", "--last"), "--reports and --last: choose one"),
        (None, ("monitor", "resnet"), "unknown network 'resnet'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(aws, monkeypatch, capsys, arrange, arguments, message):
    if arrange == "no baseline":
        deploy_endpoint_stack(aws, baseline="")
    code, _, err = run_mlops(monkeypatch, capsys, *arguments)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not aws.client("sagemaker").list_pipeline_executions(PipelineName=MONITOR)["PipelineExecutionSummaries"]


def test_deploy_passes_the_versions_model_and_registered_baseline(aws):
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="mlops-local-cnn")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="mlops-local-cnn",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": "image", "ModelDataUrl": MODEL}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        DriftCheckBaselines={
            "ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": BASELINE}}
        },
    )["ModelPackageArn"]
    assert monitored_version_parameters(sagemaker, arn) == {
        "MonitoredModelDataUrl": MODEL,
        "MonitoredBaselineUri": BASELINE,
    }
