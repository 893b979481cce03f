"""Text classifier: raw text in, class probabilities out.

Records hold each text as one UTF-8 string (dtype `string`, shape []), and the signature takes a
batch of strings: tokenization lives inside the exported model (the entry point adapts Keras'
TextVectorization on the train channel and exports it with the network), so no client tokenizes
and no vocabulary travels beside the model. The serving handler reads texts as JSON (`{"instances":
["...", ...]}`, a list of texts or one text), CSV (one text per record) or plain text (one text per
line), UTF-8, at most MAX_CHARACTERS characters each; the model reads the first `sequence_length`
tokens of a text.

What explanations and drift need from inside the model, an entry point exports as signatures of
its own (Job.save_model `signatures`, `drift_features`):
- TOKENS_SIGNATURE: texts -> `tokens` [N, sequence_length], the tokens the model reads ("" past the
  end of a text), and `vectors` [N, sequence_length, dim + 1], their embeddings with a last channel
  that is 1 on a real token and 0 on padding;
- FROM_VECTORS_SIGNATURE: `vectors` -> `probabilities`, the rest of the model;
- `drift_features`: texts -> per text, `tokens` (all of them, not only those read) and the
  `out_of_vocabulary_rate`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .base import ClassProbabilities, SampleRequest, Task, TinyModel, explanations_module, plots_module, tiny_sizes

TOKENS_SIGNATURE = "tokens"
FROM_VECTORS_SIGNATURE = "from_vectors"
# Far longer than a review snippet (at most 255 characters here): what a client sends beyond it is a
# mistake to report, not text to drop silently.
MAX_CHARACTERS = 5000
TEXT_PLOT = "explanation_text"
TOKENS_PLOT = "explanation_tokens"
# Test examples explained (the whole test channel of the offline dataset, 1,280 texts); a token
# must occur this often among a class's examples to rank among its most telling ones.
EXPLAINED_EXAMPLES = 2000
MIN_OCCURRENCES = 5
TOP_TOKENS = 15
SHOWN_PER_CLASS = 3
# The tiny test model's sizes and words (`tiny_model`); its sample texts also hold words outside them.
TINY_CLASS_NAMES = ("fresh", "rotten")
TINY_SEQUENCE_LENGTH = 8
TINY_VOCABULARY = ("a", "the", "film", "plot", "good", "great", "moving", "bad", "dull", "boring", "not", "very")
SAMPLE_WORDS = (*TINY_VOCABULARY, "zeitgeist", "écran", "映画", "!", "?")


class TextClassifier(ClassProbabilities, Task):
    name = "text_classifier"
    summary = "a text in, the probability of each class out"
    request_form = "text"
    input_dtypes = ("string",)
    content_types = ("application/json", "text/csv", "text/plain")
    serving_fields = ("class_names", "sequence_length")
    quick_slice = 200

    def train_shape_problem(self, input_shape, spec, knobs):
        if input_shape != ():
            return f"texts must be one string per example (shape []), got shape {list(input_shape)}"
        return self.class_names_problem(spec)

    def serving_description(self) -> dict[str, Any]:
        return {**super().serving_description(), "max_characters": MAX_CHARACTERS}

    def explain(self, outputs, test, description, output_dir):
        """Integrated gradients of the predicted class on each token's embedding (from the same
        text with every token's embedding zero, its length kept), summed over the embedding: a
        number per token. A few test texts per class are drawn with their tokens highlighted; over
        every explained text, each class's most telling tokens are those of the largest mean
        attribution towards it, among the texts predicted so."""
        explanations, plots = explanations_module(), plots_module()
        class_names = [str(name) for name in description["class_names"]]
        sample = explanations.first_examples(test, EXPLAINED_EXAMPLES)
        picks, attributions = self.integrated_gradients(outputs, sample, description)
        tokens = _decoded(outputs.signatures[TOKENS_SIGNATURE](**_texts(description, sample.inputs))["tokens"])
        per_token = attributions.values[..., :-1].sum(axis=-1)  # the padding mark's channel gets none
        predicted = attributions.weights.argmax(axis=1)
        telling = {
            name: _telling_tokens(tokens[predicted == index], per_token[predicted == index])
            for index, name in enumerate(class_names)
        }
        shown = explanations.per_class(sample.targets, len(class_names), SHOWN_PER_CLASS)
        examples = [
            {
                "text": _decoded(sample.inputs[index]),
                "truth": class_names[int(sample.targets[index])],
                "predicted": class_names[int(predicted[index])],
                "probability": float(attributions.scores[index]),
                "tokens": [
                    {"token": token, "attribution": float(value)}
                    for token, value in zip(tokens[index], per_token[index], strict=True)
                    if token
                ],
            }
            for index in shown
        ]
        plots.text_attributions(examples, output_dir / f"{TEXT_PLOT}.png")
        plots.feature_bars(
            [(f"tokens raising p({name}), texts predicted {name}", ranked) for name, ranked in telling.items()],
            output_dir / f"{TOKENS_PLOT}.png",
            top=TOP_TOKENS,
        )
        return {
            "summary": [
                explanations.summary(
                    f"tokens by mean integrated gradients towards {name} (test texts predicted {name})", ranked
                )
                for name, ranked in telling.items()
                if ranked  # a class that no explained text was predicted as has none
            ],
            "methods": {
                "integrated_gradients": {
                    "explained": "probability of the predicted class",
                    "on": "each token's embedding, summed over its dimensions",
                    "baseline": "the same text with every token's embedding zero (its length kept)",
                    "steps": attributions.steps,
                    "examples": len(picks),
                    "completeness_error": attributions.completeness_error,
                    "min_occurrences": MIN_OCCURRENCES,
                }
            },
            "details": {
                "telling_tokens": {name: ranked[:TOP_TOKENS] for name, ranked in telling.items()},
                "examples": examples,
            },
            "plots": [f"{TEXT_PLOT}.png", f"{TOKENS_PLOT}.png"],
        }

    def integrated_gradients(self, outputs, sample, description, examples=None):
        """Of the predicted class, on the token embeddings (FROM_VECTORS_SIGNATURE), from the same
        vectors with every real token's embedding zero and the padding marks kept."""
        explanations = explanations_module()
        picks = np.arange(len(sample.inputs)) if examples is None else np.asarray(examples)
        tokenized = outputs.signatures[TOKENS_SIGNATURE](**_texts(description, sample.inputs[picks]))
        vectors = tokenized["vectors"].numpy()
        baseline = np.concatenate([np.zeros_like(vectors[..., :-1]), vectors[..., -1:]], axis=-1)
        from_vectors = outputs.signatures[FROM_VECTORS_SIGNATURE]

        def probabilities(batch):
            return from_vectors(vectors=batch)["probabilities"]

        predicted = explanations.batched(probabilities, vectors).argmax(axis=1)
        weights = explanations.one_hot(predicted, len(description["class_names"]))
        return picks, explanations.integrated_gradients(probabilities, vectors, baseline, weights)

    def drift_features(self, inputs, description):
        """None of its own: the model's `drift_features` signature counts tokens with its own
        vocabulary (baseline.py adds them)."""
        return {}

    def drift_shifts(self):
        return {"misspelled": _misspelled, "truncated": _first_third_of_each_text}

    def tiny_model(self, seed, **sizes):
        import keras

        size = tiny_sizes(sizes, sequence_length=TINY_SEQUENCE_LENGTH, class_names=TINY_CLASS_NAMES)
        sequence_length, class_names = size.sequence_length, size.class_names

        keras.utils.set_random_seed(seed)
        vectorizer = keras.layers.TextVectorization(
            vocabulary=list(TINY_VOCABULARY), output_sequence_length=sequence_length
        )
        vectorizer.build()
        ids = keras.Input((sequence_length,), dtype="int64")
        vectors = keras.layers.Embedding(len(TINY_VOCABULARY) + 2, 4)(ids)
        pooled = keras.layers.GlobalAveragePooling1D()(vectors)
        model = keras.Model(ids, keras.layers.Dense(len(class_names), activation="softmax")(pooled))
        fields = {"class_names": list(class_names), "sequence_length": sequence_length}
        return TinyModel(
            lambda texts: {"probabilities": model(vectorizer(texts))}, (model, vectorizer), (), "string", fields
        )

    def sample_inputs(self, description, rng, rows):
        """Texts of 1 to 12 words, some of them outside any vocabulary."""
        return np.array(
            [" ".join(rng.choice(SAMPLE_WORDS, size=int(rng.integers(1, 13)))) for _ in range(rows)], dtype=object
        )

    def sample_request(self, description, rng):
        """Plain text, a text per line."""
        texts = self.sample_inputs(description, rng, 3)
        return SampleRequest("\n".join(texts).encode(), "text/plain", texts)


