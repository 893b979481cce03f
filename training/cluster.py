"""The cluster a job runs in (TF_CONFIG), and the Keras multi-worker work-around it needs."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def workers_and_index() -> tuple[list[str], int]:
    """(worker addresses, this task's index) from TF_CONFIG; one anonymous worker without it."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster", {})
    workers = cluster.get("chief", []) + cluster.get("worker", [])
    task = config.get("task", {})
    index = int(task.get("index", 0)) + (len(cluster.get("chief", [])) if task.get("type") == "worker" else 0)
    return (workers or ["local"]), index


def work_around_keras_multi_worker_bugs() -> None:
    """Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585):
    (1) its symbolic build reduces a nested batch with `strategy.reduce`, which collective
    strategies reject; `fit` skips that build when the model holds no strategy of its own, so
    `Job.fit` clears it and runs inside `strategy.scope()` instead. (2) it reduces scalar step
    logs with `axis=0`; this reduces them over workers with no axis, the same mean."""
    from keras.src.backend.tensorflow import trainer

    reduce_per_replica = trainer.reduce_per_replica

    def reduce_scalars_without_axis(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda value: (
                    strategy.reduce("MEAN", value, axis=None)
                    if isinstance(value, tf.distribute.DistributedValues)
                    else value
                ),
                values,
            )
        return reduce_per_replica(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_scalars_without_axis
