"""Image classifier: an image [height, width, 1 or 3] of raw pixel values in, class probabilities out."""

from __future__ import annotations

import io

import numpy as np

from .base import ClassProbabilities, SampleRequest, Task, TinyModel, explanations_module, plots_module, tiny_sizes

ATTRIBUTIONS_PLOT = "explanation_attributions"
# The tiny test model's sizes (`tiny_model`).
TINY_SIDE, TINY_CHANNELS = 8, 1
TINY_CLASS_NAMES = tuple(str(digit) for digit in range(10))


class ImageClassifier(ClassProbabilities, Task):
    name = "image_classifier"
    summary = "an image in, the probability of each class out"
    request_form = "image"
    content_types = ("application/json", "image/png", "image/jpeg")
    serving_fields = ("class_names",)
    quick_slice = 120

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 3 or input_shape[2] not in (1, 3):
            return f"images must be [height, width, 1 or 3], got {list(input_shape)}"
        return self.class_names_problem(spec)

    def explain(self, outputs, test, description, output_dir):
        """Attribution maps (integrated gradients of the predicted class, from a black image) of a
        few test images per class, in a grid beside the images, and each class's mean |attribution|."""
        explanations = explanations_module()
        class_names = list(description["class_names"])
        sample = explanations.first_examples(test)
        picks, attributions = self.integrated_gradients(outputs, sample, description)
        labels = sample.targets[picks]
        predicted = [class_names[index] for index in attributions.weights.argmax(axis=1)]
        magnitude = abs(attributions.values).reshape(len(picks), -1).mean(axis=1)
        per_class = {
            name: float(magnitude[labels == label].mean())
            for label, name in enumerate(class_names)
            if (labels == label).any()
        }
        groups = [
            (name, [row for row, label in enumerate(labels) if label == index])
            for index, name in enumerate(class_names)
        ]
        titles = [
            f"{class_names[label]} → {guess} {score:.2f}"
            for label, guess, score in zip(labels, predicted, attributions.scores, strict=True)
        ]
        plots_module().image_attributions(
            sample.inputs[picks], attributions.values, titles, groups, output_dir / f"{ATTRIBUTIONS_PLOT}.png"
        )
        return {
            "summary": [
                explanations.summary(
                    "classes by mean |integrated gradients| per pixel of the predicted class",
                    explanations.ranking(list(per_class.values()), list(per_class)),
                )
            ],
            "methods": {
                "integrated_gradients": {
                    "explained": "probability of the predicted class",
                    "baseline": "a black image (all zero)",
                    "steps": attributions.steps,
                    "examples": len(picks),
                    "completeness_error": attributions.completeness_error,
                }
            },
            "details": {
                "mean_abs_attribution_per_class": per_class,
                "examples": [
                    {"truth": class_names[label], "predicted": guess, "probability": float(score)}
                    for label, guess, score in zip(labels, predicted, attributions.scores, strict=True)
                ],
            },
            "plots": [f"{ATTRIBUTIONS_PLOT}.png"],
        }

    def integrated_gradients(self, outputs, sample, description, examples=None):
        """Of the predicted class, from a black image."""
        return self.predicted_class_attributions(
            outputs, sample, len(description["class_names"]), lambda images: images[:1] * 0, examples
        )

    def drift_shifts(self):
        # Raw pixel values 0..255; square images turn a quarter (every MNIST image here is square).
        return {
            "inverted": lambda images, rng: 255.0 - images,
            "rotated": lambda images, rng: np.rot90(images, k=1, axes=(1, 2)),
        }

    def tiny_model(self, seed, **sizes):
        import keras

        size = tiny_sizes(sizes, side=TINY_SIDE, channels=TINY_CHANNELS, class_names=TINY_CLASS_NAMES)
        side, channels, class_names = size.side, size.channels, size.class_names

        keras.utils.set_random_seed(seed)
        images = keras.Input((side, side, channels))
        features = keras.layers.Rescaling(1 / 255)(images)
        features = keras.layers.Conv2D(4, 3, activation="relu")(features)
        features = keras.layers.Flatten()(keras.layers.MaxPooling2D()(features))
        model = keras.Model(images, keras.layers.Dense(len(class_names), activation="softmax")(features))
        return TinyModel(
            lambda batch: {"probabilities": model(batch)},
            (model,),
            (side, side, channels),
            "float32",
            {"class_names": list(class_names)},
        )

    def sample_inputs(self, description, rng, rows):
        return rng.uniform(0, 255, (rows, *description["input_shape"])).astype(np.float32)

    def sample_request(self, description, rng):
        """A PNG of the model's size and channels."""
        from PIL import Image

        height, width, channels = description["input_shape"]
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(buffer, format="PNG")
        return SampleRequest(buffer.getvalue(), "image/png", pixels[np.newaxis].astype(np.float32))


TASK = ImageClassifier()
