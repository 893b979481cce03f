"""How a local tuning job searches: a CreateHyperParameterTuningJob request read into an Optuna study.

SageMaker's search strategies are its own; Optuna's stand in for them here, and do the same kind
of thing, not the same thing:

    Bayesian   TPESampler (a Bayesian optimizer; SageMaker's models the objective with a Gaussian process)
    Random     RandomSampler
    Hyperband  RandomSampler with HyperbandPruner (SageMaker's Hyperband: random configurations,
               stopped at rungs of epochs between MinResource and MaxResource)

    TrainingJobEarlyStoppingType Auto   MedianPruner: a trial stops when its best objective so far is
               worse than the median of the earlier trials' at the same epoch (SageMaker compares
               the current value with the median of the earlier trials' running averages)

RandomSeed seeds the sampler. A warm start adds the parent tuning jobs' trials to the study first,
as results it already has, after the checks SageMaker makes of a parent (`warm_start_problem`).

    search = Search.from_request(request)          # ValueError: what SageMaker would refuse
    study = search.study(name, parents)            # parents: (hyperparameters, objective) pairs
    trial = study.ask(search.distributions)
    search.hyperparameters(trial)                  # TunedHyperParameters, as text
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

STRATEGIES = ("Bayesian", "Random", "Hyperband")
# The keys SageMaker reads MaxResource from when HyperbandStrategyConfig has none (AWS API reference).
HYPERBAND_RESOURCE_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
_KINDS = ("Continuous", "Integer", "Categorical")
# A reverse-logarithmic range searches 1 - x on a log scale (SageMaker: for ranges near 1).
_REVERSE = "ReverseLogarithmic"

optuna.logging.set_verbosity(logging.WARNING)


@dataclass(frozen=True)
class Search:
    objective_metric: str
    maximize: bool
    strategy: str
    distributions: dict[str, optuna.distributions.BaseDistribution]
    reversed_ranges: frozenset[str]
    early_stopping: bool
    hyperband_resources: tuple[int, int] | None
    seed: int | None

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> Search:
        """Reads the request, or ValueError with what SageMaker would answer a request it refuses."""
        config = request["HyperParameterTuningJobConfig"]
        strategy = config["Strategy"]
        if strategy not in STRATEGIES:
            raise ValueError(f"Strategy {strategy}: the local executor runs {', '.join(STRATEGIES)}")
        objective = config.get("HyperParameterTuningJobObjective")
        if objective is None:
            raise ValueError("HyperParameterTuningJobObjective is required (the local executor has no Autotune)")
        static = request["TrainingJobDefinition"].get("StaticHyperParameters", {})
        distributions, reversed_ranges = _distributions(config.get("ParameterRanges", {}))
        if not distributions:
            raise ValueError("ParameterRanges holds no range to tune")
        both = sorted(set(distributions) & set(static))
        if both:
            raise ValueError(f"hyperparameters {', '.join(both)} are both static and tunable")
        early_stopping = config.get("TrainingJobEarlyStoppingType", "Off") == "Auto"
        resources = None
        if strategy == "Hyperband":
            if early_stopping:
                raise ValueError("TrainingJobEarlyStoppingType must be Off with the Hyperband strategy")
            resources = _hyperband_resources(
                config.get("StrategyConfig", {}).get("HyperbandStrategyConfig", {}), static
            )
        metrics = {
            item["Name"]
            for item in request["TrainingJobDefinition"]["AlgorithmSpecification"].get("MetricDefinitions", [])
        }
        if objective["MetricName"] not in metrics:
            raise ValueError(f"the objective metric {objective['MetricName']} has no MetricDefinition")
        return cls(
            objective_metric=objective["MetricName"],
            maximize=objective["Type"] == "Maximize",
            strategy=strategy,
            distributions=distributions,
            reversed_ranges=frozenset(reversed_ranges),
            early_stopping=early_stopping,
            hyperband_resources=resources,
            seed=config.get("RandomSeed"),
        )

    def study(self, name: str, parents: Iterable[tuple[Mapping[str, str], float]] = ()) -> optuna.Study:
        """A study named after the tuning job: HyperbandPruner puts trials in brackets by a hash of
        the study's name and the trial's number, so a name makes a seeded search repeatable."""
        sampler: optuna.samplers.BaseSampler = (
            optuna.samplers.TPESampler(seed=self.seed)
            if self.strategy == "Bayesian"
            else optuna.samplers.RandomSampler(seed=self.seed)
        )
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
        if self.hyperband_resources is not None:
            low, high = self.hyperband_resources
            pruner = optuna.pruners.HyperbandPruner(min_resource=low, max_resource=high)
        elif self.early_stopping:
            # From the first trial that finished, at every epoch: SageMaker's rule has no warm-up.
            pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
        study = optuna.create_study(
            study_name=name, direction="maximize" if self.maximize else "minimize", sampler=sampler, pruner=pruner
        )
        for hyperparameters, value in parents:
            params = self._params(hyperparameters)
            if params is not None:
                study.add_trial(optuna.trial.create_trial(params=params, distributions=self.distributions, value=value))
        return study

    def hyperparameters(self, trial: optuna.trial.BaseTrial) -> dict[str, str]:
        """The trial's TunedHyperParameters: every tuned knob's value as text."""
        values = {}
        for name in self.distributions:
            value = trial.params[name]
            values[name] = str(1 - value if name in self.reversed_ranges else value)
        return values

    def better(self, value: float, than: float) -> bool:
        return value > than if self.maximize else value < than

    def _params(self, hyperparameters: Mapping[str, str]) -> dict[str, Any] | None:
        """A parent trial's values as this study's params, or None if one lies outside the ranges."""
        params = {}
        for name, distribution in self.distributions.items():
            if name not in hyperparameters:
                return None
            raw = hyperparameters[name]
            try:
                if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                    value: Any = raw
                elif isinstance(distribution, optuna.distributions.IntDistribution):
                    value = int(float(raw))
                else:
                    value = 1 - float(raw) if name in self.reversed_ranges else float(raw)
            except ValueError:
                return None
            if not distribution._contains(distribution.to_internal_repr(value)):
                return None
            params[name] = value
        return params


def warm_start_problem(child: Mapping[str, Any], parent: Mapping[str, Any]) -> str | None:
    """What SageMaker refuses of a warm start from `parent` (DescribeHyperParameterTuningJob), or None:
    a parent still running, another objective metric, another set of hyperparameters (static and
    tunable; AWS documents that their number must stay the same: here their names must), a
    hyperparameter of another kind."""
    name = parent["HyperParameterTuningJobName"]
    if parent["HyperParameterTuningJobStatus"] not in ("Completed", "Stopped", "Failed"):
        return f"parent tuning job {name} is {parent['HyperParameterTuningJobStatus']}, not finished"
    objective = child["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    parent_objective = parent["HyperParameterTuningJobConfig"].get("HyperParameterTuningJobObjective", {})
    if parent_objective.get("MetricName") != objective:
        return f"parent tuning job {name} optimized {parent_objective.get('MetricName')}, not {objective}"
    kinds, parent_kinds = _kinds(child), _kinds(parent)
    added, removed = sorted(set(kinds) - set(parent_kinds)), sorted(set(parent_kinds) - set(kinds))
    if added or removed:
        changes = [f"{label} {', '.join(names)}" for label, names in (("added", added), ("removed", removed)) if names]
        return f"hyperparameter names differ from parent tuning job {name}'s: {'; '.join(changes)}"
    changed = sorted(
        knob
        for knob, kind in kinds.items()
        if "Static" not in (kind, parent_kinds[knob]) and kind != parent_kinds[knob]
    )
    if changed:
        return f"hyperparameters {', '.join(changed)} changed kind since parent tuning job {name}"
    return None


def _kinds(request: Mapping[str, Any]) -> dict[str, str]:
    """Each hyperparameter's kind in a tuning request: Static, or its range's."""
    kinds = dict.fromkeys(request["TrainingJobDefinition"].get("StaticHyperParameters", {}), "Static")
    ranges = request["HyperParameterTuningJobConfig"].get("ParameterRanges", {})
    for kind in _KINDS:
        for item in ranges.get(f"{kind}ParameterRanges", []):
            kinds[item["Name"]] = kind
    return kinds


def _distributions(ranges: Mapping[str, Any]) -> tuple[dict[str, optuna.distributions.BaseDistribution], list[str]]:
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    reversed_ranges = []
    for kind in _KINDS:
        for item in ranges.get(f"{kind}ParameterRanges", []):
            name = item["Name"]
            if kind == "Categorical":
                distributions[name] = optuna.distributions.CategoricalDistribution(list(item["Values"]))
                continue
            number = int if kind == "Integer" else float
            low, high = number(float(item["MinValue"])), number(float(item["MaxValue"]))
            if not low < high:
                raise ValueError(f"{name}: MinValue must be below MaxValue")
            scaling = item.get("ScalingType", "Auto")
            if scaling == "Logarithmic" and low <= 0:
                raise ValueError(f"{name}: Logarithmic scaling needs values above 0")
            if scaling == _REVERSE:
                if kind == "Integer" or not (low >= 0 and high < 1):
                    raise ValueError(f"{name}: ReverseLogarithmic needs a continuous range within 0 <= x < 1")
                reversed_ranges.append(name)
                distributions[name] = optuna.distributions.FloatDistribution(1 - high, 1 - low, log=True)
                continue
            # Auto: SageMaker chooses a scaling; the local search takes Linear.
            log = scaling == "Logarithmic"
            distributions[name] = (
                optuna.distributions.IntDistribution(int(low), int(high), log=log)
                if kind == "Integer"
                else optuna.distributions.FloatDistribution(low, high, log=log)
            )
    return distributions, reversed_ranges


def _hyperband_resources(config: Mapping[str, Any], static: Mapping[str, str]) -> tuple[int, int]:
    low = int(config.get("MinResource", 1))
    high = config.get("MaxResource")
    if high is None:
        keys = [key for key in HYPERBAND_RESOURCE_KEYS if key in static]
        if not keys:
            raise ValueError(
                "Hyperband needs MaxResource, or one of the static hyperparameters "
                + ", ".join(HYPERBAND_RESOURCE_KEYS)
            )
        high = static[keys[0]]
    high = int(float(high))
    if low > high:
        raise ValueError(f"Hyperband's MinResource {low} is above its MaxResource {high}")
    return low, high
