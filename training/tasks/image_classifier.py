"""Image classifier: an image [height, width, 1 or 3] of raw pixel values in, class probabilities out."""

from __future__ import annotations

from .base import Judgement, Task, evaluation_module


class ImageClassifier(Task):
    name = "image_classifier"
    summary = "an image in, the probability of each class out"
    target = "label"
    outputs = ("probabilities",)
    request_form = "image"
    answer_form = "classes"
    content_types = ("application/json", "image/png", "image/jpeg")
    serving_fields = ("class_names",)
    plot = "confusion_matrix"
    reads_class_names = True

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 3 or input_shape[2] not in (1, 3):
            return f"images must be [height, width, 1 or 3], got {list(input_shape)}"
        if len(spec.class_names) < 2:
            return f"a classifier needs at least 2 class names, got {list(spec.class_names)}"
        return None

    def evaluate(self, outputs, test, description, plot):
        metrics = evaluation_module().classifier(lambda inputs: outputs(inputs)["probabilities"], test,
                                                 description["class_names"], plot)
        return metrics, {}

    def judge(self, target, answer, class_names):
        return judge_classes(target, answer, class_names)


def judge_classes(target, answer, class_names) -> Judgement:
    """A class label answer (`label`, `probabilities`) beside the true class index."""
    truth = class_names[int(target)]
    confidence = answer["probabilities"][answer["label"]]
    return Judgement(truth, f"{answer['label']} (p={confidence:.2f})", answer["label"] == truth)


TASK = ImageClassifier()
