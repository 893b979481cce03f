"""What benchmarks/quality.py sets beside the sentiment network, on the same channels: always the
majority class, TF-IDF with logistic regression (its n-grams and regularization chosen on the
validation channel), and per-class recall of an exported model (what class weighting moves)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def read_texts(channel_dir: Path) -> tuple[list[str], np.ndarray]:
    """(texts, labels) of a text classifier channel, in written order."""
    sys.path.insert(0, str(REPO_ROOT / "training"))
    import records

    spec = records.read_spec(channel_dir, channel_dir.name)
    texts: list[str] = []
    labels = []
    for batch, truth in records.dataset(
        channel_dir, spec, channel_dir.name, inputs="text", targets="label", batch_size=1024
    ):
        texts += [text.decode("utf-8") for text in batch.numpy()]
        labels.append(truth.numpy())
    return texts, np.concatenate(labels)


def majority_accuracy(data: Path) -> float:
    """Test accuracy of always answering the train channel's most frequent class."""
    _, train_labels = read_texts(data / "train")
    _, test_labels = read_texts(data / "test")
    return float(np.mean(test_labels == np.bincount(train_labels).argmax()))


def tfidf_logistic_regression(data: Path) -> tuple[float, str]:
    """(test accuracy, the setting chosen) of TF-IDF features (sublinear term frequency) and
    logistic regression, fitted on the train channel, the setting of best validation accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    (train, train_labels), (validation, validation_labels), (test, test_labels) = (
        read_texts(data / channel) for channel in ("train", "validation", "test")
    )
    best: tuple[float, float, str] | None = None
    for ngrams in ((1, 1), (1, 2)):
        vectorizer = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=True)
        features = vectorizer.fit_transform(train)
        for regularization in (0.3, 1.0, 3.0, 10.0):
            model = LogisticRegression(C=regularization, max_iter=5000).fit(features, train_labels)
            validation_accuracy = float(np.mean(model.predict(vectorizer.transform(validation)) == validation_labels))
            test_accuracy = float(np.mean(model.predict(vectorizer.transform(test)) == test_labels))
            setting = f"{'unigrams' if ngrams == (1, 1) else 'uni- and bigrams'}, C={regularization:g}"
            if best is None or validation_accuracy > best[0]:
                best = (validation_accuracy, test_accuracy, setting)
    assert best is not None
    return best[1], best[2]


def per_class_recall(model_dir: Path, test_dir: Path) -> dict[str, float]:
    """Each class's recall on the test channel, of the exported model's serving signature."""
    import json

    import tensorflow as tf

    texts, labels = read_texts(test_dir)
    class_names = json.loads((model_dir / "code" / "serving.json").read_text())["class_names"]
    signature = tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"]
    predicted = np.concatenate(
        [
            signature(text=tf.constant(texts[start : start + 512]))["probabilities"].numpy().argmax(axis=1)
            for start in range(0, len(texts), 512)
        ]
    )
    return {name: float(np.mean(predicted[labels == index] == index)) for index, name in enumerate(class_names)}
