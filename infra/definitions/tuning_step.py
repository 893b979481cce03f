"""The Tune step of a network's tuning pipelines, and where the other steps find the model it chose.

    Tune (Tuning)   a hyperparameter tuning job: trials of the network's entry point, each a training
                    job like the Train step's, over the stage's ranges (infra/tuning_config.py)

Its Arguments are a CreateHyperParameterTuningJob request less its name, as the SageMaker SDK's
TuningStep writes it; the pipeline service names the job. Its properties join that job's
DescribeHyperParameterTuningJob response and ListTrainingJobsForHyperParameterTuningJob's.

The candidate is the tuning job's BestTrainingJob, whose model SageMaker wrote where every job of
the network writes its model (`<S3OutputPath><job name>/output/model.tar.gz`); the SDK's
`TuningStep.get_top_model_s3_uri` joins the same path from `TrainingJobSummaries[k]`. Not that list:
it ranks every trial that reported the objective, a trial stopped early included, whose model may
be missing, while BestTrainingJob is the trial that *completed* with the best objective (AWS API
reference, DescribeHyperParameterTuningJob).
"""

from __future__ import annotations

from typing import Any

from infra.config import StageConfig
from infra.definitions.parameters import (
    MAX_PARALLEL_TRAINING_JOBS,
    MAX_TRAINING_JOBS,
    WARM_START_TUNING_JOB,
    PipelineParameter,
)
from infra.definitions.parts import ARTIFACTS_BUCKET, JOB_RETRY, SERVICE_RETRY, get, join, parameter, placeholder
from infra.definitions.train_step import algorithm, fixed_hyperparameters, job_settings, knob_values, models_prefix
from training.networks import EPOCHS, Network

TUNE_STEP = "Tune"


def tuning_step(
    config: StageConfig, network: Network, parameters: tuple[PipelineParameter, ...], *, warm_start: bool
) -> dict[str, Any]:
    tuned = config.tuning.ranges_for(network.name)
    tuned_names = tuple(name for name, _ in tuned)
    if config.tuning.strategy == "Hyperband" and EPOCHS in tuned_names:
        raise ValueError(f"{network.name}: Hyperband spends {EPOCHS} itself (MaxResource), it cannot also tune it")
    ranges: dict[str, list[dict[str, Any]]] = {}
    for name, search in tuned:
        ranges.setdefault(f"{search.kind}ParameterRanges", []).append(search.request(name))
    job_config: dict[str, Any] = {
        "Strategy": config.tuning.strategy,
        "HyperParameterTuningJobObjective": {
            "Type": network.tuning.objective.type,
            "MetricName": network.tuning.objective.metric,
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": parameter(MAX_TRAINING_JOBS),
            "MaxParallelTrainingJobs": parameter(MAX_PARALLEL_TRAINING_JOBS),
            **(
                {"MaxRuntimeInSeconds": config.tuning.max_runtime_seconds}
                if config.tuning.max_runtime_seconds is not None
                else {}
            ),
        },
        "ParameterRanges": ranges,
        "TrainingJobEarlyStoppingType": config.tuning.early_stopping_type,
    }
    if config.tuning.strategy == "Hyperband":
        # Epochs are Hyperband's resource: every trial gets at least MinResource, and SageMaker
        # stops the rest at its rungs. Without a MaxResource, SageMaker takes the static `epochs`
        # hyperparameter for it (AWS API reference, HyperbandStrategyConfig), so a run given other
        # Epochs keeps the two equal.
        job_config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": config.tuning.hyperband_min_epochs}}
    if config.tuning.random_seed is not None:
        job_config["RandomSeed"] = config.tuning.random_seed
    arguments: dict[str, Any] = {
        "HyperParameterTuningJobConfig": job_config,
        "TrainingJobDefinition": {
            "AlgorithmSpecification": algorithm(network),
            "StaticHyperParameters": {
                "sagemaker_program": network.entry_point,
                **fixed_hyperparameters(config),
                # A tuned knob is never also static: SageMaker refuses the job.
                **knob_values(parameters, leave_out=tuned_names),
            },
            **job_settings(config, network),
        },
    }
    if warm_start:
        arguments["WarmStartConfig"] = {
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": parameter(WARM_START_TUNING_JOB)}],
            "WarmStartType": config.tuning.warm_start_type,
        }
    return {"Name": TUNE_STEP, "Type": "Tuning", "Arguments": arguments, "RetryPolicies": [SERVICE_RETRY, JOB_RETRY]}


def best_training_job(path: str = "TrainingJobName") -> dict[str, str]:
    """A property of the trial the tuning job chose (its BestTrainingJob summary)."""
    return get(f"Steps.{TUNE_STEP}.BestTrainingJob.{path}")


def best_model_artifacts(network: Network) -> dict[str, Any]:
    """The chosen trial's model.tar.gz, joined as the SDK's `get_top_model_s3_uri` joins it."""
    return join(
        "s3:/",
        placeholder(ARTIFACTS_BUCKET),
        models_prefix(network).rstrip("/"),
        best_training_job(),
        "output/model.tar.gz",
        on="/",
    )


def tuning_metadata(config: StageConfig, network: Network) -> dict[str, Any]:
    """What a version registered from a tuning run records beside every version's metadata: the
    tuning job, the trial, its objective and the value of each knob it tuned."""
    objective = network.tuning.objective
    return {
        "tuning_job": get(f"Steps.{TUNE_STEP}.HyperParameterTuningJobName"),
        "trial": best_training_job(),
        "objective_metric": objective.metric,
        "objective_value": join(best_training_job("FinalHyperParameterTuningJobObjectiveMetric.Value")),
        **{
            f"tuned_{name}": best_training_job(f"TunedHyperParameters['{name}']")
            for name, _ in config.tuning.ranges_for(network.name)
        },
    }
