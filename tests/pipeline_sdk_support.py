"""A network's training pipeline built with SageMaker SDK v3, for `test_pipeline_sdk_parity.py`.

Built from the registry and the stage configuration the way the SDK's own documentation builds a
pipeline. Shares with `infra.definitions.training_pipeline` only names that are conventions (step, parameter
and output names, the evaluation command), never the step structure. Importing this module imports
the SDK (~2 s, ~250 MB), so only that test does.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from sagemaker.core.config.config_manager import SageMakerConfig
from sagemaker.core.drift_check_baselines import DriftCheckBaselines
from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
from sagemaker.core.network import NetworkConfig
from sagemaker.core.processing import Processor
from sagemaker.core.shapes import (
    MetricDefinition,
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    S3DataSource,
    StoppingCondition,
)
from sagemaker.core.training.configs import CheckpointConfig, Compute, InputData, Networking, OutputDataConfig
from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
from sagemaker.serve import ModelBuilder
from sagemaker.train import ModelTrainer

from infra.config import StageConfig
from infra.definitions.champion_step import champion_command
from infra.definitions.parameters import parameter_name
from infra.definitions.training_pipeline import evaluation_command
from infra.naming import model_package_group_name
from training.networks import Network

NO_TELEMETRY = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
PARAMETER_TYPES = {int: ParameterInteger, float: ParameterFloat, str: ParameterString}
SERVICE_RETRY = StepRetryPolicy(
    exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
    interval_seconds=10,
    backoff_rate=2.0,
    max_attempts=5,
)
JOB_RETRY = SageMakerJobStepRetryPolicy(
    exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR, SageMakerJobExceptionTypeEnum.INTERNAL_ERROR],
    interval_seconds=60,
    backoff_rate=2.0,
    max_attempts=3,
)


def build(config: StageConfig, network: Network, values: dict[str, str]) -> str:
    """The SDK's `Pipeline.definition()` JSON for `network` in `config`."""
    return offline(lambda: _build(config, network, values))


def offline(make: Callable[[], str]) -> str:
    """`make()`, with the SDK's config checked once: it checks the same config dict against its
    JSON schema on every lookup, about 30 times per pipeline at 0.14 s each; checking it once gives
    the same answer in a tenth of the time."""
    SageMakerConfig.validate_sagemaker_config(NO_TELEMETRY)
    with mock.patch.object(SageMakerConfig, "validate_sagemaker_config"):
        return make()


@dataclass
class Context:
    """What every step of one pipeline built with the SDK shares."""

    config: StageConfig
    network: Network
    values: dict[str, str]
    session: PipelineSession = field(init=False)
    parameters: dict[str, Any] = field(init=False)
    """By name: the training pipeline's parameters, each knob's under its knob's name."""

    def __post_init__(self) -> None:
        self.session = PipelineSession(sagemaker_config=NO_TELEMETRY)
        config, network = self.config, self.network
        defaults = config.hyperparameters_for(network.name)
        self.parameters = {
            "TrainingInstanceType": ParameterString(
                "TrainingInstanceType", default_value=config.training_instance_type(network.name)
            ),
            "TrainingInstanceCount": ParameterInteger(
                "TrainingInstanceCount", default_value=config.training.instance_count
            ),
            **{
                knob.name: PARAMETER_TYPES[knob.type](
                    parameter_name(knob.name),
                    default_value=defaults[knob.name],
                    **({"enum_values": list(knob.choices)} if knob.choices else {}),
                )
                for knob in network.hyperparameters
            },
            "InputDataUri": ParameterString(
                "InputDataUri", default_value=f"s3://{self.values['DataBucket']}/{network.name}/"
            ),
            "ModelApprovalStatus": ParameterString(
                "ModelApprovalStatus",
                default_value=config.model_approval_status,
                enum_values=["Approved", "PendingManualApproval"],
            ),
            "QualityThreshold": ParameterFloat("QualityThreshold", default_value=network.quality_gate.threshold),
            "ChampionTolerance": ParameterFloat("ChampionTolerance", default_value=0.0),
        }

    @property
    def role(self) -> str:
        return self.values["ExecutionRoleArn"]

    @property
    def artifacts(self) -> str:
        return f"s3://{self.values['ArtifactsBucket']}"

    @property
    def vpc(self) -> dict[str, list[str]]:
        vpc = self.config.vpc
        return {"subnets": list(vpc.subnet_ids), "security_group_ids": list(vpc.security_group_ids)} if vpc else {}

    def pipeline_parameters(self, leave_out: Set[str] = frozenset()) -> list[Any]:
        return [parameter for name, parameter in self.parameters.items() if name not in leave_out]


def _build(config: StageConfig, network: Network, values: dict[str, str]) -> str:
    context = Context(config, network, values)
    train = TrainingStep(
        name="Train", step_args=model_trainer(context).train(), retry_policies=[SERVICE_RETRY, JOB_RETRY]
    )
    model = train.properties.ModelArtifacts.S3ModelArtifacts
    champion = champion_step(context)
    pipeline = Pipeline(
        name=f"{config.prefix()}-{network.name}",
        sagemaker_session=context.session,
        parameters=context.pipeline_parameters(),
        steps=[train, champion, *gate_steps(context, champion, model)],
    )
    return pipeline.definition()


