"""A network's training pipeline built with SageMaker SDK v3, for `test_pipeline_sdk_parity.py`.

Built from the registry and the stage configuration the way the SDK's own documentation builds a
pipeline. Shares with `infra.definitions.training_pipeline` only names that are conventions (step, parameter
and output names, the evaluation command), never the step structure. Importing this module imports
the SDK (~2 s, ~250 MB), so only that test does.
"""

from __future__ import annotations

import posixpath
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
    # The SDK checks the same config dict against its JSON schema on every lookup, about 30
    # times per pipeline at 0.14 s each; checking it once gives the same answer in a tenth of the time.
    SageMakerConfig.validate_sagemaker_config(NO_TELEMETRY)
    with mock.patch.object(SageMakerConfig, "validate_sagemaker_config"):
        return _build(config, network, values)


def _build(config: StageConfig, network: Network, values: dict[str, str]) -> str:
    session = PipelineSession(sagemaker_config=NO_TELEMETRY)
    role = values["ExecutionRoleArn"]
    artifacts = f"s3://{values['ArtifactsBucket']}"
    defaults = config.hyperparameters_for(network.name)

    instance_type = ParameterString("TrainingInstanceType", default_value=config.training_instance_type(network.name))
    instance_count = ParameterInteger("TrainingInstanceCount", default_value=config.training.instance_count)
    knobs = {
        knob.name: PARAMETER_TYPES[knob.type](
            parameter_name(knob.name),
            default_value=defaults[knob.name],
            **({"enum_values": list(knob.choices)} if knob.choices else {}),
        )
        for knob in network.hyperparameters
    }
    data_uri = ParameterString("InputDataUri", default_value=f"s3://{values['DataBucket']}/{network.name}/")
    approval = ParameterString(
        "ModelApprovalStatus",
        default_value=config.model_approval_status,
        enum_values=["Approved", "PendingManualApproval"],
    )
    threshold = ParameterFloat("QualityThreshold", default_value=network.quality_gate.threshold)
    tolerance = ParameterFloat("ChampionTolerance", default_value=0.0)

    isolated = config.training.network_isolation
    bundle = values["SourceBundleUri"]
    hyperparameters: dict[str, Any] = {
        "sagemaker_program": network.entry_point,
        # SDK v2's Framework estimator, isolated: the code as a `code` channel of the uploaded
        # object and the toolkit pointed at the file SageMaker puts there (its
        # CONTAINER_CODE_CHANNEL_SOURCEDIR_PATH); v3's ModelTrainer has no framework-toolkit path.
        "sagemaker_submit_directory": f"/opt/ml/input/data/code/{posixpath.basename(bundle)}" if isolated else bundle,
        "sagemaker_region": config.region,
        "sagemaker_container_log_level": "20",
        "sagemaker_multi_worker_mirrored_strategy_enabled": "true",
        "checkpoint_dir": "/opt/ml/checkpoints",
    }
    for name, parameter in knobs.items():
        hyperparameters[name] = parameter if isinstance(parameter, ParameterString) else Join(on="", values=[parameter])
    channels = network.channels if isolated else network.required_channels
    vpc = (
        {"subnets": list(config.vpc.subnet_ids), "security_group_ids": list(config.vpc.security_group_ids)}
        if config.vpc
        else {}
    )
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=role,
        training_image=values["TrainingImageUri"],
        compute=Compute(
            instance_type=instance_type,
            instance_count=instance_count,
            volume_size_in_gb=config.training.volume_size_gb,
            volume_kms_key_id=values["KeyArn"],
            enable_managed_spot_training=config.training.use_spot,
        ),
        networking=Networking(
            enable_network_isolation=config.training.network_isolation,
            enable_inter_container_traffic_encryption=True,
            **vpc,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=config.training.max_run_seconds,
            **({"max_wait_time_in_seconds": config.training.max_wait_seconds} if config.training.use_spot else {}),
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=f"{artifacts}/models/{network.name}/", kms_key_id=values["KeyArn"]
        ),
        checkpoint_config=CheckpointConfig(
            s3_uri=Join(
                on="", values=[f"{artifacts}/checkpoints/{network.name}/", ExecutionVariables.PIPELINE_EXECUTION_ID]
            ),
            local_path="/opt/ml/checkpoints",
        ),
        hyperparameters=hyperparameters,
        input_data_config=[
            InputData(
                channel_name=channel,
                data_source=S3DataSource(
                    s3_data_type="S3Prefix",
                    s3_uri=Join(on="", values=[data_uri, f"{channel}/"]),
                    s3_data_distribution_type="FullyReplicated",
                ),
            )
            for channel in channels
        ]
        # v2's _Job._load_config appends the code channel last, a plain S3 input of the bundle.
        + (
            [
                InputData(
                    channel_name="code",
                    data_source=S3DataSource(
                        s3_data_type="S3Prefix", s3_uri=bundle, s3_data_distribution_type="FullyReplicated"
                    ),
                )
            ]
            if isolated
            else []
        ),
    ).with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in network.metric_definitions])
    train = TrainingStep(name="Train", step_args=trainer.train(), retry_policies=[SERVICE_RETRY, JOB_RETRY])

    def processing_output(name: str) -> ProcessingOutput:
        return ProcessingOutput(
            output_name=name,
            app_managed=False,
            s3_output=ProcessingS3Output(
                s3_uri=Join(
                    on="",
                    values=[
                        f"{artifacts}/pipelines/{network.name}/",
                        ExecutionVariables.PIPELINE_EXECUTION_ID,
                        f"/{name}",
                    ],
                ),
                local_path=f"/opt/ml/processing/{name}",
                s3_upload_mode="EndOfJob",
            ),
        )

    finder = Processor(
        role=role,
        image_uri=values["TrainingImageUri"],
        instance_count=1,
        instance_type=config.training_instance_type(network.name),
        entrypoint=["/bin/bash", "-c", champion_command(config, network)],
        volume_size_in_gb=config.training.volume_size_gb,
        volume_kms_key=values["KeyArn"],
        output_kms_key=values["KeyArn"],
        max_runtime_in_seconds=1800,
        sagemaker_session=session,
        network_config=NetworkConfig(enable_network_isolation=False, encrypt_inter_container_traffic=True, **vpc),
    )
    champion = ProcessingStep(
        name="Champion",
        retry_policies=[SERVICE_RETRY, JOB_RETRY],
        step_args=finder.run(inputs=[_input("code", bundle)], outputs=[processing_output("champion")]),
    )

    processor = Processor(
        role=role,
        image_uri=values["TrainingImageUri"],
        instance_count=1,
        instance_type=config.training_instance_type(network.name),
        entrypoint=["/bin/bash", "-c", evaluation_command(network)],
        volume_size_in_gb=config.training.volume_size_gb,
        volume_kms_key=values["KeyArn"],
        output_kms_key=values["KeyArn"],
        max_runtime_in_seconds=config.training.max_run_seconds,
        sagemaker_session=session,
        env={
            "CHAMPION_TOLERANCE": Join(on="", values=[tolerance]),
            "MODEL_DATA_URL": train.properties.ModelArtifacts.S3ModelArtifacts,
        },
        network_config=NetworkConfig(
            enable_network_isolation=config.training.network_isolation, encrypt_inter_container_traffic=True, **vpc
        ),
    )
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluate = ProcessingStep(
        name="Evaluate",
        property_files=[report],
        retry_policies=[SERVICE_RETRY, JOB_RETRY],
        step_args=processor.run(
            inputs=[
                _input("model", train.properties.ModelArtifacts.S3ModelArtifacts),
                _input("test", Join(on="", values=[data_uri, "test/"])),
                _input("validation", Join(on="", values=[data_uri, "validation/"])),
                _input("code", bundle),
                _input("champion", champion.properties.ProcessingOutputConfig.Outputs["champion"].S3Output.S3Uri),
            ],
            outputs=[processing_output("evaluation")],
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
        role_arn=role,
        sagemaker_session=session,
        s3_model_data_url=train.properties.ModelArtifacts.S3ModelArtifacts,
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
            approval_status=approval,
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

    pipeline = Pipeline(
        name=f"{config.prefix()}-{network.name}",
        sagemaker_session=session,
        parameters=[instance_type, instance_count, *knobs.values(), data_uri, approval, threshold, tolerance],
        steps=[train, champion, evaluate, quality_gate],
    )
    return pipeline.definition()


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
