"""Sentiment classifier of raw text: a review in, fresh or rotten out (any text classes of the channels).

The model tokenizes: Keras' TextVectorization, adapted on the train channel's texts, lower-cases a
text, sets punctuation and symbols apart as tokens of their own, keeps the `vocabulary_size` most
frequent tokens (the rest share one out-of-vocabulary token) and reads the first `sequence_length`
of them. Training tokenizes in the input pipeline; the export puts the same layer in front of the
network, so the endpoint takes text. The tokens' embeddings (zero on padding) go through the
`encoder`:
- cnn: 1-D convolutions of widths 3, 4 and 5 (`filters` each, ReLU), each filter's largest value
  over the real tokens (Kim 2014, "Convolutional neural networks for sentence classification");
- bilstm: a bidirectional LSTM (`units` per direction) over the real tokens;
then dropout and a softmax. Besides `serving_default` and `embedding`, the export holds what the
text classifier task reads (training/tasks/text_classifier.py): the tokens and their embeddings,
the network from those embeddings on, and the drift features only the vocabulary can give.

    python training/sentiment.py --train DIR --validation DIR --test DIR --model_dir DIR --output_dir DIR
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

import contract
import scoring
from tasks.text_classifier import FROM_VECTORS_SIGNATURE, TOKENS_SIGNATURE

KERNEL_WIDTHS = (3, 4, 5)
PAD, OUT_OF_VOCABULARY = 0, 1  # TextVectorization's token ids for padding and unknown tokens


def standardize(texts: tf.Tensor) -> tf.Tensor:
    """Lower case (Unicode), every punctuation mark and symbol a token of its own."""
    return tf.strings.regex_replace(tf.strings.lower(texts, encoding="utf-8"), r"([\p{P}\p{S}])", r" \1 ")


def encoder(knobs) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """(vectors [N, length, dim], real [N, length]) -> features [N, width], with layers of its own."""
    penalty = keras.regularizers.L2(knobs.l2)
    if knobs.encoder == "bilstm":
        recurrent = keras.layers.Bidirectional(keras.layers.LSTM(knobs.units, kernel_regularizer=penalty))
        return lambda vectors, real: recurrent(vectors, mask=real)
    convolutions = [
        keras.layers.Conv1D(knobs.filters, width, padding="same", activation="relu", kernel_regularizer=penalty)
        for width in KERNEL_WIDTHS
    ]

    def largest_over_real_tokens(vectors: tf.Tensor, real: tf.Tensor) -> tf.Tensor:
        # ReLU outputs are >= 0: zeroing the padding's leaves each filter's largest over real tokens.
        weight = keras.ops.expand_dims(keras.ops.cast(real, vectors.dtype), -1)
        return keras.ops.concatenate([keras.ops.max(conv(vectors) * weight, axis=1) for conv in convolutions], -1)

    return largest_over_real_tokens


def train(job: contract.Job) -> None:
    knobs = job.hyperparameters
    length = knobs.sequence_length
    vectorizer = keras.layers.TextVectorization(
        max_tokens=knobs.vocabulary_size, standardize=standardize, output_sequence_length=length
    )
    vectorizer.adapt(job.dataset("train", targets=False, shuffle=False))
    vocabulary = vectorizer.get_vocabulary()
    # Every token of a text, not only the first `length`: what drift monitoring counts.
    all_tokens = keras.layers.TextVectorization(standardize=standardize, vocabulary=vocabulary, ragged=True)
    all_tokens.build()  # made from a vocabulary, never adapted: built before it can be exported

    with job.strategy.scope():
        ids = keras.Input((length,), dtype="int64", name="token_ids")
        embed = keras.layers.Embedding(len(vocabulary), knobs.embedding_dim)
        encode = encoder(knobs)
        dropout = keras.layers.Dropout(knobs.dropout)
        # float32 under a mixed policy too: the softmax feeds the loss and is what is served.
        classify = keras.layers.Dense(
            len(job.class_names),
            activation="softmax",
            kernel_regularizer=keras.regularizers.L2(knobs.l2),
            dtype="float32",
        )

        def from_vectors(vectors: tf.Tensor, real: tf.Tensor, training: bool | None = None) -> tf.Tensor:
            return classify(dropout(encode(vectors, real), training=training))

        real = keras.ops.not_equal(ids, PAD)
        vectors = embed(ids) * keras.ops.expand_dims(keras.ops.cast(real, embed.compute_dtype), -1)
        model = keras.Model(ids, from_vectors(vectors, real))
        model.compile(
            keras.optimizers.Adam(knobs.learning_rate),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=job.steps_per_execution,
        )

    def tokenized(channel: str) -> tf.data.Dataset:
        return job.dataset(channel).map(lambda texts, labels: (vectorizer(texts), labels))

    job.fit(model, tokenized("train"), tokenized("validation"), class_weight=job.class_weight())

    def serve(texts: tf.Tensor) -> tf.Tensor:
        return model(vectorizer(texts), training=False)

    job.report(
        scoring.classifier(
            scoring.compiled(serve), job.dataset("test"), job.class_names, job.plot_path(job.network.task.plot)
        )
    )
    embedding = contract.layer_before_output(model)

    def tokens_and_vectors(texts: tf.Tensor) -> dict[str, tf.Tensor]:
        token_ids = vectorizer(texts)
        real = tf.not_equal(token_ids, PAD)
        vectors = tf.cast(embed(token_ids), tf.float32) * tf.cast(real, tf.float32)[..., tf.newaxis]
        words = tf.strings.split(standardize(texts)).to_tensor(default_value="", shape=[None, length])
        return {"tokens": words, "vectors": tf.concat([vectors, tf.cast(real, tf.float32)[..., tf.newaxis]], -1)}

    def probabilities_from_vectors(vectors: tf.Tensor) -> dict[str, tf.Tensor]:
        real = vectors[..., -1] > 0.5
        return {"probabilities": from_vectors(tf.cast(vectors[..., :-1], embed.compute_dtype), real, training=False)}

    def drift_features(texts: tf.Tensor) -> dict[str, tf.Tensor]:
        token_ids = all_tokens(texts)
        counts = tf.cast(token_ids.row_lengths(), tf.float32)
        unknown = tf.reduce_sum(tf.cast(tf.equal(token_ids, OUT_OF_VOCABULARY), tf.float32), axis=1)
        return {"tokens": counts, "out_of_vocabulary_rate": unknown / tf.maximum(counts, 1.0)}

    text_spec = tf.TensorSpec([None], tf.string, name=job.network.input_name)
    job.save_model(
        lambda texts: {"probabilities": serve(texts)},
        track=[model, vectorizer, all_tokens],
        serving={"class_names": list(job.class_names), "sequence_length": length},
        embedding=lambda texts: embedding(vectorizer(texts), training=False),
        drift_features=drift_features,
        signatures={
            TOKENS_SIGNATURE: (tokens_and_vectors, [text_spec]),
            FROM_VECTORS_SIGNATURE: (
                probabilities_from_vectors,
                [tf.TensorSpec([None, length, knobs.embedding_dim + 1], tf.float32, name="vectors")],
            ),
        },
    )


if __name__ == "__main__":
    contract.run("sentiment", train)
