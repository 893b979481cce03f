"""The hand-written definitions (training and tuning pipelines) against the same pipelines built
with SageMaker SDK v3.

The SDK side is built from the registry and the stage configuration only (step by step, the way
the SDK's documentation builds a pipeline), never from `infra.definitions.training_pipeline`'s steps, so a
field the dict misnames, misses or invents shows up as a difference. Both sides get the same
deploy-time values. The SDK adds a few defaults of its own; those, and only those, may differ.
Offline workarounds (docs/platform.md): region set, role as an ARN string, telemetry opted out in the
session's config, every S3 path explicit, no EC2 metadata, role validation off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_pipeline_definition import SAMPLE_VALUES, isolated_stage, stage

from infra.config import StageConfig
from infra.definitions import training_pipeline as definition
from infra.definitions import tuning_pipeline
from training.networks import get_network

# Present only in the SDK's output: defaults it always writes, none of which the pipeline needs.
SDK_ONLY = {
    ("PipelineExperimentConfig",),  # would create an experiment and trial per run
    ("MlflowConfig",),  # null
    ("Steps", "Train", "Arguments", "OutputDataConfig", "CompressionType"),  # GZIP is the API default
    ("Steps", "Register", "Arguments", "InferenceSpecification", "Containers", 0, "Environment"),  # {}
    ("Steps", "Register", "Arguments", "ModelMetrics", "Bias"),  # {}
    ("Steps", "Register", "Arguments", "SkipModelValidation"),  # the string "None"
}

CASES = [pytest.param("dev", network, id=f"dev-{network}") for network in ("cnn", "rnn", "autoencoder", "transfer")]
CASES += [pytest.param("local", "cnn", id="local-cnn"), pytest.param("isolated", "transfer", id="isolated-transfer")]


@pytest.fixture(scope="module")
def sdk() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        import pipeline_sdk_support

        yield pipeline_sdk_support


def config_named(name: str) -> StageConfig:
    return isolated_stage() if name == "isolated" else stage(name)


def flatten(value: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    """{path: leaf}; steps are keyed by name so that the Condition's branches line up."""
    if isinstance(value, dict):
        if not value:
            return {path: {}}
        flat: dict[tuple[Any, ...], Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, (*path, key)))
        return flat
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, dict) and "Type" in item and "Name" in item for item in value)
    ):
        flat = {}
        for step in value:
            flat.update(flatten(step, ("Steps", step["Name"])))
        return flat
    if isinstance(value, list) and value:
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, (*path, index)))
        return flat
    return {path: value}


@pytest.mark.slow
@pytest.mark.parametrize(("stage_name", "network"), CASES)
def test_sdk_builds_the_same_definition(sdk: Any, stage_name: str, network: str) -> None:
    config = config_named(stage_name)
    ours = json.loads(definition.substitute_placeholders(definition.definition_body(config, network), SAMPLE_VALUES))
    # The SDK keeps the placeholders our shell commands hold: Fn::Sub fills them in both.
    theirs = json.loads(
        definition.substitute_placeholders(sdk.build(config, get_network(network), SAMPLE_VALUES), SAMPLE_VALUES)
    )
    mine, sdks = flatten(ours), flatten(theirs)
    only_sdk = {path for path in set(sdks) - set(mine) if not any(path[: len(a)] == a for a in SDK_ONLY)}
    assert not only_sdk, f"fields only the SDK writes: {sorted(map(str, only_sdk))}"
    only_ours = set(mine) - set(sdks)
    assert not only_ours, f"fields the SDK does not know: {sorted(map(str, only_ours))}"
    different = {path: (mine[path], sdks[path]) for path in mine if mine[path] != sdks[path]}
    assert not different, f"values that differ: {different}"


def test_the_sdk_only_list_is_still_needed(sdk: Any) -> None:
    """Each listed SDK default still appears, so the list cannot quietly hide a real difference."""
    theirs = flatten(json.loads(sdk.build(stage("dev"), get_network("cnn"), SAMPLE_VALUES)))
    for allowed in SDK_ONLY:
        assert any(path[: len(allowed)] == allowed for path in theirs), allowed