def model_trainer(
    context: Context, *, tuning: bool = False, leave_out: Set[str] = frozenset(), **hyperparameters: Any
) -> ModelTrainer:
    """The network's training job: the Train step's, or with `tuning` every trial's of a tuning job
    (its channels given to `tuner.tune` instead, the knobs it tunes left out, any `hyperparameters`
    added)."""
    config, network, values = context.config, context.network, context.values
    isolated = config.training.network_isolation
    bundle = values["SourceBundleUri"]
    fixed: dict[str, Any] = {
        "sagemaker_program": network.entry_point,
        # SDK v2's Framework estimator, isolated: the code as a `code` channel of the uploaded
        # object and the toolkit pointed at the file SageMaker puts there (its
        # CONTAINER_CODE_CHANNEL_SOURCEDIR_PATH); v3's ModelTrainer has no framework-toolkit path.
        "sagemaker_submit_directory": f"/opt/ml/input/data/code/{posixpath.basename(bundle)}" if isolated else bundle,
        "sagemaker_region": config.region,
        "sagemaker_container_log_level": "20",
        "sagemaker_multi_worker_mirrored_strategy_enabled": "true",
        "checkpoint_dir": "/opt/ml/checkpoints",
        **hyperparameters,
    }
    for knob in network.hyperparameters:
        if knob.name in leave_out:
            continue
        parameter = context.parameters[knob.name]
        fixed[knob.name] = parameter if isinstance(parameter, ParameterString) else Join(on="", values=[parameter])
    return ModelTrainer(
        sagemaker_session=context.session,
        role=context.role,
        training_image=values["TrainingImageUri"],
        compute=Compute(
            instance_type=context.parameters["TrainingInstanceType"],
            instance_count=context.parameters["TrainingInstanceCount"],
            volume_size_in_gb=config.training.volume_size_gb,
            volume_kms_key_id=values["KeyArn"],
            enable_managed_spot_training=config.training.use_spot,
        ),
        networking=Networking(
            enable_network_isolation=config.training.network_isolation,
            enable_inter_container_traffic_encryption=True,
            **context.vpc,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=config.training.max_run_seconds,
            **({"max_wait_time_in_seconds": config.training.max_wait_seconds} if config.training.use_spot else {}),
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=f"{context.artifacts}/models/{network.name}/", kms_key_id=values["KeyArn"]
        ),
        checkpoint_config=CheckpointConfig(
            s3_uri=Join(
                on="",
                values=[f"{context.artifacts}/checkpoints/{network.name}/", ExecutionVariables.PIPELINE_EXECUTION_ID],
            ),
            local_path="/opt/ml/checkpoints",
        ),
        hyperparameters=fixed,
        input_data_config=None
        if tuning
        else [
            InputData(
                channel_name=channel,
                data_source=S3DataSource(
                    s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type="FullyReplicated"
                ),
            )
            for channel, uri in channel_uris(context).items()
        ],
    ).with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in network.metric_definitions])


def channel_uris(context: Context) -> dict[str, Any]:
    """The training job's channels: the data's, and (isolated) the code's last, as SDK v2's
    `_Job._load_config` appends it, a plain S3 input of the bundle."""
    config, network = context.config, context.network
    isolated = config.training.network_isolation
    data_uri = context.parameters["InputDataUri"]
    uris: dict[str, Any] = {
        channel: Join(on="", values=[data_uri, f"{channel}/"])
        for channel in (network.channels if isolated else network.required_channels)
    }
    if isolated:
        uris["code"] = context.values["SourceBundleUri"]
    return uris


def _processing_output(context: Context, name: str) -> ProcessingOutput:
    return ProcessingOutput(
        output_name=name,
        app_managed=False,
        s3_output=ProcessingS3Output(
            s3_uri=Join(
                on="",
                values=[
                    f"{context.artifacts}/pipelines/{context.network.name}/",
                    ExecutionVariables.PIPELINE_EXECUTION_ID,
                    f"/{name}",
                ],
            ),
            local_path=f"/opt/ml/processing/{name}",
            s3_upload_mode="EndOfJob",
        ),
    )


def champion_step(context: Context) -> ProcessingStep:
    config, network, values = context.config, context.network, context.values
    finder = Processor(
        role=context.role,
        image_uri=values["TrainingImageUri"],
        instance_count=1,
        instance_type=config.training_instance_type(network.name),
        entrypoint=["/bin/bash", "-c", champion_command(config, network)],
        volume_size_in_gb=config.training.volume_size_gb,
        volume_kms_key=values["KeyArn"],
        output_kms_key=values["KeyArn"],
        max_runtime_in_seconds=1800,
        sagemaker_session=context.session,
        network_config=NetworkConfig(
            enable_network_isolation=False, encrypt_inter_container_traffic=True, **context.vpc
        ),
    )
    return ProcessingStep(
        name="Champion",
        retry_policies=[SERVICE_RETRY, JOB_RETRY],
        step_args=finder.run(
            inputs=[_input("code", values["SourceBundleUri"])], outputs=[_processing_output(context, "champion")]
        ),
    )


