"""Text explanations and drift that can be checked against a known answer: synthetic reviews whose
class one word alone decides. The sentiment entry point's own training function trains on them
under the training contract, in this process; the Evaluate step must find that word the most
telling token of its class, in every text shown and over the whole test channel, and the drift
baseline must tell the text shifts from unchanged traffic by the model's own token counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from training_support import entry_point_logging

import records

# slow: trains and explains.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARKERS = ("splendid", "dreadful")  # fresh, rotten
FILLER = (
    *("movie", "scene", "actor", "story", "music", "camera", "script", "drama", "comedy", "screen"),
    *("plot", "studio", "director", "ending", "character", "dialogue", "sequence", "audience"),
    *("minutes", "theater", "lighting", "editing", "costume", "moment", "picture"),
)


def synthetic_texts(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, count)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, size=int(rng.integers(6, 13))))
        words.insert(int(rng.integers(0, len(words) + 1)), MARKERS[label])
        texts.append(" ".join(words) + rng.choice([".", "!", ""]))
    return np.array(texts, dtype=object), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model dir, channels, evaluation output) of sentiment trained and evaluated on synthetic reviews."""
    import contract
    import sentiment
    from processing import evaluate

    root = tmp_path_factory.mktemp("text")
    rng = np.random.default_rng(0)
    channels = {}
    for name, count in (("train", 600), ("validation", 200), ("test", 200)):
        texts, labels = synthetic_texts(rng, count)
        channels[name] = root / name
        records.write_channel(
            channels[name],
            {"text": texts, "label": labels},
            dtypes={"text": "string", "label": "int64"},
            class_names=("fresh", "rotten"),
        )
    # float32 named: `auto` would set a mixed policy for the rest of this process.
    with entry_point_logging():
        contract.run(
            "sentiment",
            sentiment.train,
            [
                *(f"--{channel}={folder}" for channel, folder in channels.items()),
                f"--model_dir={root / 'model'}",
                f"--output_dir={root / 'output'}",
                f"--checkpoint_dir={root / 'checkpoints'}",
                "--epochs=8",
                "--embedding_dim=16",
                "--filters=16",
                "--learning_rate=0.01",
                "--precision=float32",
            ],
        )
    evaluate.evaluate(
        "sentiment", root / "model", channels["test"], root / "evaluation", baseline_dir=channels["validation"]
    )
    return root / "model", channels, root / "evaluation"


def test_the_word_that_decides_the_class_is_its_most_telling_token(trained):
    _, _, output = trained
    assert json.loads((output / "evaluation.json").read_text())["metrics"]["test_accuracy"]["value"] == 1.0
    explained = json.loads((output / "explanations.json").read_text())
    telling = explained["details"]["telling_tokens"]
    assert [telling["fresh"][0]["name"], telling["rotten"][0]["name"]] == list(MARKERS)
    assert explained["methods"]["integrated_gradients"]["completeness_error"] <= 0.05
    assert explained["methods"]["integrated_gradients"]["examples"] == 200
    for example in explained["details"]["examples"]:  # each text shown: its marker carries the most
        strongest = max(example["tokens"], key=lambda token: token["attribution"])
        assert strongest["token"] == MARKERS[["fresh", "rotten"].index(example["truth"])], example
        assert [token["token"] for token in example["tokens"]] == example["text"].lower().replace(".", " .").replace(
            "!", " !"
        ).split()
    assert {"explanation_text.png", "explanation_tokens.png"} <= {path.name for path in output.glob("*.png")}


def test_the_text_shifts_are_drift_and_unchanged_traffic_is_not(trained):
    import tensorflow as tf

    import baseline
    import drift
    import networks
    from tasks.text_classifier import TASK

    model_dir, _, output = trained
    reference = drift.Baseline.read(output / baseline.BASELINE_FILE)
    assert reference.feature_names == ["out_of_vocabulary_rate", "tokens"]
    description = json.loads((model_dir / "code" / "serving.json").read_text())
    summarise = baseline.Summariser(
        networks.get_network("sentiment"), description, tf.saved_model.load(str(model_dir / "1")).signatures
    )
    texts, _ = synthetic_texts(np.random.default_rng(5), 200)
    unchanged = summarise(texts)
    assert np.all(unchanged.features[:, 0] == 0.0)  # every word of these texts is in the vocabulary
    assert not drift.compare(reference, unchanged).drifted
    for name, shift in TASK.drift_shifts().items():
        shifted = summarise(shift(texts, np.random.default_rng(6)))
        comparison = drift.compare(reference, shifted)
        assert comparison.drifted, (name, comparison.family_p_values)
        assert comparison.family_p_values["features"] < drift.ALPHA, name
