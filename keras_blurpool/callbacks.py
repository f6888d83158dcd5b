"""Callbacks for `model.fit` under a `tf.distribute` strategy.

Keras 3 creates BatchNormalization's moving statistics with aggregation
"none": under `MirroredStrategy` each replica updates its own copy from
its own images and the copies drift apart, so replicas predict
differently inside the strategy and `model.save()` keeps replica 0's copy
alone (Keras 2 averaged them on read). `SyncBatchNormStatistics` averages
them after every step (`recipes.train` does the same inside its training
step, with `average_over_replicas`).

`LPSTemperatureScheduler` lowers the Gumbel-softmax temperature of the
`LPSPool2D` layers over training.
"""

from __future__ import annotations

import itertools
import threading

import keras

from keras_blurpool.layers import LPSPool2D
from keras_blurpool.layers.polyphase import MIN_TAU
from keras_blurpool.layers.polyphase import check_tau


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


# The callback's all-reduce runs in collective groups of its own, numbered
# from here: TensorFlow's strategies number theirs from 1 (see
# `SyncBatchNormStatistics`), so the two never meet.
_GROUP_KEY_START = 0x4B420000
_groups: dict = {}
_groups_lock = threading.Lock()


def _collective_group(devices: tuple, group_size: int):
    """`(group_key, instance_keys)` of the callback's group over `devices`.

    One group per set of local devices and group size for the whole
    process, whatever the strategy object; `instance_keys` counts up over
    every fit and never repeats, so no two all-reduces of the group share
    a key, whatever their shapes. Under `MultiWorkerMirroredStrategy`
    every worker runs the same fits in the same order (as the strategy
    itself requires), so the workers agree on both keys.
    """
    with _groups_lock:
        key = (devices, group_size)
        if key not in _groups:
            _groups[key] = (_GROUP_KEY_START + len(_groups), itertools.count(1))
        return _groups[key]


def _own_group_devices(strategy):
    """The local devices for a collective group of the callback's own.

    `MirroredStrategy` and `MultiWorkerMirroredStrategy` over devices of
    one type; `None` for other strategies, and for devices of mixed
    types, where `MirroredStrategy` reduces through one device (no
    collective keys) and the strategy's own all-reduce is used.
    """
    import tensorflow as tf

    if not isinstance(strategy, (tf.distribute.MirroredStrategy,
                                 tf.distribute.MultiWorkerMirroredStrategy)):
        return None
    devices = tuple(strategy.extended.worker_devices)
    types = {tf.DeviceSpec.from_string(d).device_type for d in devices}
    return devices if len(types) == 1 else None


def _average_in_group(variables: list, group_key: int, group_size: int,
                      instance_key) -> None:
    """`average_over_replicas` through a collective group of our own.

    In replica context; `instance_key` an int32 scalar tensor, new at each
    call. One all-reduce of all the variables, concatenated in float32.

    The ordering token (this replica's copy of the first variable) is not
    optional: `tf.function`'s automatic control dependencies chain every
    stateful op that has no resource input in program order, and
    `CollectiveReduceV2` is not among the ops they exempt, so without a
    resource input replica 1's all-reduce would wait for replica 0's,
    which waits for replica 1's (a deadlock). With it, the all-reduce is
    ordered only against that variable: after the reads, before the writes.
    """
    import tensorflow as tf

    values = [tf.reshape(tf.cast(v.value, tf.float32), [-1]) for v in variables]
    mean = tf.raw_ops.CollectiveReduceV2(
        input=tf.concat(values, 0), group_size=group_size,
        group_key=group_key, instance_key=instance_key,
        ordering_token=[variables[0].handle],
        merge_op="Add", final_op="Div", communication_hint="auto")
    sizes = [int(value.shape[0]) for value in values]
    for variable, part in zip(variables, tf.split(mean, sizes)):
        variable.assign(tf.cast(tf.reshape(part, variable.shape), variable.dtype))


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

    Under `MirroredStrategy` and `MultiWorkerMirroredStrategy` that
    all-reduce runs in a collective group of its own, with instance keys
    that never repeat in the process. TensorFlow gives every such
    strategy object the same collective keys: group 1 over the same
    devices, instance keys counted from 100 (`CollectiveKeys(
    group_key_start=1 + _collective_key_base)`, the base 0 outside
    TensorFlow's tests), and the runtime remembers the shape of each
    (group, instance) for the life of the process. So the k-th all-reduce
    of a fit under a new strategy object must have the shape of the k-th
    one of every earlier fit over the same devices. An average through the
    strategy (`ReplicaContext.all_reduce`) would take keys from that
    sequence between Keras's gradient all-reduces, so that a plain fit and
    a fit with this callback, one after the other in one process, each
    under its own strategy object, fail with "Shape mismatch in the
    collective instance 101". In its own group the callback leaves the
    strategy's sequence as a plain fit's.

    Other strategies (and `MirroredStrategy` over devices of mixed types,
    which reduces through one device) average through the strategy's own
    all-reduce.

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

        devices = _own_group_devices(strategy)
        if devices is None:

            @tf.function
            def sync():
                strategy.run(lambda: average_over_replicas(variables))

            self._sync = sync
            return
        group_size = strategy.num_replicas_in_sync
        group_key, instance_keys = _collective_group(devices, group_size)

        @tf.function
        def sync_in_group(instance_key):
            strategy.run(lambda: _average_in_group(
                variables, group_key, group_size, instance_key))

        # A tensor argument: one trace, a new key at each call.
        self._sync = lambda: sync_in_group(
            tf.constant(next(instance_keys), tf.int32))

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
            finite float of at least `MIN_TAU` (1e-4).
        verbose: if 1, prints the temperature at the start of each epoch.

    Raises:
        ValueError: at the start of training, if the model holds no
            `LPSPool2D`, or if `schedule` returns no finite float of at
            least 1e-4.

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
        try:
            tau = check_tau(tau)
        except ValueError:
            raise ValueError(
                "LPSTemperatureScheduler: `schedule` must return a finite "
                f"float from {MIN_TAU:g} to float32's largest (the "
                f"temperature tau); it returned {tau!r} for epoch {epoch}"
            ) from None
        for layer in self._lps_layers():
            layer.tau.assign(float(tau))
        if self.verbose:
            print(f"Epoch {epoch + 1}: LPS temperature tau = {tau:g}")
