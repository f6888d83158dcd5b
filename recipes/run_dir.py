"""The run directory: `run.json`, and whether a run may resume there.

A run's `--out-dir` holds `run.json` (every setting that fixes the run's
trajectory), `checkpoints/`, `logs/` and the saved models. Rerunning the
same command resumes from the latest checkpoint. Before that, the
settings are compared with `run.json`: those marked on `TrainConfig`
(`recipes.config.resume_fields`) and the facts of `TrainConfig.run_info`
must be the same, but for the strategy (`RESUMABLE_CHANGES`) and, for a
step schedule, more epochs; a change is refused, as is a directory
holding models of a run that no checkpoint can resume, unless
`TrainConfig.overwrite` starts afresh. What a resume may change is
printed and appended to `run.json` under `"resumes"`.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Callable

import tensorflow as tf

from keras_blurpool._utils import atomic_path

from . import strategy as strategy_lib
from .config import EXTENDABLE
from .config import TrainConfig
from .config import resume_fields

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
RUN_FILE = "run.json"

RESUMABLE_CHANGES = ("strategy", "num_replicas")
"""Fields of run.json that may change when a run resumes (on another
machine, say): the change is printed and recorded in run.json. Every
other field fixes the trajectory, so a change is refused, but for more
epochs of a step schedule (`extends`)."""

RUN_FILES = (
    RUN_FILE,
    "final.keras",
    "final.weights.h5",
    "best.keras",
    "best.weights.h5",
)
"""What a run leaves in its --out-dir besides checkpoints/ and logs/."""

_RESUMES = "resumes"


def checkpoint_dir(out_dir: str) -> str:
    """The checkpoints' folder of a run.

    Args:
        out_dir: the run's directory.

    Returns:
        `out_dir/checkpoints`.
    """
    return os.path.join(out_dir, CHECKPOINT_DIR)


def run_info(config: TrainConfig, num_replicas: int) -> dict:
    """Every setting of the run, as run.json holds it.

    Args:
        config: the run's `TrainConfig`: its `run_info`, then the fields
            marked for resuming (`resume_fields`), `schedule_epochs` as
            the schedule's actual length.
        num_replicas: the strategy's number of replicas.

    Returns:
        A dict as JSON reads it back (tuples become lists), to compare.

    Example:

    >>> config = TrainConfig("run", epochs=2, steps_per_epoch=5,
    ...                      global_batch_size=8, lr=0.1, run_info={"arch": "demo"})
    >>> info = run_info(config, num_replicas=1)
    >>> info["arch"], info["schedule_epochs"], info["num_replicas"]
    ('demo', 2, 1)
    """
    info = {
        **config.run_info,
        **{name: getattr(config, name) for name in resume_fields()},
        "schedule_epochs": config.schedule_length,
        "num_replicas": num_replicas,
    }
    return json.loads(json.dumps(info))


def check_run_dir(
    config: TrainConfig,
    num_replicas: int,
    *,
    is_chief: bool,
    log: Callable[[str], None] = print,
) -> str | None:
    """Checks --out-dir against this run; returns the checkpoint to resume.

    A checkpoint made with the same settings resumes; anything else
    that a run left in `out_dir` (another run's settings, finished
    models without a checkpoint) is refused unless `overwrite`, which
    deletes it. run.json is written for a fresh run only; a resumed
    run appends the changes it may make (strategy, more epochs) to its
    "resumes". Only the chief writes or deletes.

    Args:
        config: the run's `TrainConfig`.
        num_replicas: the strategy's number of replicas.
        is_chief: whether this worker writes into `out_dir`.
        log: prints the changes a resumed run makes.

    Returns:
        The path of the checkpoint to resume from, or None for a fresh
        run.

    Raises:
        ValueError: if `out_dir` is not a directory, or holds a run
            that this one cannot resume and `overwrite` is False.
    """
    out_dir = config.out_dir
    strategy_lib.check_out_dir(out_dir)
    info = run_info(config, num_replicas)
    path = os.path.join(out_dir, RUN_FILE)
    saved, unreadable = None, None
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            saved, unreadable = None, f"{path} cannot be read ({error})"
    changed = []
    if saved is not None:
        changed = [
            f"{key}: {saved[key]!r} -> {info.get(key)!r}"
            for key in saved
            if key not in RESUMABLE_CHANGES
            and key != _RESUMES
            and (key in info or saved[key] is not None)
            and saved[key] != info.get(key)
        ]
    latest = tf.train.latest_checkpoint(checkpoint_dir(out_dir))
    start_afresh = "start afresh in another --out-dir, or with --overwrite "
    if latest and changed and extends(saved, info):
        changed = []
    if latest and not changed and not unreadable:
        if saved is not None:
            _record_resume(path, saved, info, latest, is_chief=is_chief, log=log)
        return latest
    if latest:
        problem = unreadable or (
            "a run made with other settings, which cannot resume with "
            "these (" + "; ".join(changed) + ")"
        )
        if not config.overwrite:
            raise ValueError(
                f"--out-dir {out_dir!r} holds {problem}. Rerun with the "
                f"settings of {path}, or {start_afresh}(which deletes "
                "that run)."
            )
    else:
        present = [
            name for name in RUN_FILES[1:]
            if os.path.exists(os.path.join(out_dir, name))
        ]
        problem = None
        if unreadable:
            problem = unreadable
        elif changed:
            problem = "another run's run.json (" + "; ".join(changed) + ")"
        elif present:
            problem = "a run's " + ", ".join(present)
        if problem and not config.overwrite:
            raise ValueError(
                f"--out-dir {out_dir!r} holds {problem} and no checkpoint "
                f"to resume from; {start_afresh}(which replaces them)."
            )
    if is_chief:
        if config.overwrite:
            delete_run(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        write_json(path, info)
    return None


def extends(saved: dict, info: dict) -> bool:
    """Whether `info` only raises the epochs of a step-schedule run.

    The step schedule's rate does not depend on the run's length, so
    the steps already taken stay those of the longer run; a cosine
    period or a fine-tuning offset would change.

    Args:
        saved: the run's `run.json`.
        info: this run's settings (`run_info`).

    Returns:
        True if only fields marked `EXTENDABLE` differ (`epochs`, and the
        default `schedule_epochs` that follows it), `epochs` is higher, the
        schedule is `"step"` and there is no epoch offset.

    Example:

    >>> saved = {"schedule": "step", "epochs": 2, "schedule_epochs": 2}
    >>> extends(saved, {**saved, "epochs": 3, "schedule_epochs": 3})
    True
    >>> extends(saved, {**saved, "epochs": 1, "schedule_epochs": 1})
    False
    """
    differ = {key for key in saved if saved[key] != info.get(key)}
    differ -= {*RESUMABLE_CHANGES, _RESUMES}
    return (
        info.get("schedule") == "step"
        and differ <= set(resume_fields(EXTENDABLE))
        and "epochs" in differ
        and isinstance(saved["epochs"], int)
        and info["epochs"] > saved["epochs"]
        and not info.get("epoch_offset")
    )


def _record_resume(path, saved, info, latest, *, is_chief, log) -> None:
    """Prints and records the changes a resumed run may make."""
    changes = {
        key: [saved.get(key), info.get(key)]
        for key in (*RESUMABLE_CHANGES, *resume_fields(EXTENDABLE))
        if key in saved and saved.get(key) != info.get(key)
    }
    if not changes:
        return
    log(
        "resuming with "
        + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
    )
    if is_chief:
        entry = {"checkpoint": os.path.basename(latest), **changes}
        updated = {key: new for key, (_, new) in changes.items()}
        resumes = [*saved.get(_RESUMES, []), entry]
        write_json(path, {**saved, **updated, _RESUMES: resumes})


def delete_run(out_dir: str) -> None:
    """Deletes what a run left in `out_dir` (for `overwrite`).

    Args:
        out_dir: the run's directory; its `checkpoints/`, `logs/` and
            `RUN_FILES` go, anything else stays.
    """
    for name in (CHECKPOINT_DIR, LOG_DIR):
        directory = os.path.join(out_dir, name)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
    for name in RUN_FILES:
        file = os.path.join(out_dir, name)
        if os.path.isfile(file):
            os.remove(file)


def write_json(path: str, value: dict) -> None:
    """Writes `value` to `path` atomically, indented, keys sorted.

    Args:
        path: the file to (re)write.
        value: a JSON-serialisable dict.
    """
    with atomic_path(path) as partial:
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2, sort_keys=True)
