"""A network's training and tuning pipelines in an embedded moto server, from their real definitions
but without CDK: what their placeholders name (buckets, a KMS key, the source bundle) is created
directly, the definitions are filled in as Fn::Sub would fill them, and the local executor runs
them. For test_local_tuning_cnn.py and benchmarks/tuning_cnn.py (`mlops local --tune` does the same
after a real `cdk deploy`).

    with LocalPipelines("cnn", channels, work_dir) as pipelines:
        run = pipelines.run(pipelines.tuning, {"Epochs": "1", "MaxTrainingJobs": "8"})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from infra import naming
from infra.config import StageConfig, parse_stage_config
from infra.definitions import training_pipeline as definition
from infra.definitions.tuning_pipeline import tuning_definition_body
from infra.source_bundle import build_source_bundle
from mlops.datasets import upload_channels
from mlops.local.moto import LocalAws, moto_server
from mlops.local.pipeline_executor import LocalPipelineExecutor, PipelineRun, StepOutcome

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_CONTEXT: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
LOCAL: StageConfig = parse_stage_config(CDK_CONTEXT["stages"], "local")
DATA, ARTIFACTS, ASSETS = "data", "artifacts", "assets"


class QuietReporter:
    """Keeps what the executor tells: each step's outcome and every trial's last state."""

    def __init__(self) -> None:
        self.outcomes: list[StepOutcome] = []
        self.trials: dict[str, Any] = {}

    def step_started(self, step: str, step_type: str, detail: str, request: Mapping[str, Any]) -> None:
        return None

    def step_log(self, step: str, line: str) -> None:
        return None

    def trial_update(self, step: str, trial: Any) -> None:
        self.trials[trial.name] = trial

    def step_ended(self, outcome: StepOutcome) -> None:
        self.outcomes.append(outcome)


class LocalPipelines:
    def __init__(self, network: str, channels: Mapping[str, Path], work_dir: Path, config: StageConfig = LOCAL) -> None:
        self.network, self.channels, self.work_dir, self.config = network, channels, work_dir, config
        self.reporter = QuietReporter()
        self._resources = ExitStack()
        prefix = config.prefix()
        self.training = naming.pipeline_name(prefix, network)
        self.tuning = naming.tuning_pipeline_name(prefix, network)
        self.warm_start = naming.warm_start_pipeline_name(prefix, network)
        self.group = naming.model_package_group_name(prefix, network)

    def __enter__(self) -> LocalPipelines:
        self.aws: LocalAws = self._resources.enter_context(moto_server())
        s3 = self.aws.client("s3")
        for bucket in (DATA, ARTIFACTS, ASSETS):
            s3.create_bucket(Bucket=bucket)
        key = self.aws.client("kms").create_key()["KeyMetadata"]["Arn"]
        bundle = build_source_bundle(self.work_dir / "bundle")
        s3.upload_file(str(bundle), ASSETS, "0123abcd.gz")
        upload_channels(self.channels, bucket=DATA, network=self.network, s3_client=s3)
        values = {
            definition.ARTIFACTS_BUCKET: ARTIFACTS,
            definition.DATA_BUCKET: DATA,
            definition.EXECUTION_ROLE_ARN: "arn:aws:iam::123456789012:role/execution",
            definition.KEY_ARN: key,
            definition.SOURCE_BUNDLE_URI: f"s3://{ASSETS}/0123abcd.gz",
            definition.SOURCE_BUNDLE_FILE: "0123abcd.gz",
            definition.TRAINING_IMAGE_URI: "training-image",
            definition.INFERENCE_IMAGE_URI: "inference-image",
        }
        sagemaker = self.aws.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName=self.group)
        bodies = {
            self.training: definition.definition_body(self.config, self.network),
            self.tuning: tuning_definition_body(self.config, self.network, warm_start=False),
            self.warm_start: tuning_definition_body(self.config, self.network, warm_start=True),
        }
        for name, body in bodies.items():
            sagemaker.create_pipeline(
                PipelineName=name,
                RoleArn="arn:aws:iam::123456789012:role/pipeline",
                PipelineDefinition=definition.substitute_placeholders(body, values),
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._resources.close()

    def run(self, pipeline: str, overrides: Mapping[str, str]) -> PipelineRun:
        executor = LocalPipelineExecutor(self.aws, self.work_dir / "pipeline", self.reporter)
        return executor.execute(executor.start(pipeline, dict(overrides)))
