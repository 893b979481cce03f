"""GRU sequence classifier: who is speaking, from a variable-length sequence of feature vectors.

`frames` [max_length, n_features] go in, the real frames first and zero frames after them as
padding (the records and the serving handler pad that way); the GRU is given a mask of the real
frames, so padding is skipped, never truncated or read. The frames are standardized with the mean
and variance of the real training frames (padding left out of the statistics). Class
probabilities come out.

    python training/speech.py --train DIR --validation DIR --test DIR --model_dir DIR --output_dir DIR
"""

from __future__ import annotations

import keras
import numpy as np

import contract
import scoring


def frame_statistics(job: contract.Job) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance per feature over the real (non-zero) frames of the train channel."""
    count, total, squares = 0, np.zeros(job.input_shape[-1]), np.zeros(job.input_shape[-1])
    for frames in job.dataset("train", targets=False, shuffle=False):
        real = frames.numpy().reshape(-1, frames.shape[-1])
        real = real[real.any(axis=1)].astype(np.float64)
        count, total, squares = count + len(real), total + real.sum(axis=0), squares + np.square(real).sum(axis=0)
    mean = total / count
    return mean, np.maximum(squares / count - np.square(mean), 1e-12)


def train(job: contract.Job) -> None:
    knobs = job.hyperparameters
    max_length, n_features = job.input_shape
    mean, variance = frame_statistics(job)
    penalty = keras.regularizers.L2(knobs.l2)
    with job.strategy.scope():
        frames = keras.Input((max_length, n_features), name=job.network.input_name)
        real = keras.ops.any(keras.ops.not_equal(frames, 0.0), axis=-1)
        standardized = keras.layers.Normalization(mean=mean, variance=variance, dtype="float32")(frames)
        features = keras.layers.GRU(knobs.units, kernel_regularizer=penalty)(standardized, mask=real)
        features = keras.layers.Dropout(knobs.dropout)(features)
        # float32 under a mixed policy too: the softmax feeds the loss and is what is served.
        probabilities = keras.layers.Dense(
            len(job.class_names), activation="softmax", kernel_regularizer=penalty, dtype="float32"
        )(features)
        model = keras.Model(frames, probabilities)
        model.compile(
            keras.optimizers.Adam(knobs.learning_rate),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=job.steps_per_execution,
        )

    job.fit(model, job.dataset("train"), job.dataset("validation"), class_weight=job.class_weight())

    job.report(
        scoring.classifier(
            scoring.inference(model), job.dataset("test"), job.class_names, job.plot_path(job.network.task.plot)
        )
    )
    embedding = contract.layer_before_output(model)
    job.save_model(
        lambda sequence: {"probabilities": model(sequence, training=False)},
        track=[model],
        serving={"class_names": list(job.class_names), "max_length": max_length, "n_features": n_features},
        embedding=lambda sequence: embedding(sequence, training=False),
    )


if __name__ == "__main__":
    contract.run("speech", train)
