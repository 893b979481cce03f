"""The project's batch transform pipeline, as deployed, through the local executor against moto.

Its definition for the local stage (infra/definitions/transform_pipeline.py) runs step by step:
ResolveModel (processing/find_model_version.py from the source bundle, in its processing job, reading
moto's model registry), CreateModel (in moto, from the version's model package), the record format's
Condition and its Transform step (a batch transform job here, on a tiny real CNN). The version is
chosen when the run starts: the newest Approved one by default, a named one that is not Approved
is refused before any model is created.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from inference_support import exported_models, tarball_of
from test_local_pipeline import LOCAL, RecordingReporter

from infra import naming
from infra.definitions import parts
from infra.definitions import transform_pipeline as definition
from infra.definitions.training_pipeline import substitute_placeholders
from infra.source_bundle import build_source_bundle
from mlops.local.moto import LocalAws, moto_server
from mlops.local.moto_service import service_extensions
from mlops.local.pipeline_executor import LocalPipelineExecutor, StepFailed

# slow: runs a processing job and serves TensorFlow.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS, DATA = "artifacts", "data"
GROUP = naming.model_package_group_name(LOCAL.prefix(), "cnn")
PIPELINE = naming.transform_pipeline_name(LOCAL.prefix(), "cnn")
RECORDS = 50


def deploy(aws: LocalAws, model: Path, tmp_path: Path) -> None:
    """What the stacks leave in AWS for this pipeline, two versions (1 Approved, 2 pending) and a batch."""
    s3 = aws.client("s3")
    for bucket in (ARTIFACTS, DATA):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(build_source_bundle(tmp_path / "bundle")), ARTIFACTS, "assets/sourcedir.tar.gz")
    s3.upload_file(str(model), ARTIFACTS, "models/cnn/job/output/model.tar.gz")
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    for status in ("Approved", "PendingManualApproval"):
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [
                    {"Image": "inference-image", "ModelDataUrl": f"s3://{ARTIFACTS}/models/cnn/job/output/model.tar.gz"}
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    values = {
        parts.ARTIFACTS_BUCKET: ARTIFACTS,
        parts.DATA_BUCKET: DATA,
        parts.KEY_ARN: aws.client("kms").create_key()["KeyMetadata"]["Arn"],
        parts.EXECUTION_ROLE_ARN: "arn:aws:iam::123456789012:role/execution",
        parts.SOURCE_BUNDLE_URI: f"s3://{ARTIFACTS}/assets/sourcedir.tar.gz",
        parts.SOURCE_BUNDLE_FILE: "sourcedir.tar.gz",
        parts.TRAINING_IMAGE_URI: "training-image",
    }
    sagemaker.create_pipeline(
        PipelineName=PIPELINE,
        RoleArn="arn:aws:iam::123456789012:role/pipeline",
        PipelineDefinition=substitute_placeholders(definition.transform_definition_body(LOCAL, "cnn"), values),
    )
    pixels = np.random.default_rng(4).integers(0, 256, (RECORDS, 64))
    rows = "".join(",".join([f"id-{index}", *map(str, row)]) + "\n" for index, row in enumerate(pixels))
    s3.put_object(Bucket=DATA, Key="cnn/batch/input/part-1.csv", Body=rows.encode())


def test_a_run_resolves_the_newest_approved_version_and_transforms_the_default_input(tmp_path_factory, tmp_path):
    model = tarball_of(exported_models(tmp_path_factory)["cnn"], tmp_path / "model.tar.gz")
    with moto_server() as aws:
        deploy(aws, model, tmp_path)
        reporter = RecordingReporter()
        executor = LocalPipelineExecutor(aws, tmp_path / "runs", reporter)
        run = executor.execute(executor.start(PIPELINE, {"ContentType": "text/csv"}))
        assert [(outcome.step, outcome.status) for outcome in run.outcomes] == [
            ("ResolveModel", "Succeeded"),
            ("CreateModel", "Succeeded"),
            ("RecordFormat", "Succeeded"),
            ("TransformCsv", "Succeeded"),
        ]
        sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
        model_name = run.properties["CreateModel"]["ModelName"]
        created = sagemaker.describe_model(ModelName=model_name)
        assert created["PrimaryContainer"]["ModelPackageName"].endswith(f"model-package/{GROUP}/1")
        assert created["EnableNetworkIsolation"] is True
        job = sagemaker.describe_transform_job(TransformJobName=run.properties["TransformCsv"]["TransformJobName"])
        assert job["TransformJobStatus"] == "Completed" and job["ModelName"] == model_name
        output = f"batch-transform/cnn/{run.execution_id}/part-1.csv.out"
        lines = s3.get_object(Bucket=ARTIFACTS, Key=output)["Body"].read().decode().splitlines()
        assert [line.split(",", 1)[0] for line in lines] == [f"id-{index}" for index in range(RECORDS)]
        assert "50 records from 1 object(s)" in run.outcomes[-1].detail
        # ListPipelineExecutionSteps (mlops transform --wait, mlops follow) names the model and the job.
        with service_extensions(lambda arn: None, lambda name: None):
            listed = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=run.execution_arn)
        metadata = {step["StepName"]: step.get("Metadata", {}) for step in listed["PipelineExecutionSteps"]}
        assert metadata["CreateModel"] == {"Model": {"Arn": created["ModelArn"]}}
        assert metadata["TransformCsv"] == {"TransformJob": {"Arn": job["TransformJobArn"]}}

        with pytest.raises(StepFailed) as failed:
            executor.execute(executor.start(PIPELINE, {"ModelVersion": "2"}))
        assert failed.value.step == "ResolveModel"
        assert f"{GROUP} version 2 is PendingManualApproval, not Approved" in failed.value.hint
        assert len(sagemaker.list_models()["Models"]) == 1
