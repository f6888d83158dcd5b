"""One training loop for every `tf.distribute` strategy.

The loop is built on `strategy.run` with a `GradientTape`, not on
`model.fit`: with TensorFlow 2.21 and Keras 3.15, `fit` under
`MultiWorkerMirroredStrategy` fails (keras-team/keras#20585), while a
custom step works on one device, mirrored GPUs or CPUs, several hosts and
TPUs alike.

What a step does:

- `accum_steps` micro-batches, each of `global_batch_size` images spread
  over the replicas, go forward and backward one after the other; their
  gradients are summed and applied once. The loss of each image is divided
  by the effective batch `accum_steps * global_batch_size`, so the update
  is the one of a single batch that large (exactly so without BatchNorm,
  whose statistics stay per micro-batch and per replica).
- The optimizer is `TorchSGD` (PyTorch's momentum and L2 weight decay) and
  the learning rate a function of the global step, so a resumed run
  continues the same trajectory.
- With mixed precision, the loss is scaled and the update skipped on
  overflow (`keras.optimizers.LossScaleOptimizer`); bfloat16 on TPU needs
  no scaling.

Fault tolerance: a `tf.train.Checkpoint` of the model, the optimizer (its
momentum and loss-scale state), the global step and the best validation
accuracy is saved every `checkpoint_every` steps and after each epoch.
TensorFlow writes the checkpoint's files under temporary names and
renames them when complete, and the `checkpoint` state file, rewritten
atomically, names the new checkpoint only afterwards: a process killed at
any moment leaves the state file pointing at a complete checkpoint.
Rerunning the same command restores it and skips the images of the
epoch already seen, so the run continues where it stopped. Settings that
would change the trajectory are compared with the run's `run.json` first
and a change is refused, as is a directory holding models of a run that
no checkpoint can resume (`TrainConfig.overwrite` starts afresh): that
policy, and the layout of the run directory, are `recipes.run_dir`'s. A
non-finite loss stops the run, and non-finite weights are never saved.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import warnings
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_blurpool._utils import atomic_path
from keras_blurpool.callbacks import average_over_replicas
from keras_blurpool.callbacks import batch_norm_statistics

from . import run_dir
from . import strategy as strategy_lib
from .config import TrainConfig
from .optimizer import TorchSGD

# What `tf.summary.scalar` writes; spelled out because that function needs
# the tensorboard package, which TensorBoard's reader does not need here.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
).SerializeToString()


@dataclasses.dataclass
class TrainResult:
    """What `Trainer.fit` returns.

    Attributes:
        model: the trained model (its variables live in the strategy).
        step: the global step reached.
        history: one dict per epoch run in this process: `epoch`, `step`,
            `loss`, `lr`, `images_per_sec`, and `top1`, `top5` if
            validated.
        best_top1: best validation top-1 (percent) of the whole run, or
            None without validation.
        resumed_from: the step restored from a checkpoint, or None.
        paths: the files written (`final.keras`, ...), on the chief.
    """

    model: keras.Model
    step: int
    history: list
    best_top1: float | None
    resumed_from: int | None
    paths: dict


# (input_context, per_replica_batch_size, epoch) -> batched dataset of one
# epoch, deterministic given the epoch.
TrainInputFn = Callable[[tf.distribute.InputContext, int, int], tf.data.Dataset]
# (global_batch_size) -> batched validation dataset.
EvalInputFn = Callable[[int], tf.data.Dataset]


def _scalar(name: str, value: float, step: int) -> None:
    """Writes a TensorBoard scalar to the default summary writer."""
    tf.summary.write(
        name, tf.constant(value, tf.float32), step=step, metadata=_SCALAR_METADATA
    )


class Trainer:
    """Trains a classifier from logits under any `tf.distribute` strategy.

    Args:
        config: the `TrainConfig`.
        strategy: the strategy; create it before any other TF op (see
            `recipes.strategy.make_strategy`).
        model_fn: builds the model (logits out); called under
            `strategy.scope()`.
        train_input_fn: `(input_context, per_replica_batch_size, epoch)`
            -> the dataset of one epoch for that input pipeline, batched
            per replica, with `drop_remainder=True`, the same each time
            it is called with the same arguments. Each pipeline is sharded
            by the function (it gets the `InputContext`).
        eval_input_fn: `(global_batch_size)` -> the batched validation
            dataset, or None to skip validation; the trainer splits it
            between workers and replicas.
        init_fn: called with the model before a fresh (not resumed) run,
            e.g. to load baseline weights for fine-tuning.
        eval_batch_size: global validation batch size.

    Example:

    ```python
    trainer = Trainer(config, strategy, model_fn, train_input_fn)
    result = trainer.fit()
    ```
    """

    def __init__(
        self,
        config: TrainConfig,
        strategy: tf.distribute.Strategy,
        model_fn: Callable[[], keras.Model],
        train_input_fn: TrainInputFn,
        eval_input_fn: EvalInputFn | None = None,
        *,
        init_fn: Callable[[keras.Model], None] | None = None,
        eval_batch_size: int | None = None,
    ):
        self.config = config
        self.strategy = strategy
        self._model_fn = model_fn
        self._train_input_fn = train_input_fn
        self._eval_input_fn = eval_input_fn
        self._init_fn = init_fn
        self._eval_batch_size = eval_batch_size or config.global_batch_size
        replicas = strategy.num_replicas_in_sync
        if config.global_batch_size % replicas:
            raise ValueError(
                "`global_batch_size` must be a multiple of the number of "
                f"replicas ({replicas}). Received: global_batch_size="
                f"{config.global_batch_size}"
            )
        self._is_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
        self.is_chief = strategy_lib.is_chief(strategy)
        self._built = False

    # ------------------------------------------------------------------
    # Building

    def _build(self):
        """Model, optimizer and checkpoint, under the strategy."""
        config = self.config
        previous_policy = keras.mixed_precision.global_policy()
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy(
                "mixed_bfloat16" if self._is_tpu else "mixed_float16"
            )
        try:
            with self.strategy.scope():
                self.model = self._model_fn()
                self.step = tf.Variable(
                    0, dtype=tf.int64, trainable=False, name="global_step"
                )
                self.best_top1 = tf.Variable(
                    -1.0, dtype=tf.float32, trainable=False, name="best_top1"
                )
                self.learning_rate = config.learning_rate()
                # A callable: the rate follows our step, which counts every
                # step, also those the loss scaler skips on overflow (as
                # torch's GradScaler does), unlike `optimizer.iterations`.
                optimizer = TorchSGD(
                    learning_rate=lambda: self.learning_rate(self.step),
                    momentum=config.momentum,
                    weight_decay=config.weight_decay,
                )
                if config.mixed_precision and not self._is_tpu:
                    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
                optimizer.build(self.model.trainable_variables)
                self.optimizer = optimizer
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            step=self.step,
            best_top1=self.best_top1,
        )
        self._train_step = self._make_train_step()
        self._eval_step = None
        self._built = True

    def _make_train_step(self):
        config = self.config
        model, optimizer = self.model, self.optimizer
        effective_batch = config.effective_batch_size

        statistics = batch_norm_statistics(model)

        def replica_step(batches):
            variables = model.trainable_variables
            total, loss_sum = None, 0.0
            for images, labels in batches:
                # Waiting for the previous micro-batch's gradients frees its
                # activations before the next forward pass allocates more.
                with tf.control_dependencies(
                    [g for g in total or [] if g is not None]
                ):
                    with tf.GradientTape() as tape:
                        logits = tf.cast(model(images, training=True), tf.float32)
                        per_image = tf.nn.sparse_softmax_cross_entropy_with_logits(
                            labels=tf.cast(labels, tf.int32), logits=logits
                        )
                        loss = tf.nn.compute_average_loss(
                            per_image, global_batch_size=effective_batch
                        )
                        if model.losses:
                            loss += tf.nn.scale_regularization_loss(
                                tf.add_n(model.losses)
                            ) / len(batches)
                        scaled = optimizer.scale_loss(loss)
                    grads = tape.gradient(scaled, variables)
                if total is None:
                    total = grads
                else:
                    total = [
                        a if b is None else b if a is None else a + b
                        for a, b in zip(total, grads)
                    ]
                loss_sum += loss
            # Sums the gradients over replicas, then applies them (unscaled
            # and checked for overflow by a LossScaleOptimizer).
            optimizer.apply(total, variables)
            # Keeps the replicas' BatchNorm statistics identical (see
            # keras_blurpool.callbacks).
            average_over_replicas(statistics)
            return loss_sum

        @tf.function
        def train_step(iterator):
            batches = tuple(next(iterator) for _ in range(config.accum_steps))
            loss = self.strategy.run(replica_step, args=(batches,))
            self.step.assign_add(1)
            return self.strategy.reduce(
                tf.distribute.ReduceOp.SUM, loss, axis=None
            )

        return train_step

    def _make_eval_step(self):
        model = self.model

        def replica_eval(images, labels):
            logits = tf.cast(model(images, training=False), tf.float32)
            labels = tf.cast(labels, tf.int32)

            def correct(k):
                hits = tf.math.in_top_k(labels, logits, k)
                return tf.reduce_sum(tf.cast(hits, tf.int64))

            return tf.stack(
                [correct(1), correct(5), tf.size(labels, out_type=tf.int64)]
            )

        @tf.function
        def run_eval(distributed_dataset):
            counts = tf.zeros([3], tf.int64)
            # Partial last batches, and workers with fewer batches, are
            # handled by the distributed iterator inside tf.function.
            for images, labels in distributed_dataset:
                per_replica = self.strategy.run(replica_eval, args=(images, labels))
                counts += self.strategy.reduce(
                    tf.distribute.ReduceOp.SUM, per_replica, axis=None
                )
            return counts

        return run_eval

    # ------------------------------------------------------------------
    # Data

    def _distributed_train_data(self, epoch: int, first_step: int):
        config = self.config

        def dataset_fn(context: tf.distribute.InputContext):
            per_replica = context.get_per_replica_batch_size(
                config.global_batch_size
            )
            dataset = self._train_input_fn(context, per_replica, epoch)
            # Each pipeline feeds num_replicas / num_pipelines replicas,
            # one micro-batch each, accum_steps times per step.
            replicas_per_pipeline = (
                context.num_replicas_in_sync // context.num_input_pipelines
            )
            skip = first_step * config.accum_steps * replicas_per_pipeline
            # An epoch reads the pass over and over (steps_per_epoch may
            # exceed one pass; a short shard must not run dry in the middle
            # of a synchronised step), so a resumed epoch skips into the
            # repeated stream; modulo the pass when its length is known,
            # so that skipping costs less than a pass.
            passes = tf.get_static_value(dataset.cardinality())
            if passes == 0:
                raise ValueError(
                    f"the training data of input pipeline "
                    f"{context.input_pipeline_id} holds no batch of "
                    f"{per_replica} images (batch per replica); expected at "
                    "least that many images per pipeline"
                )
            if passes is not None and passes > 0:
                skip %= int(passes)
            return dataset.repeat().skip(skip)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _distributed_eval_data(self):
        dataset = self._eval_input_fn(self._eval_batch_size)
        if self._is_tpu:
            # TPUs need static shapes: the last partial batch is dropped.
            dataset = dataset.unbatch().batch(
                self._eval_batch_size, drop_remainder=True
            )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return self.strategy.experimental_distribute_dataset(
            dataset.with_options(options)
        )

    # ------------------------------------------------------------------
    # Files

    def _checkpoint_dir(self) -> str:
        return run_dir.checkpoint_dir(self.config.out_dir)

    def _check_finite(self, what: str) -> None:
        """Refuses to save weights or optimizer state that are not finite."""
        variables = list(self.model.weights) + list(self.optimizer.variables)
        for variable in variables:
            # The replica's own copy: reading a sync-on-read variable in
            # cross-replica context would all-reduce it, a collective the
            # other workers do not join at that point.
            local = self.strategy.experimental_local_results(
                getattr(variable, "value", variable)
            )
            value = np.asarray(local[0])
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise FloatingPointError(
                    f"training diverged: {variable.path} holds non-finite "
                    f"values after step {int(self.step.numpy())}; {what} "
                    "not saved (try a lower --lr; the last checkpoint, if "
                    "any, is kept)"
                )

    def _save_checkpoint(self) -> None:
        self._check_finite("checkpoint")
        directory = strategy_lib.write_dir(self._checkpoint_dir(), self.strategy)
        try:
            if self.is_chief:
                self._manager.save(checkpoint_number=int(self.step.numpy()))
            else:
                self.checkpoint.write(os.path.join(directory, "ckpt"))
        finally:
            strategy_lib.cleanup_write_dir(directory, self.strategy)
        self._barrier()

    def _barrier(self) -> None:
        """Returns once every worker has got here.

        After a save: a worker that goes on (and, after `stop_at_step`,
        restores "the latest checkpoint" in a new trainer) must not read
        the chief's checkpoint directory before the chief has finished
        writing it, or the workers resume at different steps and their
        collectives no longer pair up.
        """
        ones = self.strategy.run(lambda: tf.constant(1.0))
        self.strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    def _save_model(self, stem: str) -> dict:
        """Writes `<stem>.keras` and `<stem>.weights.h5` atomically."""
        self._check_finite(f"{stem}.keras")
        directory = strategy_lib.write_dir(self.config.out_dir, self.strategy)
        paths = {}
        try:
            for suffix, save in (
                (".keras", self.model.save),
                (".weights.h5", self.model.save_weights),
            ):
                path = os.path.join(directory, stem + suffix)
                # Keras picks the format from the suffix.
                with atomic_path(path, suffix=suffix) as partial:
                    save(partial)
                paths[stem + suffix] = path
        finally:
            strategy_lib.cleanup_write_dir(directory, self.strategy)
        return paths if self.is_chief else {}

    # ------------------------------------------------------------------
    # Running

    def evaluate(self) -> dict:
        """Validation top-1/top-5 (percent) and the number of images.

        Returns:
            `{"top1": float, "top5": float, "num_images": int}`, or `{}`
            without an `eval_input_fn`.
        """
        if self._eval_input_fn is None:
            return {}
        if not self._built:
            self._build()
        if self._eval_step is None:
            self._eval_step = self._make_eval_step()
            self._eval_data = self._distributed_eval_data()
        with warnings.catch_warnings():
            # Raised while tracing the loop over the distributed dataset;
            # the options it is about are set before distribution.
            warnings.filterwarnings(
                "ignore", message="To make it possible to preserve tf.data"
            )
            counts = self._eval_step(self._eval_data)
        top1, top5, count = (int(c) for c in counts)
        count = max(count, 1)
        return {
            "top1": 100.0 * top1 / count,
            "top5": 100.0 * top5 / count,
            "num_images": count,
        }

    def _print(self, message: str) -> None:
        if self.is_chief and self.config.verbose:
            print(message, flush=True)

    def fit(self, *, stop_at_step: int | None = None) -> TrainResult:
        """Trains to the end of the schedule, resuming if it can.

        Args:
            stop_at_step: stop early once the global step reaches this
                (for time-boxed runs and tests); the checkpoint written
                there resumes the run.

        Returns:
            A `TrainResult`.
        """
        config = self.config
        # Before building: a run that cannot resume is refused up front.
        latest = run_dir.check_run_dir(
            config,
            self.strategy.num_replicas_in_sync,
            is_chief=self.is_chief,
            log=self._print,
        )
        if not self._built:
            self._build()
        if self.is_chief:
            self._manager = tf.train.CheckpointManager(
                self.checkpoint,
                self._checkpoint_dir(),
                max_to_keep=config.keep_checkpoints,
                checkpoint_name="ckpt",
            )
        spe = config.steps_per_epoch
        resumed_from = None
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            resumed_from = int(self.step.numpy())
            self._print(
                f"resuming from step {resumed_from} "
                f"(epoch {resumed_from // spe + 1}, step "
                f"{resumed_from % spe} of {spe}) of {config.total_steps}: "
                f"{latest}"
            )
        elif self._init_fn is not None:
            self._init_fn(self.model)

        writers = self._summary_writers()
        history = []
        stop = config.total_steps
        if stop_at_step is not None:
            stop = min(stop, stop_at_step)
        start = int(self.step.numpy())
        for epoch in range(start // spe, config.epochs):
            first = int(self.step.numpy()) - epoch * spe
            if epoch * spe + first >= stop:
                break
            record = self._run_epoch(epoch, first, stop, writers)
            if int(self.step.numpy()) < (epoch + 1) * spe:
                self._save_checkpoint()
                self._print(
                    f"stopped at step {int(self.step.numpy())}; rerun to resume"
                )
                break
            metrics = self.evaluate()
            if metrics:
                record.update(top1=metrics["top1"], top5=metrics["top5"])
                self._print(
                    f"epoch {epoch + 1}/{config.epochs}: validation top-1 "
                    f"{metrics['top1']:.2f}%, top-5 {metrics['top5']:.2f}% "
                    f"({metrics['num_images']} images)"
                )
                with writers["validation"].as_default():
                    done = int(self.step.numpy())
                    _scalar("top1", metrics["top1"], done)
                    _scalar("top5", metrics["top5"], done)
                if metrics["top1"] > float(self.best_top1.numpy()):
                    self.best_top1.assign(metrics["top1"])
                    self._save_model("best")
            self._save_checkpoint()
            history.append(record)

        paths = {}
        if int(self.step.numpy()) >= config.total_steps:
            paths.update(self._save_model("final"))
            if self.is_chief and os.path.exists(
                os.path.join(config.out_dir, "best.keras")
            ):
                for name in ("best.keras", "best.weights.h5"):
                    paths[name] = os.path.join(config.out_dir, name)
            self._print(
                f"finished at step {int(self.step.numpy())}: "
                + ", ".join(sorted(paths))
                + f" in {config.out_dir}"
            )
        for writer in writers.values():
            writer.flush()
        best = float(self.best_top1.numpy())
        return TrainResult(
            model=self.model,
            step=int(self.step.numpy()),
            history=history,
            best_top1=best if best >= 0 else None,
            resumed_from=resumed_from,
            paths=paths,
        )

    def _summary_writers(self) -> dict:
        if not self.is_chief:
            noop = tf.summary.create_noop_writer()
            return {"train": noop, "validation": noop}
        logs = os.path.join(self.config.out_dir, run_dir.LOG_DIR)
        return {
            name: tf.summary.create_file_writer(os.path.join(logs, name))
            for name in ("train", "validation")
        }

    def _run_epoch(self, epoch: int, first: int, stop: int, writers) -> dict:
        config = self.config
        spe = config.steps_per_epoch
        iterator = iter(self._distributed_train_data(epoch, first))
        verbose = 0
        if self.is_chief and config.verbose:
            # A live bar on a terminal; one line per epoch in a log file.
            verbose = 1 if sys.stdout.isatty() else 2
        progbar = keras.utils.Progbar(
            spe,
            verbose=verbose,
            stateful_metrics=["lr", "img/s"],
            unit_name="step",
        )
        self._print(f"epoch {epoch + 1}/{config.epochs}")
        if first:
            progbar.update(first)
        losses, images_per_sec = [], 0.0
        timed_images, timed_seconds = 0, 0.0
        for index in range(first, spe):
            global_step = epoch * spe + index
            if global_step >= stop:
                break
            lr = float(self.learning_rate(global_step))
            started = time.perf_counter()
            try:
                loss = float(self._train_step(iterator))
            except tf.errors.OutOfRangeError:
                raise ValueError(
                    f"the training data ran out at step {global_step + 1}: "
                    "it yields no batch (every image skipped, or fewer "
                    "images than a batch per input pipeline)"
                ) from None
            elapsed = time.perf_counter() - started
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged: the loss of step {global_step + 1} "
                    f"is {loss} (lr {lr:g}); stopped without saving it (try "
                    "a lower --lr; the last checkpoint, if any, is kept)"
                )
            losses.append(loss)
            # The first step of an epoch (tracing, filling the input
            # pipeline) would distort the rate.
            if index > first:
                timed_images += config.effective_batch_size
                timed_seconds += elapsed
                images_per_sec = timed_images / max(timed_seconds, 1e-9)
            progbar.update(
                index + 1,
                [("loss", loss), ("lr", lr), ("img/s", images_per_sec)],
            )
            done = global_step + 1
            if done % config.log_every == 0 or index + 1 == spe:
                with writers["train"].as_default():
                    _scalar("loss", loss, done)
                    _scalar("learning_rate", lr, done)
                    if images_per_sec:
                        _scalar("images_per_sec", images_per_sec, done)
            # The end of an epoch is saved after validation, below.
            if (
                config.checkpoint_every
                and done % config.checkpoint_every == 0
                and index + 1 < spe
                and done < stop
            ):
                self._save_checkpoint()
        return {
            "epoch": epoch + 1,
            "step": int(self.step.numpy()),
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": float(self.learning_rate(epoch * spe + first)),
            "images_per_sec": images_per_sec,
        }
