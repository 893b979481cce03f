"""`--param NAME=VALUE` of the commands that start a pipeline (`mlops train`, `mlops tune`, `mlops local`).

Names and types come from `infra.definitions.training_pipeline` (the list the pipeline is defined with), so
a value is checked as the pipeline will take it, before anything starts.
"""

from __future__ import annotations

import re

import botocore.session

from infra.config import StageConfig
from infra.definitions import training_pipeline as definition
from infra.definitions.parameters import PipelineParameter, parameter_name
from infra.images import training_image_uri
from mlops.errors import UsageError
from training.hyperparameters import HyperparameterValue

_S3_PREFIX_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(.+/)?$")


def parse_parameters(
    config: StageConfig,
    network: str,
    assignments: list[str],
    parameters: tuple[PipelineParameter, ...] | None = None,
) -> dict[str, HyperparameterValue]:
    """`["epochs=3", "TrainingInstanceType=ml.m7i.2xlarge"]` -> pipeline parameter values.

    A name is a pipeline parameter (`Epochs`) or the hyperparameter it feeds (`epochs`), of the
    training pipeline unless `parameters` are another pipeline's (a tuning pipeline's).
    """
    parameters = parameters or definition.pipeline_parameters(config, network)
    by_name = {parameter.name: parameter for parameter in parameters}
    by_name.update(
        {parameter.hyperparameter.name: parameter for parameter in parameters if parameter.hyperparameter is not None}
    )
    values: dict[str, HyperparameterValue] = {}
    for assignment in assignments:
        name, equals, raw = assignment.partition("=")
        name = name.strip()
        if not equals or not name:
            raise UsageError(f"--param {assignment!r}: expected NAME=VALUE, e.g. epochs=3")
        if name not in by_name:
            tuned = [knob for knob, _ in config.tuning.ranges_for(network)]
            if name in tuned or name in {parameter_name(knob) for knob in tuned}:
                raise UsageError(f"--param {name}: tuned by this pipeline (the stage's ranges: cdk.json tuning.ranges)")
            knobs = [p.hyperparameter.name for p in parameters if p.hyperparameter is not None]
            others = [p.name for p in parameters if p.hyperparameter is None]
            raise UsageError(
                f"--param {name}: {network} has no such parameter (hyperparameters: "
                f"{', '.join(knobs)}; pipeline parameters: {', '.join(others)})"
            )
        parameter = by_name[name]
        if parameter.name in values:
            raise UsageError(f"--param {name}: given twice")
        try:
            values[parameter.name] = parameter.parse(raw)
        except ValueError as error:
            raise UsageError(f"--param {name}: {error}") from None
        _check_value(config, network, parameter.name, values[parameter.name])
    return values


def _check_value(config: StageConfig, network: str, name: str, value: HyperparameterValue) -> None:
    """What SageMaker would reject, or run with the wrong image, caught before anything starts."""
    if name == definition.TRAINING_INSTANCE_COUNT and isinstance(value, int | float) and value < 1:
        raise UsageError(f"--param {name}: must be at least 1, got {value}")
    if name == definition.INPUT_DATA_URI and not _S3_PREFIX_URI.match(str(value)):
        raise UsageError(
            f"--param {name}: must be an S3 prefix ending in '/', e.g. s3://bucket/{network}/, got {value!r}"
        )
    if name == definition.TRAINING_INSTANCE_TYPE:
        model = botocore.session.get_session().get_service_model("sagemaker")
        if value not in model.shape_for("TrainingInstanceType").enum:
            raise UsageError(f"--param {name}: {value!r} is not a SageMaker training instance type")
        baked = training_image_uri(config.region, config.training_instance_type(network))
        try:
            wanted = training_image_uri(config.region, str(value))
        except ValueError as error:
            raise UsageError(f"--param {name}: {error}") from None
        if wanted != baked:
            raise UsageError(
                f"--param {name}: {value} needs a different training image than the pipeline's "
                f"({baked}); set training.instance_type for stage {config.name} in cdk.json instead"
            )
