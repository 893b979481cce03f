"""A network's tuning pipelines built with SageMaker SDK v3, for `test_pipeline_sdk_parity.py`.

The SDK's own way: a `HyperparameterTuner` over the training pipeline's `ModelTrainer` (the knobs it
tunes left out), `tuner.tune()` as a `TuningStep`'s arguments, and the training pipeline's gate
(`pipeline_sdk_support.gate_steps`) given the model of the tuning job's BestTrainingJob, joined as
`TuningStep.get_top_model_s3_uri` joins one. Shares with `infra.definitions.tuning_pipeline` only
names that are conventions (step, parameter and metadata names), the stage's settings and the
registry's ranges, never the step structure.
"""

from __future__ import annotations

from typing import Any

from pipeline_sdk_support import (
    JOB_RETRY,
    SERVICE_RETRY,
    Context,
    champion_step,
    channel_uris,
    gate_steps,
    model_trainer,
    offline,
)
from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
from sagemaker.core.shapes import (
    HyperbandStrategyConfig,
    HyperParameterTuningJobStrategyConfig,
    HyperParameterTuningJobWarmStartConfig,
    ParentHyperParameterTuningJob,
)
from sagemaker.core.workflow.functions import Join
from sagemaker.core.workflow.parameters import ParameterInteger, ParameterString
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import TuningStep
from sagemaker.train.tuner import HyperparameterTuner

from infra.config import StageConfig
from training.networks import Network
from training.search_space import ContinuousRange, IntegerRange, SearchRange


def build_tuning(config: StageConfig, network: Network, values: dict[str, str], *, warm_start: bool) -> str:
    """The SDK's `Pipeline.definition()` JSON of `network`'s tuning pipeline in `config`."""
    return offline(lambda: _build(config, network, values, warm_start))


def _sdk_range(search: SearchRange) -> Any:
    if isinstance(search, ContinuousRange):
        return ContinuousParameter(search.minimum, search.maximum, scaling_type=search.scaling)
    if isinstance(search, IntegerRange):
        return IntegerParameter(search.minimum, search.maximum, scaling_type=search.scaling)
    return CategoricalParameter(list(search.values))


def _build(config: StageConfig, network: Network, values: dict[str, str], warm_start: bool) -> str:
    context = Context(config, network, values)
    tuned = dict(config.tuning.ranges_for(network.name))
    max_jobs = ParameterInteger("MaxTrainingJobs", default_value=config.tuning.max_training_jobs)
    max_parallel = ParameterInteger("MaxParallelTrainingJobs", default_value=config.tuning.max_parallel_training_jobs)
    parent = ParameterString("WarmStartTuningJob")
    trainer = model_trainer(context, tuning=True, leave_out=set(tuned))
    hyperband = config.tuning.strategy == "Hyperband"
    tuner = HyperparameterTuner(
        trainer,
        objective_metric_name=network.tuning.objective.metric,
        objective_type=network.tuning.objective.type,
        hyperparameter_ranges={name: _sdk_range(search) for name, search in tuned.items()},
        metric_definitions=network.metric_definitions,
        strategy=config.tuning.strategy,
        # v3's ResourceLimits is an int-only pydantic model: a pipeline variable is refused there
        # (v2's took one); the parameters are still declared, and the test says which fields differ.
        max_jobs=config.tuning.max_training_jobs,
        max_parallel_jobs=config.tuning.max_parallel_training_jobs,
        max_runtime_in_seconds=config.tuning.max_runtime_seconds,
        early_stopping_type=config.tuning.early_stopping_type,
        random_seed=config.tuning.random_seed,
        strategy_config=HyperParameterTuningJobStrategyConfig(
            hyperband_strategy_config=HyperbandStrategyConfig(min_resource=config.tuning.hyperband_min_epochs)
        )
        if hyperband
        else None,
        warm_start_config=HyperParameterTuningJobWarmStartConfig(
            parent_hyper_parameter_tuning_jobs=[ParentHyperParameterTuningJob(hyper_parameter_tuning_job_name=parent)],
            warm_start_type=config.tuning.warm_start_type,
        )
        if warm_start
        else None,
    )
    tune = TuningStep(
        name="Tune", step_args=tuner.tune(inputs=channel_uris(context)), retry_policies=[SERVICE_RETRY, JOB_RETRY]
    )
    best = tune.properties.BestTrainingJob
    model = Join(
        on="/",
        values=[
            "s3:/",
            values["ArtifactsBucket"],
            f"models/{network.name}",
            best.TrainingJobName,
            "output/model.tar.gz",
        ],
    )
    metadata = {
        "tuning_job": tune.properties.HyperParameterTuningJobName,
        "trial": best.TrainingJobName,
        "objective_metric": network.tuning.objective.metric,
        "objective_value": Join(on="", values=[best.FinalHyperParameterTuningJobObjectiveMetric.Value]),
        **{f"tuned_{name}": best.TunedHyperParameters[name] for name in tuned},
    }
    champion = champion_step(context)
    pipeline = Pipeline(
        name=f"{config.prefix()}-{network.name}-tuning",
        sagemaker_session=context.session,
        parameters=[*context.pipeline_parameters(leave_out=set(tuned)), max_jobs, max_parallel]
        + ([parent] if warm_start else []),
        steps=[tune, champion, *gate_steps(context, champion, model, metadata)],
    )
    return pipeline.definition()