# The tuning pipelines (infra/definitions/tuning_pipeline.py) against the SDK's HyperparameterTuner.
_TUNE = ("Steps", "Tune", "Arguments")
_LIMITS = (*_TUNE, "HyperParameterTuningJobConfig", "ResourceLimits")
_TRIAL = (*_TUNE, "TrainingJobDefinition")
TUNING_SDK_ONLY = SDK_ONLY | {
    (*_TRIAL, "OutputDataConfig", "CompressionType"),  # GZIP is the API default
    # SDK v3's ResourceLimits is an int-only pydantic model: it refuses a pipeline variable there
    # (v2 took one), so its limits are the stage's defaults where ours are the run's parameters.
    (*_LIMITS, "MaxNumberOfTrainingJobs"),
    (*_LIMITS, "MaxParallelTrainingJobs"),
}
TUNING_OURS_ONLY = {
    (*_LIMITS, "MaxNumberOfTrainingJobs", "Get"),
    (*_LIMITS, "MaxParallelTrainingJobs", "Get"),
    # SDK v3's tuner builds the trials' definition from its ModelTrainer but leaves these out
    # (sagemaker/train/tuner.py, `_build_training_job_definition`): with the SDK, trials would run
    # on volumes the project key does not encrypt and without the stage's network isolation.
    (*_TRIAL, "ResourceConfig", "VolumeKmsKeyId"),
    (*_TRIAL, "EnableNetworkIsolation"),
    (*_TRIAL, "EnableInterContainerTrafficEncryption"),
    (*_TRIAL, "EnableManagedSpotTraining"),  # false, the API default, which the SDK leaves out
}
HYPERBAND = {"strategy": "Hyperband", "hyperband_min_epochs": 2, "random_seed": None, "max_runtime_seconds": 7200}
TUNING_CASES = [
    pytest.param("prod", "cnn", True, id="prod-cnn-warm-start"),
    pytest.param("local", "cnn", False, id="local-cnn-isolated"),
    pytest.param("dev", "speech", False, id="dev-speech-categorical"),
    pytest.param("hyperband", "rnn", False, id="hyperband-rnn"),
]


def tuning_config_named(name: str) -> StageConfig:
    from test_tuning_definition import stage_with_tuning

    return stage_with_tuning(HYPERBAND) if name == "hyperband" else config_named(name)


def sdk_tuning(stage_name: str, network: str, warm: bool) -> dict[tuple[Any, ...], Any]:
    import tuning_sdk_support

    config = tuning_config_named(stage_name)
    built = tuning_sdk_support.build_tuning(config, get_network(network), SAMPLE_VALUES, warm_start=warm)
    return flatten(json.loads(definition.substitute_placeholders(built, SAMPLE_VALUES)))


def _listed(path: tuple[Any, ...], allowed: set[tuple[Any, ...]]) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in allowed)


@pytest.mark.parametrize(("stage_name", "network", "warm"), TUNING_CASES)
def test_sdk_builds_the_same_tuning_pipeline(sdk: Any, stage_name: str, network: str, warm: bool) -> None:
    config = tuning_config_named(stage_name)
    body = tuning_pipeline.tuning_definition_body(config, network, warm_start=warm)
    mine = flatten(json.loads(definition.substitute_placeholders(body, SAMPLE_VALUES)))
    sdks = sdk_tuning(stage_name, network, warm)
    only_sdk = {path for path in set(sdks) - set(mine) if not _listed(path, TUNING_SDK_ONLY)}
    assert not only_sdk, f"fields only the SDK writes: {sorted(map(str, only_sdk))}"
    only_ours = {path for path in set(mine) - set(sdks) if not _listed(path, TUNING_OURS_ONLY)}
    assert not only_ours, f"fields the SDK does not write: {sorted(map(str, only_ours))}"
    different = {path: (mine[path], sdks[path]) for path in mine if path in sdks and mine[path] != sdks[path]}
    assert not different, f"values that differ: {different}"


def test_the_sdk_s_tuning_gaps_are_still_there(sdk: Any) -> None:
    """Each listed difference still appears, so the lists cannot quietly hide a real one."""
    theirs = sdk_tuning("local", "cnn", False)
    for gap in TUNING_OURS_ONLY:
        assert not any(_listed(path, {gap}) for path in theirs), f"the SDK writes {gap} now"
    for path in TUNING_SDK_ONLY - SDK_ONLY:
        assert path in theirs, path
