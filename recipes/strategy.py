"""Choosing a `tf.distribute` strategy, and who writes what.

One trainer runs under every strategy: `one_device`, `mirrored` (all
local GPUs, or logical CPU devices), `multi_worker` (hosts listed in
`TF_CONFIG`), `tpu`, and `auto`, which picks from what is present. In a
multi-worker run every worker takes part in every save (reading some
distributed variables is a collective), but only the chief writes into
the output directory; the others write into a temporary directory and
delete it, as TensorFlow's multi-worker guide prescribes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import tensorflow as tf

from ._args import STRATEGIES


def split_cpu(num_devices: int) -> None:
    """Splits the host CPU into `num_devices` logical devices.

    For running `mirrored` on a machine without GPUs (tests, benchmarks).
    Must run before TensorFlow initialises its devices.

    Args:
        num_devices: number of logical CPU devices, at least 1.

    Raises:
        ValueError: if `num_devices` is not a positive int.
        RuntimeError: if the devices are already initialised with another
            number of logical CPUs.
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or (
        num_devices < 1
    ):
        raise ValueError(
            "`num_devices` must be a positive int. "
            f"Received: num_devices={num_devices!r}"
        )
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices
        )
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != num_devices:
            raise RuntimeError(
                f"Cannot split the CPU into {num_devices} logical devices: "
                f"TensorFlow is already initialised with {have}. Split it "
                "before creating any tensor or strategy."
            ) from error


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({error}). Received: TF_CONFIG={raw!r}"
        ) from None


def _cluster_size(tf_config: dict) -> int:
    cluster = tf_config.get("cluster", {})
    return sum(
        len(tasks)
        for task_type, tasks in cluster.items()
        if task_type in ("chief", "worker")
    )


def _tpu_present() -> bool:
    return bool(
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or os.path.exists("/dev/accel0")
        or os.path.exists("/dev/vfio/0")
    )


def resolve_strategy_name(name: str = "auto") -> str:
    """What `auto` stands for on this machine (other names unchanged).

    `auto` is `multi_worker` if `TF_CONFIG` lists more than one worker,
    else `tpu` if a TPU is attached, else `mirrored` if there are several
    GPUs or several logical CPU devices, else `one_device`.

    Args:
        name: one of `STRATEGIES`.

    Returns:
        A name of `STRATEGIES` other than `"auto"`.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(STRATEGIES)}. "
            f"Received: strategy={name!r}"
        )
    if name != "auto":
        return name
    if _cluster_size(_tf_config()) > 1:
        return "multi_worker"
    if _tpu_present():
        return "tpu"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    if not tf.config.list_physical_devices("GPU") and (
        len(tf.config.list_logical_devices("CPU")) > 1
    ):
        return "mirrored"
    return "one_device"


def make_strategy(
    name: str = "auto", *, tpu: str | None = None
) -> tf.distribute.Strategy:
    """Creates the distribution strategy `name`.

    Create it first thing in the program: `multi_worker` must exist before
    any other TensorFlow op runs.

    Args:
        name: `"auto"`, `"one_device"` (the first GPU, else the CPU),
            `"mirrored"` (all local GPUs; all logical CPU devices on a
            machine without GPUs), `"multi_worker"` (the cluster of
            `TF_CONFIG`, all local GPUs of each worker) or `"tpu"`.
        tpu: TPU name or address for `"tpu"`; `None` uses the environment
            (`TPU_NAME`, a Cloud TPU VM's local TPU).

    Returns:
        The `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown `name`, or `multi_worker` without a
            cluster in `TF_CONFIG`.
    """
    name = resolve_strategy_name(name)
    if name == "multi_worker":
        tf_config = _tf_config()
        if not _cluster_size(tf_config) or "task" not in tf_config:
            raise ValueError(
                "strategy='multi_worker' needs TF_CONFIG with a 'cluster' "
                "of chief/worker addresses and this process's 'task'. "
                f"Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu or ""
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
        # One CPU "replica" per logical device; NCCL is not there.
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """`(task_type, task_id)` of this process (`(None, 0)` on one host)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files.

    The chief is the `chief` task if the cluster has one, else worker 0;
    a single-host run is its own chief.
    """
    task_type, task_id = task(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in _tf_config().get("cluster", {})
    return task_type == "worker" and task_id == 0 and not has_chief


def check_out_dir(out_dir: str) -> None:
    """Raises a ValueError unless `out_dir` is, or can be, a directory.

    Checked before any work: the directory itself, or its nearest
    existing ancestor, must be a directory.

    Args:
        out_dir: the run's output directory.

    Raises:
        ValueError: naming the file in the way.
    """
    path = os.path.abspath(out_dir)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent
    if not os.path.isdir(path):
        where = "is"
        if path != os.path.abspath(out_dir):
            where = f"lies under {path!r}, which is"
        raise ValueError(
            f"--out-dir {out_dir!r} {where} a file, not a directory; expected "
            "a directory, existing or new"
        )


def write_dir(path: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes what belongs in `path`.

    The chief writes into `path`; another worker into a fresh temporary
    directory, to be removed with `cleanup_write_dir` after the write.

    Args:
        path: the directory the file belongs in.
        strategy: the run's strategy.

    Returns:
        A directory that exists.
    """
    if is_chief(strategy):
        os.makedirs(path, exist_ok=True)
        return path
    task_type, task_id = task(strategy)
    return tempfile.mkdtemp(prefix=f"{task_type}{task_id}-")


def cleanup_write_dir(directory: str, strategy: tf.distribute.Strategy) -> None:
    """Deletes what a non-chief worker wrote (no-op on the chief)."""
    if not is_chief(strategy):
        shutil.rmtree(directory, ignore_errors=True)
