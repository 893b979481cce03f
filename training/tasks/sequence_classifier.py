"""Sequence classifier: a variable-length sequence of feature vectors in, class probabilities out.

Records hold each sequence zero-padded to `max_length` frames [max_length, n_features]; an
all-zero frame is padding, which the model masks (never truncates). The serving handler pads a
request of 1 to `max_length` frames the same way.
"""

from __future__ import annotations

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


TASK = SequenceClassifier()
