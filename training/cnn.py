"""Convolutional image classifier: Conv2D 3x3 -> max-pool -> dense -> dropout -> softmax.

Images go in as raw pixel values 0..255 (the model rescales them), class probabilities come out.
Runs in SageMaker's TensorFlow training container, or on local channel folders:

    python training/cnn.py --train DIR --validation DIR --test DIR --model_dir DIR --output_dir DIR
"""

from __future__ import annotations

import keras

import contract
import scoring


def build_model(input_shape: tuple[int, ...], num_classes: int, knobs, *, steps_per_execution: int = 1) -> keras.Model:
    """The compiled classifier (also used by benchmarks/training_throughput.py)."""
    penalty = keras.regularizers.L2(knobs.l2)
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(knobs.filters, 3, activation="relu", kernel_regularizer=penalty),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(knobs.dense_units, activation="relu", kernel_regularizer=penalty),
            # Before the output layer, where it draws a random mask for 64 units rather than for the
            # 5,408 pooled features of a 28x28 image: there, under bfloat16, drawing the mask nearly
            # doubled the CPU time of a training step.
            keras.layers.Dropout(knobs.dropout),
            # float32 under a mixed policy too: the softmax feeds the loss and is what is served.
            keras.layers.Dense(num_classes, activation="softmax", kernel_regularizer=penalty, dtype="float32"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(knobs.learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


def train(job: contract.Job) -> None:
    with job.strategy.scope():
        model = build_model(
            job.input_shape, len(job.class_names), job.hyperparameters, steps_per_execution=job.steps_per_execution
        )

    job.fit(model, job.dataset("train"), job.dataset("validation"), class_weight=job.class_weight())

    job.report(
        scoring.classifier(
            scoring.inference(model), job.dataset("test"), job.class_names, job.plot_path("confusion_matrix")
        )
    )
    embedding = contract.layer_before_output(model)
    job.save_model(
        lambda image: {"probabilities": model(image, training=False)},
        track=[model],
        serving={"class_names": list(job.class_names)},
        embedding=lambda image: embedding(image, training=False),
    )


if __name__ == "__main__":
    contract.run("cnn", train)
