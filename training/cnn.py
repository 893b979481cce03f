"""Convolutional image classifier: Conv2D 3x3 -> max-pool -> dropout -> dense -> softmax.

Images go in as raw pixel values 0..255 (the model rescales them), class probabilities come out.
Runs in SageMaker's TensorFlow training container, or on local channel folders:

    python training/cnn.py --train DIR --validation DIR --test DIR --model_dir DIR --output_dir DIR
"""

from __future__ import annotations

import keras

import contract
import evaluation


def build_model(input_shape: tuple[int, ...], num_classes: int, knobs) -> keras.Model:
    """The compiled classifier (also used by benchmarks/training_throughput.py)."""
    penalty = keras.regularizers.L2(knobs.l2)
    model = keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(knobs.filters, 3, activation="relu", kernel_regularizer=penalty),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(knobs.dropout),
        keras.layers.Dense(knobs.dense_units, activation="relu", kernel_regularizer=penalty),
        keras.layers.Dense(num_classes, activation="softmax", kernel_regularizer=penalty),
    ])
    model.compile(keras.optimizers.Adam(knobs.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(job: contract.Job) -> None:
    with job.strategy.scope():
        model = build_model(job.input_shape, len(job.class_names), job.hyperparameters)

    job.fit(model, job.dataset("train"), job.dataset("validation"), class_weight=job.class_weight())

    job.report(evaluation.classifier(model, job.dataset("test"), job.class_names,
                                     job.plot_path("confusion_matrix")))
    job.save_model(lambda image: {"probabilities": model(image, training=False)}, track=[model],
                   serving={"class_names": list(job.class_names)})


if __name__ == "__main__":
    contract.run("cnn", train)
