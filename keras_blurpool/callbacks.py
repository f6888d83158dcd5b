"""Callbacks for `model.fit` under a `tf.distribute` strategy.

Keras 3 creates BatchNormalization's moving statistics with aggregation
"none": under `MirroredStrategy` each replica updates its own copy from
its own images and the copies drift apart, so replicas predict
differently inside the strategy and `model.save()` keeps replica 0's copy
alone (Keras 2 averaged them on read). `SyncBatchNormStatistics` averages
them after every step, as `recipes.train` does.

`LPSTemperatureScheduler` lowers the Gumbel-softmax temperature of the
`LPSPool2D` layers over training.
"""

from __future__ import annotations

import keras

from keras_blurpool.layers import LPSPool2D


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


class LPSTemperatureScheduler(keras.callbacks.Callback):
    """Sets the Gumbel-softmax temperature of every `LPSPool2D` each epoch.

    LPS trains with a soft mixture of the polyphase components, sharper as
    the temperature `tau` falls; its authors lower it during training
    (e.g. from 1 by a factor 0.825 every 10 epochs, not below 0.025), so
    that training ends close to the hard choice made at inference.

    Args:
        schedule: a function `epoch -> tau` (epoch counted from 0), tau a
            finite float > 0.
        verbose: if 1, prints the temperature at the start of each epoch.

    Raises:
        ValueError: at the start of training, if the model holds no
            `LPSPool2D`, or if `schedule` returns no finite float > 0.

    Example:

    >>> scheduler = LPSTemperatureScheduler(
    ...     lambda epoch: max(0.025, 0.825 ** (epoch // 10)))
    >>> # model.fit(..., callbacks=[scheduler])
    """

    def __init__(self, schedule, verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise ValueError(
                "`schedule` must be a function epoch -> tau. Received: "
                f"schedule={schedule!r}"
            )
        self.schedule = schedule
        self.verbose = verbose

    def _lps_layers(self) -> list:
        found = [
            layer
            for layer in self.model._flatten_layers(include_self=False)
            if isinstance(layer, LPSPool2D)
        ]
        if not found:
            raise ValueError(
                "LPSTemperatureScheduler: the model has no LPSPool2D layer "
                f"whose temperature it could set (model {self.model.name!r})"
            )
        return found

    def on_epoch_begin(self, epoch, logs=None):
        tau = self.schedule(epoch)
        if (
            isinstance(tau, bool)
            or not isinstance(tau, (int, float))
            or not 0 < tau < float("inf")
        ):
            raise ValueError(
                "LPSTemperatureScheduler: `schedule` must return a finite "
                f"float > 0 (the temperature tau); it returned {tau!r} for "
                f"epoch {epoch}"
            )
        for layer in self._lps_layers():
            layer.tau.assign(float(tau))
        if self.verbose:
            print(f"Epoch {epoch + 1}: LPS temperature tau = {tau:g}")
