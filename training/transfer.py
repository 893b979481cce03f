"""Transfer learning: a frozen keras.applications base (VGG16 by default) plus a new head.

Images go in as raw pixel values 0..255 at the channel's size; the model resizes them to the
base's input size, repeats a grey channel into RGB, and applies the base's own
`preprocess_input`. The base's weights come from the `pretrained` channel (`base.json` +
`base.weights.h5`, what a network-isolated job needs), else from ImageNet; a run never trains
on random base weights unless `base_weights=random` asks for exactly that (a from-scratch
baseline). An optional second phase fine-tunes the last `fine_tune_layers` base layers.

    python training/transfer.py --train DIR --validation DIR --test DIR --pretrained DIR \\
        --model_dir DIR --output_dir DIR
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import keras

import contract
import scoring

log = logging.getLogger("training")
DEFAULT_IMAGE_SIZE = 224


def build_base(job: contract.Job) -> keras.Model:
    """The base at its input size with the weights the knobs ask for, or an InputError."""
    knobs = job.hyperparameters
    application = getattr(keras.applications, knobs.base, None)
    if not callable(application):
        raise contract.InputError(f"bad hyperparameter: base {knobs.base!r} is not a keras.applications model")
    pretrained = job.optional_channel("pretrained")
    described = _pretrained_description(pretrained, knobs.base) if pretrained else None
    size = knobs.image_size or (described["input_shape"][0] if described else DEFAULT_IMAGE_SIZE)
    shape = (size, size, 3)
    if knobs.base_weights == "random":
        log.warning("base_weights=random: %s is trained from scratch, with no pretrained weights", knobs.base)
        weights, failure = None, f"bad hyperparameter: {knobs.base} cannot be built at {list(shape)}"
    elif described:
        weights = str(pretrained / described["weights"])
        failure = f"channel 'pretrained': {described['weights']} does not fit {knobs.base} at {list(shape)}"
    else:
        weights = "imagenet"
        failure = (
            f"no base weights: no 'pretrained' channel, and the ImageNet weights of {knobs.base} could not "
            f"be loaded; supply base.json and base.weights.h5 as the 'pretrained' channel"
        )
    try:
        base = application(include_top=False, weights=weights, input_shape=shape)
    except Exception as error:
        raise contract.InputError(f"{failure} ({type(error).__name__}: {error})") from None
    output = knobs.base_output or (described or {}).get("output_layer")
    if not output:
        return base
    try:
        return keras.Model(base.input, base.get_layer(output).output, name=f"{base.name}_to_{output}")
    except ValueError:
        raise contract.InputError(
            f"bad hyperparameter: base_output {output!r} is not a layer of {knobs.base}"
        ) from None


def _pretrained_description(folder: Path, base: str) -> dict:
    try:
        described = json.loads((folder / "base.json").read_text())
        weights, input_shape = described["weights"], described["input_shape"]
    except (OSError, ValueError, KeyError) as error:
        raise contract.InputError(
            f"channel 'pretrained' ({folder}): needs base.json with base, weights and input_shape ({error!r})"
        ) from None
    if described.get("base") != base:
        raise contract.InputError(
            f"channel 'pretrained' holds {described.get('base')} weights, but hyperparameter base is {base}"
        )
    if not (folder / weights).is_file():
        raise contract.InputError(f"channel 'pretrained': {weights} named in base.json is missing")
    return {"weights": weights, "input_shape": input_shape, "output_layer": described.get("output_layer")}


def preprocess_input(base: str):
    """`base`'s own input preprocessing, from the module that defines it (e.g. ...applications.vgg16)."""
    return sys.modules[getattr(keras.applications, base).__module__].preprocess_input


def train(job: contract.Job) -> None:
    knobs = job.hyperparameters
    with job.strategy.scope():
        base = build_base(job)
        base.trainable = knobs.base_weights == "random"
        image = keras.Input(job.input_shape, name=job.network.input_name)
        x = keras.layers.Resizing(*base.input_shape[1:3])(image)
        if job.input_shape[-1] == 1:
            x = keras.layers.Concatenate()([x, x, x])
        x = keras.layers.Lambda(preprocess_input(knobs.base), name="preprocess_input")(x)
        # training=False keeps any batch normalization of the base in inference mode, also when fine-tuning.
        x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
        x = keras.layers.Dropout(knobs.dropout)(x)
        # float32 under a mixed policy too: the softmax feeds the loss and is what is served.
        probabilities = keras.layers.Dense(
            len(job.class_names),
            activation="softmax",
            dtype="float32",
            kernel_regularizer=keras.regularizers.L2(knobs.l2),
        )(x)
        model = keras.Model(image, probabilities)
        model.compile(
            keras.optimizers.Adam(knobs.learning_rate),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=job.steps_per_execution,
        )

    training, validation = job.dataset("train"), job.dataset("validation")
    job.fit(model, training, validation, phase="head", class_weight=job.class_weight())

    if knobs.fine_tune_layers and knobs.base_weights != "random":
        with job.strategy.scope():
            base.trainable = True
            for layer in base.layers[: -knobs.fine_tune_layers]:
                layer.trainable = False
            model.compile(
                keras.optimizers.Adam(knobs.fine_tune_learning_rate),
                "sparse_categorical_crossentropy",
                metrics=["accuracy"],
                steps_per_execution=job.steps_per_execution,
            )
        job.fit(
            model,
            training,
            validation,
            phase="fine_tune",
            epochs=knobs.fine_tune_epochs,
            class_weight=job.class_weight(),
        )

    job.report(
        scoring.classifier(
            scoring.inference(model), job.dataset("test"), job.class_names, job.plot_path("confusion_matrix")
        )
    )
    embedding = contract.layer_before_output(model)
    job.save_model(
        lambda image: {"probabilities": model(image, training=False)},
        track=[model],
        serving={
            "class_names": list(job.class_names),
            "base": knobs.base,
            "base_input_shape": list(base.input_shape[1:]),
        },
        embedding=lambda image: embedding(image, training=False),
    )


if __name__ == "__main__":
    contract.run("transfer", train)
