"""Callbacks for `model.fit` under a `tf.distribute` strategy.

Keras 3 creates BatchNormalization's moving statistics with aggregation
"none": under `MirroredStrategy` each replica updates its own copy from
its own images and the copies drift apart, so replicas predict
differently inside the strategy and `model.save()` keeps replica 0's copy
alone (Keras 2 averaged them on read). `SyncBatchNormStatistics` averages
them after every step, as `recipes.train` does.
"""

from __future__ import annotations

import keras


def batch_norm_statistics(model: keras.Model) -> list:
    """The moving means and variances of every BatchNormalization in `model`.

    Nested models and layers included; each variable once.
    """
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        for variable in (layer.moving_mean, layer.moving_variance):
            if variable is not None and id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)
    return found


def average_over_replicas(variables: list) -> None:
    """Replaces each variable by its mean over the replicas, in place.

    Call it in replica context (inside `strategy.run`): it is one
    all-reduce of all the variables together, across workers too under
    `MultiWorkerMirroredStrategy`. A no-op outside a strategy or with one
    replica. TensorFlow backend only.
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if not variables or context is None or context.num_replicas_in_sync == 1:
        return
    means = context.all_reduce(
        tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in variables]
    )
    for variable, mean in zip(variables, means):
        variable.assign(mean)


class SyncBatchNormStatistics(keras.callbacks.Callback):
    """Keeps BatchNorm's moving statistics identical on every replica.

    Under a `tf.distribute` strategy, after each training batch (each
    `steps_per_execution` steps), every BatchNormalization's moving mean
    and variance are replaced by their mean over the replicas. Then
    in-strategy `evaluate`/`predict` and the saved model agree, whichever
    replica the saved values come from. The batch statistics used for
    training stay per replica; for cross-replica batch statistics build the
    model with `synchronized_batch_norm=True` (or use
    `BatchNormalization(synchronized=True)`), which keeps the moving
    statistics identical by construction.

    Works with any Keras model. Does nothing outside a strategy, with one
    replica, or on the JAX and PyTorch backends (Keras's data parallelism
    there runs one program over the global batch, so there is one copy of
    the statistics).

    Cost: one all-reduce of the BatchNorm statistics per batch (for
    ResNet-50, 106 variables, 53,120 floats = 212 kB).

    Example:

    ```python
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = keras_blurpool.applications.ResNet50(weights=None)
        model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(dataset, callbacks=[SyncBatchNormStatistics()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._sync = None

    def on_train_begin(self, logs=None):
        self._sync = None
        if keras.backend.backend() != "tensorflow":
            return
        import tensorflow as tf

        strategy = getattr(self.model, "distribute_strategy", None)
        if strategy is None or strategy.num_replicas_in_sync == 1:
            return
        variables = batch_norm_statistics(self.model)
        if not variables:
            return

        @tf.function
        def sync():
            strategy.run(lambda: average_over_replicas(variables))

        self._sync = sync

    def on_train_batch_end(self, batch, logs=None):
        if self._sync is not None:
            self._sync()
