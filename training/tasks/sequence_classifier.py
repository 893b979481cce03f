"""Sequence classifier: a variable-length sequence of feature vectors in, class probabilities out.

Records hold each sequence zero-padded to `max_length` frames [max_length, n_features]; an
all-zero frame is padding, which the model masks (never truncates). The serving handler pads a
request of 1 to `max_length` frames the same way.
"""

from __future__ import annotations

import numpy as np

from .base import (
    ClassProbabilities,
    SampleRequest,
    Task,
    TinyModel,
    explanations_module,
    feature_names,
    plots_module,
    tiny_sizes,
)

ATTRIBUTIONS_PLOT = "explanation_attributions"
# The tiny test model's sizes (`tiny_model`): the Japanese Vowels' frames and speakers.
TINY_MAX_LENGTH, TINY_FEATURES = 29, 12
TINY_CLASS_NAMES = tuple(f"speaker {index}" for index in range(1, 10))


class SequenceClassifier(ClassProbabilities, Task):
    name = "sequence_classifier"
    summary = "a sequence of feature vectors (any length up to max_length) in, class probabilities out"
    request_form = "sequence"
    content_types = ("application/json", "text/csv")
    serving_fields = ("class_names", "max_length", "n_features")
    quick_slice = 90

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 2:
            return f"sequences must be [max_length, n_features] (zero-padded), got {list(input_shape)}"
        return self.class_names_problem(spec)

    def explain(self, outputs, test, description, output_dir):
        """Integrated gradients of the predicted class per frame and per feature, for a few test
        sequences per class, from a sequence of the same length whose frames are all the mean frame
        (not from padding alone: the mask makes the model jump there, which breaks completeness);
        the permutation importance of each feature, its whole trajectory shuffled between test
        sequences (their lengths kept)."""
        explanations = explanations_module()
        sample = explanations.first_examples(test)
        picks, attributions = self.integrated_gradients(outputs, sample, description)
        length, count = sample.inputs.shape[1:]
        names = feature_names(description, count)
        frames = [f"frame {index + 1}" for index in range(length)]
        mean_abs = abs(attributions.values).mean(axis=0)  # [frame, feature]

        def probabilities(sequences):
            return outputs(sequences)["probabilities"]

        shuffled = explanations.per_class(
            sample.targets, len(description["class_names"]), explanations.PERMUTED_PER_CLASS
        )
        sequences = explanations.SequenceFeatures(sample.inputs[shuffled], keep_padding=True)
        importance = explanations.permutation_ranking(
            explanations.SignatureRegressor(probabilities, sequences),
            sequences.identity(),
            sample.targets[shuffled],
            explanations.true_class_log_likelihood,
            names,
        )
        plots_module().sequence_attributions(
            mean_abs, frames, names, importance, "the predicted class", output_dir / f"{ATTRIBUTIONS_PLOT}.png"
        )
        per_feature = explanations.ranking(mean_abs.sum(axis=0), names)
        return {
            "summary": [
                explanations.summary("features by mean |integrated gradients| of the predicted class", per_feature),
                explanations.summary(
                    "features by permutation importance (drop in mean log-likelihood of the true class)", importance
                ),
            ],
            "methods": {
                "integrated_gradients": {
                    "explained": "probability of the predicted class",
                    "baseline": "the mean frame of the sequences at each real frame, padding kept",
                    "steps": attributions.steps,
                    "examples": len(picks),
                    "completeness_error": attributions.completeness_error,
                },
                "permutation_importance": {
                    "score": "mean log-likelihood of the true class",
                    "shuffled": "each feature's trajectory between sequences, each keeping its own length",
                    "repeats": explanations.PERMUTATION_REPEATS,
                    "examples": len(shuffled),
                },
            },
            "details": {
                "per_feature": per_feature,
                "per_frame": explanations.ranking(mean_abs.sum(axis=1), frames),
                "permutation_importance": importance,
            },
            "plots": [f"{ATTRIBUTIONS_PLOT}.png"],
        }

    def integrated_gradients(self, outputs, sample, description, examples=None):
        """Of the predicted class, from the mean frame at each real frame."""
        return self.predicted_class_attributions(
            outputs, sample, len(description["class_names"]), explanations_module().mean_frame_sequences, examples
        )

    def drift_features(self, inputs, description):
        """Per sequence: its length, and each feature's mean over its real (non-padding) frames;
        one row per sequence, so that the rows of a window are independent."""
        real = np.any(inputs != 0, axis=-1)
        lengths = real.sum(axis=1)
        means = (inputs * real[..., np.newaxis]).sum(axis=1) / np.maximum(lengths, 1)[:, np.newaxis]
        return {
            "frames": lengths.astype(np.float64),
            **{f"mean of feature {index + 1}": means[:, index] for index in range(inputs.shape[-1])},
        }

    def drift_shifts(self):
        return {
            "rescaled": lambda frames, rng: frames * 1.5,  # another gain of the recording chain
            "truncated": _first_half_of_each_sequence,
        }

    def tiny_model(self, seed, **sizes):
        import keras

        size = tiny_sizes(sizes, max_length=TINY_MAX_LENGTH, n_features=TINY_FEATURES, class_names=TINY_CLASS_NAMES)
        max_length, n_features, class_names = size.max_length, size.n_features, size.class_names

        keras.utils.set_random_seed(seed)
        frames = keras.Input((max_length, n_features))
        # Masked as the real one is: the zero frames the handler pads with must not change the answer.
        features = keras.layers.GRU(4)(keras.layers.Masking(0.0)(frames))
        model = keras.Model(frames, keras.layers.Dense(len(class_names), activation="softmax")(features))
        fields = {"class_names": list(class_names), "max_length": max_length, "n_features": n_features}
        return TinyModel(
            lambda batch: {"probabilities": model(batch)}, (model,), (max_length, n_features), "float32", fields
        )

    def sample_inputs(self, description, rng, rows):
        """Sequences of 1 to max_length real (non-zero) frames, zero-padded."""
        frames = rng.normal(0, 0.5, size=(rows, *description["input_shape"])).astype(np.float32) + 0.1
        for row, length in enumerate(rng.integers(1, description["max_length"] + 1, size=rows)):
            frames[row, length:] = 0.0
        return frames

    def sample_request(self, description, rng):
        """CSV lines, a frame each, of a sequence shorter than max_length (the handler pads it)."""
        length = max(1, int(description["max_length"]) // 2)
        frames = rng.normal(0.1, 0.5, (length, int(description["n_features"]))).astype(np.float32)
        padded = np.zeros((1, *description["input_shape"]), np.float32)
        padded[0, :length] = frames
        body = "\n".join(",".join(map(repr, frame)) for frame in frames.tolist()).encode()
        return SampleRequest(body, "text/csv", padded)


def _first_half_of_each_sequence(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each sequence cut to the first half of its real frames (a faster speaker), padded again."""
    lengths = np.any(frames != 0, axis=-1).sum(axis=1)
    keep = np.arange(frames.shape[1])[np.newaxis, :] < np.maximum(lengths // 2, 1)[:, np.newaxis]
    return frames * keep[..., np.newaxis]


TASK = SequenceClassifier()
