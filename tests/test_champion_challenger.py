"""Champion and challenger through the local executor against moto: the project's own cnn pipeline
(Champion, Evaluate, QualityGate, Register or Fail, as deployed), run twice on one moto server.

A better candidate than the approved champion is registered as a new version; a worse one that
still passes the threshold is stopped by the gate, with both figures in the Fail step's message.
To keep this fast, the Train step is replaced by its result: a CNN trained once for the module (2
epochs on a small slice), and a deliberately worse one, the same SavedModel with its trained
weights shuffled, each uploaded as model.tar.gz. Everything after Train runs as SageMaker would
run it: processing/find_champion.py and processing/evaluate.py from the source bundle in their
processing jobs, the gate's Std:JsonGet on evaluation.json, and
CreateModelPackage in moto's registry. (`mlops local` runs the whole pipeline, Train included;
tests/test_local_e2e.py.)
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from test_local_pipeline import LOCAL, RecordingReporter
from training_support import run_entry_point

from infra.definitions import training_pipeline as definition
from mlops.local.moto import moto_server
from mlops.local.pipeline_executor import LocalPipelineExecutor, PipelineRun, StepFailed

# slow: trains a CNN and runs its pipeline twice.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS, DATA = "artifacts", "data"
GROUP = "mlops-local-cnn"
PIPELINE = "mlops-local-cnn"


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_data):
    """{"better": model.tar.gz, "worse": model.tar.gz}, made once."""
    import numpy as np
    import tensorflow as tf

    work = tmp_path_factory.mktemp("better")
    finished = run_entry_point("cnn", small_data("cnn"), work)
    assert finished.returncode == 0, finished.stderr[-3000:]
    worse = tmp_path_factory.mktemp("worse") / "model"
    loaded = tf.saved_model.load(str(work / "model" / "1"))
    rng = np.random.default_rng(0)
    for variable in loaded.trainable_variables:
        values = variable.numpy()
        variable.assign(rng.permutation(values.ravel()).reshape(values.shape))
    tf.saved_model.save(loaded, str(worse / "1"), signatures=loaded.signatures)
    shutil.copytree(work / "model" / "code", worse / "code")
    return {
        name: packed(folder, folder.parent / "model.tar.gz")
        for name, folder in (("better", work / "model"), ("worse", worse))
    }


def packed(model_dir: Path, tarball: Path) -> Path:
    """model.tar.gz as SageMaker packs a model dir."""
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return tarball


def deploy(aws: Any, small_data: Any, models: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    """What the stacks and data preparation leave in AWS for this pipeline; the models' S3 URIs."""
    s3 = aws.client("s3")
    for bucket in (ARTIFACTS, DATA):
        s3.create_bucket(Bucket=bucket)
    for channel in ("test", "validation"):  # Evaluate judges on test and draws the drift baseline from validation
        for path in sorted(small_data("cnn")[channel].iterdir()):
            s3.upload_file(str(path), DATA, f"cnn/{channel}/{path.name}")
    s3.upload_file(str(definition_bundle(tmp_path)), ARTIFACTS, "assets/sourcedir.tar.gz")
    uris = {}
    for name, path in models.items():
        s3.upload_file(str(path), ARTIFACTS, f"models/cnn/{name}/output/model.tar.gz")
        uris[name] = f"s3://{ARTIFACTS}/models/cnn/{name}/output/model.tar.gz"
    key = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    values = {
        definition.ARTIFACTS_BUCKET: ARTIFACTS,
        definition.DATA_BUCKET: DATA,
        definition.KEY_ARN: key,
        definition.EXECUTION_ROLE_ARN: "arn:aws:iam::123456789012:role/execution",
        definition.SOURCE_BUNDLE_URI: f"s3://{ARTIFACTS}/assets/sourcedir.tar.gz",
        definition.SOURCE_BUNDLE_FILE: "sourcedir.tar.gz",
        definition.TRAINING_IMAGE_URI: "training-image",
        definition.INFERENCE_IMAGE_URI: "inference-image",
    }
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    sagemaker.create_pipeline(
        PipelineName=PIPELINE,
        RoleArn="arn:aws:iam::123456789012:role/pipeline",
        PipelineDefinition=definition.substitute_placeholders(definition.definition_body(LOCAL, "cnn"), values),
    )
    return uris


def definition_bundle(tmp_path: Path) -> Path:
    from infra.source_bundle import build_source_bundle

    return build_source_bundle(tmp_path / "bundle")


def run_with_candidate(executor: LocalPipelineExecutor, model_uri: str, overrides: dict[str, str]) -> PipelineRun:
    """The pipeline with Train's result given: `model_uri` is what Train would have produced."""
    run = executor.start(PIPELINE, overrides)
    run.steps = [step for step in run.steps if step["Name"] != definition.TRAIN_STEP]
    run.context.steps[definition.TRAIN_STEP] = {"ModelArtifacts": {"S3ModelArtifacts": model_uri}}
    return executor.execute(run)


def test_a_better_candidate_is_registered_and_a_worse_one_is_stopped_naming_both_figures(
    small_data, models, tmp_path: Path
) -> None:
    with moto_server() as aws:
        uris = deploy(aws, small_data, models, tmp_path)
        sagemaker = aws.client("sagemaker")
        # The champion in production: the worse model, approved as version 1.
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": "inference-image", "ModelDataUrl": uris["worse"]}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
        executor = LocalPipelineExecutor(aws, tmp_path / "runs", RecordingReporter())
        # Thresholds the weak CNN passes too: only the champion may stop a candidate here.
        overrides = {"QualityThreshold": "0.0", "ModelApprovalStatus": "Approved"}

        better = run_with_candidate(executor, uris["better"], overrides)
        registered = sagemaker.describe_model_package(ModelPackageName=better.registered_model_arn)
        report = json.loads(
            aws.client("s3")
            .get_object(
                Bucket=ARTIFACTS,
                Key=registered["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].split(f"{ARTIFACTS}/", 1)[1],
            )["Body"]
            .read()
        )

        with pytest.raises(StepFailed) as stopped:
            run_with_candidate(executor, uris["worse"], overrides)
        versions = [
            summary["ModelPackageVersion"]
            for summary in sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
        ]

    assert [outcome.step for outcome in better.outcomes] == ["Champion", "Evaluate", "QualityGate", "Register"]
    assert registered["ModelPackageVersion"] == 2
    block = report["champion_challenger"]
    assert block["champion"]["version"] == 1 and block["challenger"] > block["champion"]["value"] == block["bound"]
    assert registered["CustomerMetadataProperties"]["champion"] == block["summary"]
    assert registered["ModelMetrics"]["Explainability"]["Report"]["S3Uri"].endswith("/evaluation/explanations.json")

    # The worse candidate met the threshold (0.0) but not version 2's value: stopped, nothing registered.
    assert (stopped.value.step, stopped.value.step_type) == ("Fail", "Fail")
    message = stopped.value.reason
    match = re.fullmatch(
        r"quality gate failed: test_accuracy = ([0-9.]+) but must be >= 0\.0 \(QualityThreshold\); "
        rf"champion {GROUP} version 2 has test_accuracy = ([0-9.]+); with tolerance 0 the "
        r"candidate's must be >= ([0-9.]+)",
        message,
    )
    assert match, message
    candidate, champion, bound = map(float, match.groups())
    assert candidate < champion == bound == pytest.approx(block["challenger"], abs=1e-4)
    assert sorted(versions) == [1, 2]