def gate_steps(
    context: Context, champion: ProcessingStep, model: Any, metadata: dict[str, Any] | None = None
) -> list[Any]:
    """Evaluate (with what the `champion` step found) and QualityGate (with Register and Fail) for
    the candidate `model`, the version recording `metadata` too."""
    config, network, values = context.config, context.network, context.values
    threshold, tolerance = context.parameters["QualityThreshold"], context.parameters["ChampionTolerance"]
    data_uri = context.parameters["InputDataUri"]
    processor = Processor(
        role=context.role,
        image_uri=values["TrainingImageUri"],
        instance_count=1,
        instance_type=config.training_instance_type(network.name),
        entrypoint=["/bin/bash", "-c", evaluation_command(network)],
        volume_size_in_gb=config.training.volume_size_gb,
        volume_kms_key=values["KeyArn"],
        output_kms_key=values["KeyArn"],
        max_runtime_in_seconds=config.training.max_run_seconds,
        sagemaker_session=context.session,
        env={"CHAMPION_TOLERANCE": Join(on="", values=[tolerance]), "MODEL_DATA_URL": model},
        network_config=NetworkConfig(
            enable_network_isolation=config.training.network_isolation,
            encrypt_inter_container_traffic=True,
            **context.vpc,
        ),
    )
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluate = ProcessingStep(
        name="Evaluate",
        property_files=[report],
        retry_policies=[SERVICE_RETRY, JOB_RETRY],
        step_args=processor.run(
            inputs=[
                _input("model", model),
                _input("test", Join(on="", values=[data_uri, "test/"])),
                _input("validation", Join(on="", values=[data_uri, "validation/"])),
                _input("code", values["SourceBundleUri"]),
                _input("champion", champion.properties.ProcessingOutputConfig.Outputs["champion"].S3Output.S3Uri),
            ],
            outputs=[_processing_output(context, "evaluation")],
        ),
    )
    gate = network.quality_gate
    quality = JsonGet(step_name="Evaluate", property_file=report, json_path=f"metrics.{gate.metric}.value")
    bound = JsonGet(step_name="Evaluate", property_file=report, json_path="champion_challenger.bound")
    versus_champion = JsonGet(step_name="Evaluate", property_file=report, json_path="champion_challenger.summary")

    def evaluation_file(name: str) -> Join:
        return Join(
            on="/", values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, name]
        )

    builder = ModelBuilder(
        image_uri=values["InferenceImageUri"],
        role_arn=context.role,
        sagemaker_session=context.session,
        s3_model_data_url=model,
        dependencies=None,
    )
    register = ModelStep(
        name="Register",
        retry_policies=[SERVICE_RETRY],
        step_args=builder.register(
            model_package_group_name=model_package_group_name(config.prefix(), network.name),
            description=f"{network.name}: {network.summary}",
            content_types=list(network.request_content_types),
            response_types=["application/json"],
            inference_instances=[config.endpoint_instance_type(network.name)],
            approval_status=context.parameters["ModelApprovalStatus"],
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json", s3_uri=evaluation_file("evaluation.json")
                ),
                explainability=MetricsSource(
                    content_type="application/json", s3_uri=evaluation_file("explanations.json")
                ),
            ),
            drift_check_baselines=DriftCheckBaselines(
                model_data_statistics=MetricsSource(
                    content_type="application/json", s3_uri=evaluation_file("baseline.json")
                )
            ),
            customer_metadata_properties={
                "network": network.name,
                "quality_metric": gate.metric,
                "quality_value": Join(on="", values=[quality]),
                "quality_threshold": Join(on="", values=[threshold]),
                "champion": Join(on="", values=[versus_champion]),
                **(metadata or {}),
            },
        ),
    )
    fail = FailStep(
        name="Fail",
        error_message=Join(
            on=" ",
            values=[
                f"quality gate failed: {gate.metric} =",
                quality,
                f"but must be {gate.comparison}",
                threshold,
                "(QualityThreshold);",
                versus_champion,
            ],
        ),
    )
    compare = ConditionGreaterThanOrEqualTo if gate.higher_is_better else ConditionLessThanOrEqualTo
    quality_gate = ConditionStep(
        name="QualityGate",
        conditions=[compare(left=quality, right=threshold), compare(left=quality, right=bound)],
        if_steps=[register],
        else_steps=[fail],
    )

    return [evaluate, quality_gate]


def _input(name: str, source: Any) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        app_managed=False,
        s3_input=ProcessingS3Input(
            s3_uri=source,
            local_path=f"/opt/ml/processing/{name}",
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type="FullyReplicated",
            s3_compression_type="None",
        ),
    )
