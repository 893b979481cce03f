"""A stage's hyperparameter tuning: cdk.json's `stages.<stage>.tuning`, read by `infra/config.py`.

    "tuning": {"strategy": "Bayesian", "max_training_jobs": 8, "max_parallel_training_jobs": 2,
               "ranges": {"cnn": {"learning_rate": {"min": 0.001}, "dense_units": null}}}

Everything here becomes the tuning pipelines' CreateHyperParameterTuningJob request at synth
(`infra/definitions/tuning_step.py`): the strategy and early stopping shape the request itself
(Hyperband needs its own StrategyConfig and early stopping off), so they are stage settings, not
pipeline parameters. The limits on trials are also pipeline parameters, so a run may ask for fewer.

`ranges` may only narrow the registry's (training/networks.py, `Network.tuning`): a range within
the registry's, a subset of its categorical values, another scaling type, or `null` to keep the
knob at its stage value (a static hyperparameter) instead of tuning it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from training.networks import NETWORKS, get_network
from training.search_space import SearchRange, narrowed

Strategy = Literal["Bayesian", "Random", "Hyperband"]
WarmStartType = Literal["IdenticalDataAndAlgorithm", "TransferLearning"]
RangeChanges = dict[str, dict[str, dict[str, Any] | None]]


class TuningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = Field(default="Bayesian", description="how SageMaker picks each trial's hyperparameters")
    max_training_jobs: int = Field(default=8, ge=1, description="trials per tuning job (ResourceLimits)")
    max_parallel_training_jobs: int = Field(default=2, ge=1, description="trials at once (ResourceLimits)")
    max_runtime_seconds: int | None = Field(
        default=None, ge=120, le=15768000, description="the whole tuning job's time limit; None: only each trial's"
    )
    early_stopping: bool | None = Field(
        default=None, description="stop trials unlikely to beat the others (Auto); None: wherever the strategy allows"
    )
    hyperband_min_epochs: int = Field(default=1, ge=1, description="Hyperband's MinResource: epochs every trial gets")
    random_seed: int | None = Field(
        default=42, ge=0, description="RandomSeed: the same seed gives a more consistent search; None: none sent"
    )
    warm_start_type: WarmStartType = "IdenticalDataAndAlgorithm"
    ranges: RangeChanges = Field(default_factory=dict, description="per network, narrowings of the registry's ranges")

    @model_validator(mode="after")
    def _early_stopping_where_allowed(self) -> TuningConfig:
        if self.strategy == "Hyperband" and self.early_stopping:
            raise ValueError(
                "early_stopping: Hyperband stops trials itself, and SageMaker requires "
                "TrainingJobEarlyStoppingType Off with it; leave early_stopping unset or false"
            )
        return self

    @field_validator("ranges")
    @classmethod
    def _narrowing_only(cls, changes: RangeChanges) -> RangeChanges:
        for network in changes:
            if network not in NETWORKS:
                raise ValueError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
            _narrowed_ranges(network, changes[network])
        return changes

    @property
    def early_stopping_type(self) -> Literal["Auto", "Off"]:
        """TrainingJobEarlyStoppingType: Auto unless turned off, or the strategy is Hyperband."""
        return "Off" if self.strategy == "Hyperband" or self.early_stopping is False else "Auto"

    def ranges_for(self, network: str) -> tuple[tuple[str, SearchRange], ...]:
        """The network's ranges in this stage: the registry's, narrowed or left out as `ranges` says."""
        return _narrowed_ranges(network, self.ranges.get(network, {}))


def _narrowed_ranges(network: str, changes: dict[str, dict[str, Any] | None]) -> tuple[tuple[str, SearchRange], ...]:
    spec = get_network(network)
    tunable = dict(spec.tuning.ranges)
    unknown = sorted(set(changes) - set(tunable))
    if unknown:
        raise ValueError(f"{network}: {', '.join(unknown)} not tunable in the registry (tunable: {', '.join(tunable)})")
    ranges = []
    for name, search in spec.tuning.ranges:
        change = changes.get(name, {})
        if change is None:
            continue
        if not isinstance(change, dict):
            raise ValueError(f"{network}.{name}: a narrowing is an object (min, max, scaling or values) or null")
        try:
            ranges.append((name, narrowed(search, change, spec.hyperparameter(name))))
        except ValueError as error:
            raise ValueError(f"{network}.{name}: {error}") from None
    if not ranges:
        raise ValueError(f"{network}: every range is left out; a tuning job needs at least one")
    return tuple(ranges)