def _texts(description: dict[str, Any], texts: np.ndarray) -> dict[str, Any]:
    import tensorflow as tf

    return {description["input_name"]: tf.constant(texts, tf.string)}


def _decoded(values: Any) -> Any:
    """Bytes (one, or an array or tensor of them) as str."""
    array = values.numpy() if hasattr(values, "numpy") else values
    if isinstance(array, bytes):
        return array.decode("utf-8")
    if isinstance(array, str):
        return array
    return np.vectorize(_decoded, otypes=[object])(np.asarray(array, dtype=object))


def _telling_tokens(tokens: np.ndarray, attributions: np.ndarray) -> list[dict[str, Any]]:
    """Tokens by their mean attribution over their occurrences, those seen MIN_OCCURRENCES times."""
    found: dict[str, list[float]] = defaultdict(list)
    for token, value in zip(tokens.reshape(-1), attributions.reshape(-1), strict=True):
        if token:
            found[token].append(float(value))
    ranked = [
        {"name": token, "value": float(np.mean(values)), "std": float(np.std(values)), "count": len(values)}
        for token, values in found.items()
        if len(values) >= MIN_OCCURRENCES
    ]
    return sorted(ranked, key=lambda entry: -entry["value"])


def _as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _misspelled(texts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half the words of four letters or more with two neighbouring letters swapped (typed in a
    hurry on a phone): words the vocabulary never saw."""

    def misspell(word: str) -> str:
        if len(word) < 4 or not word.isalpha() or rng.random() >= 0.5:
            return word
        at = int(rng.integers(1, len(word) - 2))
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]

    return np.array([" ".join(misspell(word) for word in _as_text(text).split()) for text in texts], dtype=object)


def _first_third_of_each_text(texts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each text cut to the first third of its words, at least one (a form that clips reviews)."""
    cut = []
    for text in texts:
        words = _as_text(text).split()
        cut.append(" ".join(words[: max(1, len(words) // 3)]))
    return np.array(cut, dtype=object)


TASK = TextClassifier()
