"""Sequence classifier: a variable-length sequence of feature vectors in, class probabilities out.

Records hold each sequence zero-padded to `max_length` frames [max_length, n_features]; an
all-zero frame is padding, which the model masks (never truncates). The serving handler pads a
request of 1 to `max_length` frames the same way.
"""

from __future__ import annotations

import numpy as np

from .base import ClassProbabilities, Task


class SequenceClassifier(ClassProbabilities, Task):
    name = "sequence_classifier"
    summary = "a sequence of feature vectors (any length up to max_length) in, class probabilities out"
    request_form = "sequence"
    content_types = ("application/json", "text/csv")
    serving_fields = ("class_names", "max_length", "n_features")

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 2:
            return f"sequences must be [max_length, n_features] (zero-padded), got {list(input_shape)}"
        return self.class_names_problem(spec)

    def drift_features(self, inputs, description):
        """Per sequence: its length, and each feature's mean over its real (non-padding) frames;
        one row per sequence, so that the rows of a window are independent."""
        real = np.any(inputs != 0, axis=-1)
        lengths = real.sum(axis=1)
        means = (inputs * real[..., np.newaxis]).sum(axis=1) / np.maximum(lengths, 1)[:, np.newaxis]
        return {"frames": lengths.astype(np.float64),
                **{f"mean of feature {index + 1}": means[:, index] for index in range(inputs.shape[-1])}}

    def drift_shifts(self):
        return {"rescaled": lambda frames, rng: frames * 1.5,  # another gain of the recording chain
                "truncated": _first_half_of_each_sequence}


def _first_half_of_each_sequence(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each sequence cut to the first half of its real frames (a faster speaker), padded again."""
    lengths = np.any(frames != 0, axis=-1).sum(axis=1)
    keep = np.arange(frames.shape[1])[np.newaxis, :] < np.maximum(lengths // 2, 1)[:, np.newaxis]
    return frames * keep[..., np.newaxis]


TASK = SequenceClassifier()
