"""Tunable ranges: the registry's are ranges SageMaker accepts for the knobs they tune, a stage may
only narrow them (cdk.json, `stages.<stage>.tuning`), and a range or setting SageMaker would refuse
fails at synth with a message naming the key."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_pipeline_definition import CDK_CONTEXT, SAGEMAKER

from infra.config import ConfigError, parse_stage_config
from training.networks import NETWORKS, get_network
from training.search_space import CategoricalRange, ContinuousRange, IntegerRange, Objective, tuning


def parse(tuning_settings: dict[str, Any]) -> Any:
    return parse_stage_config({"dev": {**CDK_CONTEXT["stages"]["dev"], "tuning": tuning_settings}}, "dev")


@pytest.mark.parametrize("network", list(NETWORKS))
def test_every_registry_range_tunes_a_knob_within_its_bounds_and_fits_the_api(network: str) -> None:
    spec = get_network(network)
    assert spec.tuning.ranges, f"{network} has nothing to tune"
    for name, search in spec.tuning.ranges:
        knob = spec.hyperparameter(name)
        assert search.problem(knob) is None
        request = search.request(name)
        kind = SAGEMAKER.shape_for(f"{search.kind}ParameterRange")
        assert set(request) <= set(kind.members) and set(kind.required_members) <= set(request)
        if not isinstance(search, CategoricalRange):
            assert float(request["MinValue"]) == search.minimum and float(request["MaxValue"]) == search.maximum
            assert request["ScalingType"] in kind.members["ScalingType"].enum


@pytest.mark.parametrize(
    ("search", "knob", "message"),
    [
        (ContinuousRange(1e-4, 1e-2, "Logarithmic"), "dense_units", "continuous range needs a float knob"),
        (IntegerRange(16, 256), "learning_rate", "integer range needs an int knob"),
        (ContinuousRange(0.0, 0.5, "Logarithmic"), "dropout", "Logarithmic scaling needs a range above 0"),
        (ContinuousRange(0.1, 0.1), "dropout", "minimum must be below its maximum"),
        (ContinuousRange(0.0, 0.99), "dropout", "at most 0.95"),
        (IntegerRange(0, 64), "dense_units", "at least 1"),
        (IntegerRange(16, 256, "ReverseLogarithmic"), "dense_units", "continuous ranges only"),
        (ContinuousRange(1e-4, 2.0, "ReverseLogarithmic"), "learning_rate", "within 0 <= x < 1"),
        (CategoricalRange(("none", "weighted")), "class_weight", "must be one of none, balanced"),
        (CategoricalRange(("none", "none")), "class_weight", "lists a value twice"),
        (CategoricalRange(()), "class_weight", "1 to 30 values"),
    ],
)
def test_a_registry_range_sagemaker_or_the_knob_would_refuse_fails_at_import(
    search: Any, knob: str, message: str
) -> None:
    cnn = get_network("cnn")
    with pytest.raises(ValueError, match=message):
        replace(cnn, tuning=tuning(Objective("val_accuracy", "Maximize"), **{knob: search}))


def test_an_objective_that_is_not_one_of_the_network_s_metrics_fails_at_import() -> None:
    with pytest.raises(ValueError, match="tuning objective val_auc is not one of its metrics"):
        replace(get_network("cnn"), tuning=tuning(Objective("val_auc", "Maximize"), dropout=ContinuousRange(0.0, 0.5)))


def test_a_stage_narrows_leaves_out_and_rescales_ranges() -> None:
    config = parse(
        {
            "ranges": {
                "cnn": {"learning_rate": {"min": 0.001, "max": 0.005}, "dense_units": None},
                "speech": {"class_weight": {"values": ["balanced"]}, "units": {"scaling": "Linear"}},
            }
        }
    )
    assert dict(config.tuning.ranges_for("cnn")) == {
        "learning_rate": ContinuousRange(0.001, 0.005, "Logarithmic"),
        "dropout": ContinuousRange(0.0, 0.5, "Linear"),
    }
    speech = dict(config.tuning.ranges_for("speech"))
    assert speech["class_weight"] == CategoricalRange(("balanced",))
    assert speech["units"] == IntegerRange(16, 128, "Linear")
    assert dict(config.tuning.ranges_for("rnn")) == dict(get_network("rnn").tuning.ranges)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"ranges": {"cnn": {"learning_rate": {"min": 1e-5}}}},
            r"stages\.dev\.tuning\.ranges: .*cnn\.learning_rate: learning_rate may be narrowed within the "
            r"registry's 0\.0001\.\.0\.01, got 1e-05\.\.0\.01",
        ),
        ({"ranges": {"cnn": {"filters": {"max": 64}}}}, r"cnn: filters not tunable in the registry"),
        ({"ranges": {"vgg": {}}}, r"unknown network 'vgg'"),
        ({"ranges": {"speech": {"class_weight": {"values": ["weighted"]}}}}, "weighted not among the registry"),
        ({"ranges": {"cnn": {"dropout": {"step": 0.1}}}}, "takes min, max and scaling, not step"),
        ({"ranges": {"cnn": {"dropout": {"scaling": "Cubic"}}}}, "scaling of dropout must be one of"),
        (
            {"ranges": {"cnn": {"learning_rate": None, "dense_units": None, "dropout": None}}},
            "every range is left out",
        ),
        ({"strategy": "Hyperband", "early_stopping": True}, "TrainingJobEarlyStoppingType Off"),
        ({"strategy": "Grid"}, r"stages\.dev\.tuning\.strategy"),
        ({"max_parallel_training_jobs": 0}, r"stages\.dev\.tuning\.max_parallel_training_jobs"),
        ({"max_runtime_seconds": 60}, r"stages\.dev\.tuning\.max_runtime_seconds"),
        ({"trials": 4}, r"stages\.dev\.tuning\.trials"),
    ],
)
def test_a_stage_setting_sagemaker_would_refuse_fails_naming_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(settings)


def test_early_stopping_is_auto_wherever_the_strategy_allows_it() -> None:
    assert parse({}).tuning.early_stopping_type == "Auto"
    assert parse({"strategy": "Random"}).tuning.early_stopping_type == "Auto"
    assert parse({"early_stopping": False}).tuning.early_stopping_type == "Off"
    assert parse({"strategy": "Hyperband"}).tuning.early_stopping_type == "Off"
