"""The Train step of a network's pipeline, and where the other steps find the model it wrote.

    Train (Training)   the network's entry point under SageMaker's training toolkit, on the
                       data channels (and with network isolation its code as the `code` channel)

The entry point, its metrics and channels come from the registry (training/networks.py), its
hyperparameters from the pipeline's parameters (infra/definitions/parameters.py).
"""

from __future__ import annotations

from typing import Any

from infra.config import StageConfig
from infra.definitions.parameters import (
    INPUT_DATA_URI,
    TRAINING_INSTANCE_COUNT,
    TRAINING_INSTANCE_TYPE,
    PipelineParameter,
)
from infra.definitions.parts import (
    ARTIFACTS_BUCKET,
    EXECUTION_ID,
    EXECUTION_ROLE_ARN,
    JOB_RETRY,
    KEY_ARN,
    SERVICE_RETRY,
    SOURCE_BUNDLE_FILE,
    SOURCE_BUNDLE_URI,
    TRAINING_IMAGE_URI,
    get,
    join,
    network_config,
    parameter,
    placeholder,
    s3,
)
from training.networks import Network

TRAIN_STEP = "Train"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# With network isolation the container cannot fetch the source bundle from S3: SageMaker copies it
# in as this channel, and the toolkit unpacks it from there (as SDK v2's Framework estimator does:
# its `code` channel and /opt/ml/input/data/code/sourcedir.tar.gz; ours is named by its hash).
CODE_CHANNEL = "code"
CODE_CHANNEL_BUNDLE = f"/opt/ml/input/data/{CODE_CHANNEL}/{placeholder(SOURCE_BUNDLE_FILE)}"


def training_channels(config: StageConfig, network: Network) -> tuple[str, ...]:
    """The input channels of the training job.

    SageMaker fails a job whose channel prefix holds no object, so an optional channel is only
    wired where it must exist: with network isolation the job cannot download base weights
    (keras.applications), so they have to arrive as the `pretrained` channel, and data
    preparation must upload it. Without isolation the entry point downloads them itself.
    """
    if config.training.network_isolation:
        return network.channels
    return network.required_channels


def _hyperparameter_value(knob: PipelineParameter) -> Any:
    # HyperParameters is a map of strings: numbers go through Std:Join to become text.
    if knob.type == "String":
        return parameter(knob.name)
    return join(parameter(knob.name))


def fixed_hyperparameters(config: StageConfig) -> dict[str, Any]:
    """What the job tells SageMaker's toolkit, the same in every job of the network: where its code
    is and how to run it, its region, and where checkpoints go."""
    isolated = config.training.network_isolation
    return {
        "sagemaker_submit_directory": CODE_CHANNEL_BUNDLE if isolated else placeholder(SOURCE_BUNDLE_URI),
        "sagemaker_region": config.region,
        "sagemaker_container_log_level": "20",
        # The TF container then writes TF_CONFIG for every host (a one-worker cluster when
        # TrainingInstanceCount is 1); it changes nothing else, and the entry point decides
        # its strategy from TF_CONFIG. Never send "false": an unparsed "false" is truthy.
        "sagemaker_multi_worker_mirrored_strategy_enabled": "true",
        "checkpoint_dir": CHECKPOINT_LOCAL_PATH,
    }


def knob_values(parameters: tuple[PipelineParameter, ...], leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """Each hyperparameter fed by its pipeline parameter, but those in `leave_out`."""
    return {
        knob.hyperparameter.name: _hyperparameter_value(knob)
        for knob in parameters
        if knob.hyperparameter is not None and knob.hyperparameter.name not in leave_out
    }


def algorithm(network: Network) -> dict[str, Any]:
    return {
        "TrainingImage": placeholder(TRAINING_IMAGE_URI),
        "TrainingInputMode": "File",
        "MetricDefinitions": network.metric_definitions,
    }


def job_settings(config: StageConfig, network: Network) -> dict[str, Any]:
    """A training job's request but its name, algorithm and hyperparameters: what the Train step's
    CreateTrainingJob and every trial of a Tuning step's TrainingJobDefinition share."""
    isolated = config.training.network_isolation
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": config.training.max_run_seconds}
    # Spot is a stage setting baked in at synth, not a pipeline parameter: SageMaker rejects
    # MaxWaitTimeInSeconds without EnableManagedSpotTraining, and a parameter cannot remove a
    # field from the request (aws/sagemaker-python-sdk#4140).
    if config.training.use_spot:
        stopping["MaxWaitTimeInSeconds"] = config.training.max_wait_seconds
    return {
        "InputDataConfig": [
            *(
                _channel(channel, join(parameter(INPUT_DATA_URI), f"{channel}/"))
                for channel in training_channels(config, network)
            ),
            *([_channel(CODE_CHANNEL, placeholder(SOURCE_BUNDLE_URI))] if isolated else []),
        ],
        "OutputDataConfig": {
            "S3OutputPath": s3(ARTIFACTS_BUCKET, models_prefix(network)),
            "KmsKeyId": placeholder(KEY_ARN),
        },
        "ResourceConfig": {
            "InstanceType": parameter(TRAINING_INSTANCE_TYPE),
            "InstanceCount": parameter(TRAINING_INSTANCE_COUNT),
            "VolumeSizeInGB": config.training.volume_size_gb,
            "VolumeKmsKeyId": placeholder(KEY_ARN),
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": config.training.use_spot,
        # One checkpoint folder per execution: a new run starts fresh, while a spot
        # interruption or a retried job of the same run resumes where it stopped.
        "CheckpointConfig": {
            "S3Uri": join(s3(ARTIFACTS_BUCKET, f"checkpoints/{network.name}/"), EXECUTION_ID),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        "RoleArn": placeholder(EXECUTION_ROLE_ARN),
        **network_config(config),
    }


def models_prefix(network: Network) -> str:
    """The artifacts bucket's prefix of the network's jobs' outputs (S3OutputPath): SageMaker
    writes a job's model to `<prefix><job name>/output/model.tar.gz`."""
    return f"models/{network.name}/"


def train_step(config: StageConfig, network: Network, parameters: tuple[PipelineParameter, ...]) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "AlgorithmSpecification": algorithm(network),
        "HyperParameters": {
            "sagemaker_program": network.entry_point,
            **fixed_hyperparameters(config),
            **knob_values(parameters),
        },
        **job_settings(config, network),
    }
    return {"Name": TRAIN_STEP, "Type": "Training", "Arguments": arguments, "RetryPolicies": [SERVICE_RETRY, JOB_RETRY]}


def _channel(name: str, uri: Any) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
    }


def model_artifacts() -> dict[str, str]:
    return get(f"Steps.{TRAIN_STEP}.ModelArtifacts.S3ModelArtifacts")
