"""Image classifier: an image [height, width, 1 or 3] of raw pixel values in, class probabilities out."""

from __future__ import annotations

import numpy as np

from .base import ClassProbabilities, Task


class ImageClassifier(ClassProbabilities, Task):
    name = "image_classifier"
    summary = "an image in, the probability of each class out"
    request_form = "image"
    content_types = ("application/json", "image/png", "image/jpeg")
    serving_fields = ("class_names",)

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 3 or input_shape[2] not in (1, 3):
            return f"images must be [height, width, 1 or 3], got {list(input_shape)}"
        return self.class_names_problem(spec)

    def drift_shifts(self):
        # Raw pixel values 0..255; square images turn a quarter (every MNIST image here is square).
        return {"inverted": lambda images, rng: 255.0 - images,
                "rotated": lambda images, rng: np.rot90(images, k=1, axes=(1, 2))}


TASK = ImageClassifier()
