"""Sequence classifier: a variable-length sequence of feature vectors in, class probabilities out.

Records hold each sequence zero-padded to `max_length` frames [max_length, n_features]; an
all-zero frame is padding, which the model masks (never truncates). The serving handler pads a
request of 1 to `max_length` frames the same way.
"""

from __future__ import annotations

from .base import Task, evaluation_module
from .image_classifier import judge_classes


class SequenceClassifier(Task):
    name = "sequence_classifier"
    summary = "a sequence of feature vectors (any length up to max_length) in, class probabilities out"
    target = "label"
    outputs = ("probabilities",)
    request_form = "sequence"
    answer_form = "classes"
    content_types = ("application/json", "text/csv")
    serving_fields = ("class_names", "max_length", "n_features")
    plot = "confusion_matrix"
    reads_class_names = True

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 2:
            return f"sequences must be [max_length, n_features] (zero-padded), got {list(input_shape)}"
        if len(spec.class_names) < 2:
            return f"a classifier needs at least 2 class names, got {list(spec.class_names)}"
        return None

    def evaluate(self, outputs, test, description, plot):
        metrics = evaluation_module().classifier(lambda inputs: outputs(inputs)["probabilities"], test,
                                                 description["class_names"], plot)
        return metrics, {}

    def judge(self, target, answer, class_names):
        return judge_classes(target, answer, class_names)


TASK = SequenceClassifier()
