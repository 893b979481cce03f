"""The tuning pipelines of one network: the training pipeline's gate, with a tuning job in front.

    Tune (Tuning) ----------> Evaluate (Processing) -> QualityGate (Condition)
    Champion (Processing) --'                            |-- passes: Register (RegisterModel)
                                                         '-- fails:  Fail (Fail)

The Tune step is built in infra/definitions/tuning_step.py; Champion, Evaluate, QualityGate,
Register and Fail are the training pipeline's (infra/definitions/training_pipeline.py), given the
best trial's model instead of the Train step's, so a tuned candidate passes the same gate.

Two pipelines per network, both deployed with the stage: `<prefix>-<network>-tuning` searches from
nothing, `<prefix>-<network>-tuning-warm-start` from the trials of the tuning job its
WarmStartTuningJob parameter names. Whether a run trains or tunes, from nothing or warm, is the
choice of which pipeline to start (`mlops train`, `mlops tune`, `mlops tune --warm-start JOB`),
made at run time. A Condition step cannot make that choice inside one pipeline: a step after it
reads the model of one branch's step, and a step that reads a step of the branch not taken never
runs; and WarmStartConfig cannot be left out of a request by a parameter (an empty parent name is
an invalid request).

Like the training pipeline: no SDK, sorted keys, `${Placeholder}`s filled in with `Fn::Sub`;
`tests/test_pipeline_sdk_parity.py` builds the same pipelines with SageMaker SDK v3.
"""

from __future__ import annotations

import json
from typing import Any

from infra import naming
from infra.config import StageConfig
from infra.definitions.champion_step import champion_step
from infra.definitions.parameters import (
    MAX_PARALLEL_TRAINING_JOBS,
    MAX_TRAINING_JOBS,
    WARM_START_TUNING_JOB,
    PipelineParameter,
)
from infra.definitions.training_pipeline import SCHEMA_VERSION, evaluate_step, pipeline_parameters, quality_gate_step
from infra.definitions.tuning_step import best_model_artifacts, tuning_metadata, tuning_step
from training.networks import get_network


def tuning_pipeline_names(prefix: str, network: str) -> dict[bool, str]:
    """The network's tuning pipelines by whether they warm start."""
    return {False: naming.tuning_pipeline_name(prefix, network), True: naming.warm_start_pipeline_name(prefix, network)}


def tuning_parameters(config: StageConfig, network_name: str, *, warm_start: bool) -> tuple[PipelineParameter, ...]:
    """The training pipeline's parameters but those feeding a tuned knob, then the tuning job's limits
    (and the parent tuning job of a warm start)."""
    tuned = {name for name, _ in config.tuning.ranges_for(network_name)}
    return (
        *(
            parameter
            for parameter in pipeline_parameters(config, network_name)
            if parameter.hyperparameter is None or parameter.hyperparameter.name not in tuned
        ),
        PipelineParameter(MAX_TRAINING_JOBS, "Integer", config.tuning.max_training_jobs, minimum=1),
        PipelineParameter(MAX_PARALLEL_TRAINING_JOBS, "Integer", config.tuning.max_parallel_training_jobs, minimum=1),
        # No default: a warm start names its parent, or SageMaker Pipelines refuses to start it.
        *((PipelineParameter(WARM_START_TUNING_JOB, "String", None),) if warm_start else ()),
    )


def tuning_pipeline_definition(config: StageConfig, network_name: str, *, warm_start: bool) -> dict[str, Any]:
    network = get_network(network_name)
    parameters = tuning_parameters(config, network.name, warm_start=warm_start)
    model = best_model_artifacts(network)
    return {
        "Version": SCHEMA_VERSION,
        "Metadata": {},
        "Parameters": [parameter.to_definition() for parameter in parameters],
        "Steps": [
            tuning_step(config, network, parameters, warm_start=warm_start),
            champion_step(config, network),
            evaluate_step(config, network, model),
            quality_gate_step(config, network, model, tuning_metadata(config, network)),
        ],
    }


def tuning_definition_body(config: StageConfig, network_name: str, *, warm_start: bool) -> str:
    """The definition as the exact text CloudFormation receives (before `Fn::Sub`)."""
    definition = tuning_pipeline_definition(config, network_name, warm_start=warm_start)
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))
