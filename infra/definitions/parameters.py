"""The parameters of a network's training pipeline: their names, types and how a value is checked.

`infra.definitions.training_pipeline` lists them for a stage (`pipeline_parameters`); the CLI checks
`--param` values with `PipelineParameter.parse` before it starts a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from training.hyperparameters import Hyperparameter, HyperparameterValue

TRAINING_INSTANCE_TYPE = "TrainingInstanceType"
TRAINING_INSTANCE_COUNT = "TrainingInstanceCount"
INPUT_DATA_URI = "InputDataUri"
MODEL_APPROVAL_STATUS = "ModelApprovalStatus"
QUALITY_THRESHOLD = "QualityThreshold"
CHAMPION_TOLERANCE = "ChampionTolerance"
# The tuning pipelines' own (infra/definitions/tuning_pipeline.py).
MAX_TRAINING_JOBS = "MaxTrainingJobs"
MAX_PARALLEL_TRAINING_JOBS = "MaxParallelTrainingJobs"
WARM_START_TUNING_JOB = "WarmStartTuningJob"
APPROVAL_STATUSES = ("Approved", "PendingManualApproval")

ParameterType = Literal["String", "Integer", "Float"]


@dataclass(frozen=True)
class PipelineParameter:
    """A parameter of the pipeline; `hyperparameter` is set when it feeds one."""

    name: str
    type: ParameterType
    default: HyperparameterValue | None
    """None: no default, so StartPipelineExecution must give a value."""
    enum_values: tuple[str, ...] = ()
    hyperparameter: Hyperparameter | None = None
    minimum: float | None = None
    """The least value the request field it feeds takes (SageMaker's own limit), checked by `parse`."""

    def to_definition(self) -> dict[str, Any]:
        parameter: dict[str, Any] = {"Name": self.name, "Type": self.type}
        if self.default is not None:
            parameter["DefaultValue"] = self.default
        if self.enum_values:
            parameter["EnumValues"] = list(self.enum_values)
        return parameter

    def parse(self, raw: str) -> HyperparameterValue:
        """The typed value of `raw`, or ValueError saying what is wrong: checked as the
        hyperparameter it feeds, else as a knob of the parameter's own type and values."""
        knob = self.hyperparameter or Hyperparameter(
            self.name,
            _PYTHON_TYPES[self.type]() if self.default is None else _PYTHON_TYPES[self.type](self.default),
            f"pipeline parameter {self.name}",
            choices=self.enum_values,
            minimum=self.minimum,
        )
        return knob.parse(raw)


def parameter_name(hyperparameter: str) -> str:
    """`learning_rate` -> `LearningRate`: the pipeline parameter that feeds a hyperparameter."""
    return "".join(part[:1].upper() + part[1:] for part in hyperparameter.split("_"))


# The pipeline parameter type of a knob, by the type of its default.
PARAMETER_TYPES: dict[type, ParameterType] = {int: "Integer", float: "Float", str: "String"}
_PYTHON_TYPES: dict[ParameterType, type] = {name: python for python, name in PARAMETER_TYPES.items()}
