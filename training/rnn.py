"""LSTM forecaster: the next value(s) of a series from a window of its past.

A window `history` [window, n_features] goes in, in the series' own units; `forecast` [horizon]
of the target feature comes out, in the same units. The model sees the window relative to its
last observation (standardized), and predicts the change from the last observed value: a
trending series leaves the training range, and this keeps what the LSTM sees in range and lets
the forecast follow the trend. Judged against the seasonal-naive forecast.

    python training/rnn.py --train DIR --validation DIR --test DIR --model_dir DIR --output_dir DIR
"""

from __future__ import annotations

import keras

import contract
import scoring


def train(job: contract.Job) -> None:
    knobs = job.hyperparameters
    window, n_features = job.input_shape
    spec = job.specs["train"]
    (horizon,) = spec.shape("target")
    target_index = int(spec.metadata.get("target_index", 0))
    training = job.dataset("train")
    with job.strategy.scope():
        # float32 under a mixed policy too: `adapt` merges float32 running statistics with each
        # batch's, and fails on bfloat16 batch statistics.
        standardize = keras.layers.Normalization(axis=-1, dtype="float32")
        standardize.adapt(training.map(lambda history, target: history - history[:, -1:, :]))
        # float32 under a mixed policy too, like the Add below: the forecast is the last value (in
        # the hundreds for co2) plus a change, and bfloat16's 8-bit mantissa would round it by ~1.
        change_scale = keras.layers.Normalization(axis=-1, invert=True, dtype="float32")
        change_scale.adapt(training.map(lambda history, target: target - history[:, -1:, target_index]))

        history = keras.Input((window, n_features), name=job.network.input_name)
        relative = keras.ops.subtract(history, history[:, -1:, :])
        features = keras.layers.LSTM(knobs.units, kernel_regularizer=keras.regularizers.L2(knobs.l2))(
            standardize(relative)
        )
        features = keras.layers.Dropout(knobs.dropout)(features)
        change = keras.layers.Dense(horizon)(features)
        forecast = keras.layers.Add(name="forecast", dtype="float32")(
            [history[:, -1:, target_index], change_scale(change)]
        )
        model = keras.Model(history, forecast)
        # The LSTM's summary of the window: the layer before the forecast's head.
        embedding = keras.Model(history, features)
        model.compile(
            keras.optimizers.Adam(knobs.learning_rate), loss="mse", steps_per_execution=job.steps_per_execution
        )

    job.fit(model, training, job.dataset("validation"))

    season = int(spec.metadata.get("season", 1))
    job.report(
        scoring.forecaster(
            scoring.inference(model),
            job.dataset("test"),
            season=season,
            target_index=target_index,
            plot=job.plot_path("forecast_vs_actual"),
        ),
        baseline=f"seasonal naive, season {season}",
    )
    job.save_model(
        lambda history: {"forecast": model(history, training=False)},
        track=[model],
        serving={
            "window": window,
            "n_features": n_features,
            "horizon": horizon,
            "target_index": target_index,
            "season": season,
            "feature_names": spec.metadata.get("feature_names", []),
        },
        embedding=lambda history: embedding(history, training=False),
    )


if __name__ == "__main__":
    contract.run("rnn", train)
