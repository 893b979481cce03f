"""Dense autoencoder: dimensionality reduction and anomaly detection, trained on normal data only.

`features` [n_features] go in, in their own units (the model standardizes them with statistics
of the training stream). Out come the `embedding` [encoding_dim] (the reduced dimension), the
`reconstruction_error` (mean squared error in standardized units) and the `threshold` above
which an example is anomalous: the `threshold_percentile` of the training errors, stored in the
model as a variable (and in serving.json and evaluation.json).

    python training/autoencoder.py --train DIR --validation DIR --test DIR --model_dir DIR --output_dir DIR
"""

from __future__ import annotations

import keras

import contract
import scoring


def train(job: contract.Job) -> None:
    knobs = job.hyperparameters
    (n_features,) = job.input_shape
    penalty = keras.regularizers.L2(knobs.l2)
    with job.strategy.scope():
        # float32 under a mixed policy too, like the decoder's output: both feed the loss and the
        # served reconstruction error.
        standardize = keras.layers.Normalization(dtype="float32")
        standardize.adapt(job.dataset("train", targets=False))
        # Saturating units bound what the decoder can reproduce: inputs far outside the normal
        # range come back clipped, so their error grows (ReLU/linear units gave ~0.02 less ROC AUC).
        encoder = keras.Sequential(
            [
                keras.layers.Dense(knobs.hidden_units, activation="tanh", kernel_regularizer=penalty),
                keras.layers.Dropout(knobs.dropout),
                keras.layers.Dense(knobs.encoding_dim, activation="tanh", kernel_regularizer=penalty),
            ],
            name="encoder",
        )
        decoder = keras.Sequential(
            [
                keras.layers.Dense(knobs.hidden_units, activation="tanh", kernel_regularizer=penalty),
                keras.layers.Dense(n_features, kernel_regularizer=penalty, dtype="float32"),
            ],
            name="decoder",
        )
        features = keras.Input((n_features,), name=job.network.input_name)
        model = keras.Model(features, decoder(encoder(standardize(features))))
        model.threshold = keras.Variable(0.0, trainable=False, dtype="float32", name="threshold")

        def reconstruction_error(features, reconstruction):
            return keras.ops.mean(keras.ops.square(standardize(features) - reconstruction), axis=-1)

        model.compile(
            keras.optimizers.Adam(knobs.learning_rate),
            loss=reconstruction_error,
            steps_per_execution=job.steps_per_execution,
        )

    def unlabelled_pairs(channel):
        return job.dataset(channel, targets=False).map(lambda features: (features, features))

    job.fit(model, unlabelled_pairs("train"), unlabelled_pairs("validation"))

    errors = scoring.compiled(lambda features: reconstruction_error(features, model(features, training=False)))
    training_errors = scoring.error_histogram(errors, job.dataset("train", targets=False, shuffle=False))
    threshold = training_errors.percentile(knobs.threshold_percentile)
    model.threshold.assign(threshold)
    job.report(
        scoring.anomaly_detector(
            errors, job.dataset("test"), threshold=threshold, plot=job.plot_path("reconstruction_error")
        ),
        threshold=threshold,
        threshold_percentile=knobs.threshold_percentile,
    )

    def serve(features):
        embedding = encoder(standardize(features), training=False)
        error = reconstruction_error(features, decoder(embedding, training=False))
        return {
            "reconstruction_error": error,
            "embedding": embedding,
            "threshold": keras.ops.full_like(error, model.threshold),
        }

    # The bottleneck: the reduced dimension the decoder rebuilds the input from.
    job.save_model(
        serve,
        track=[model],
        serving={"n_features": n_features, "encoding_dim": knobs.encoding_dim, "threshold": threshold},
        embedding=lambda features: encoder(standardize(features), training=False),
    )


if __name__ == "__main__":
    contract.run("autoencoder", train)
