"""How to train: the reference's hyper-parameters, the schedule, `TrainConfig`.

Zhang (ICML 2019) trains every ImageNet network as the PyTorch ImageNet
example does: SGD with momentum 0.9, weight decay 1e-4, batch 256, 90
epochs, the learning rate divided by 10 every 30 epochs, starting at 0.1
(0.01 for AlexNet and VGG, 0.05 for VGG with BatchNorm). MobileNetV2 uses
lr 0.05 with a cosine schedule, weight decay 4e-5 and 150 epochs.
Fine-tuning an antialiased network from its baseline runs the last two
thirds of the schedule (for the step schedule: lr/10 for 60 epochs).

The learning rate is a function of the global step only, so a resumed run
follows the schedule exactly. `TrainConfig` gathers a run's settings; the
fields marked `metadata={"resume": ...}` fix the run's trajectory, and
`recipes.run_dir` refuses to resume a run when one of them changes.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from keras_blurpool.applications import registry

from ._args import INT64_MAX
from ._args import MAX_EPOCHS
from ._args import MAX_SEED
from .models import is_keras_application

# The batch size the reference's learning rates are given for.
REFERENCE_BATCH_SIZE = 256

SCHEDULES = ("step", "cosine")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one architecture, at the reference's batch.

    Attributes:
        lr: initial learning rate for a batch of `batch_size` images.
        epochs: length of the schedule, in epochs.
        schedule: `"step"` (multiply by `lr_gamma` every `lr_step_epochs`)
            or `"cosine"` (half a cosine from `lr` to 0 over `epochs`).
        weight_decay: L2 penalty, added to the gradient as PyTorch's SGD
            does, on every trainable weight.
        batch_size: the global batch the learning rate is given for.
        momentum: SGD momentum (PyTorch's formulation).
        lr_step_epochs: period of the step schedule.
        lr_gamma: factor of the step schedule.
    """

    lr: float
    epochs: int = 90
    schedule: str = "step"
    weight_decay: float = 1e-4
    batch_size: int = REFERENCE_BATCH_SIZE
    momentum: float = 0.9
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1

    def scaled_lr(self, batch_size: int) -> float:
        """The learning rate for another global batch size (linear rule).

        Args:
            batch_size: the effective global batch (accumulation included).

        Returns:
            `lr * batch_size / self.batch_size`.
        """
        return self.lr * batch_size / self.batch_size


_IMAGENET = Recipe(lr=0.1)
_VGG = Recipe(lr=0.01)
_VGG_BN = Recipe(lr=0.05)
_MOBILENET = Recipe(lr=0.05, epochs=150, schedule="cosine", weight_decay=4e-5)
# Not the reference's: the small CNN on the embedded 32x32 dataset, sized
# for a few CPU minutes. At lr >= 0.05 the antialiased twin stays near
# chance for epochs while the plain one trains; 0.02 trains both.
_DEMO = Recipe(
    lr=0.02, epochs=12, schedule="cosine", weight_decay=5e-4, batch_size=64
)

# The registry names which of the reference's recipes each architecture
# follows.
_BY_KIND = {
    "imagenet": _IMAGENET,
    "vgg": _VGG,
    "vgg_bn": _VGG_BN,
    "mobilenet": _MOBILENET,
}
RECIPES: dict[str, Recipe] = {
    **{
        name: _BY_KIND[spec.recipe]
        for name, spec in registry.ARCHITECTURES.items()
    },
    "demo": _DEMO,
}

# Fine-tuning from a baseline runs this fraction of the schedule: its end.
FINETUNE_FRACTION = 2 / 3


def recipe_for(arch: str) -> Recipe:
    """The recipe of an architecture of `recipes.models.ARCHITECTURES`.

    Args:
        arch: e.g. `"resnet50"`, or `"keras.<Name>"` for a
            keras.applications model (the ImageNet recipe of the ResNets).

    Returns:
        Its `Recipe`.

    Raises:
        ValueError: for an unknown `arch`, listing the known ones.
    """
    if is_keras_application(arch):
        # The reference has no recipe for them: they take the ResNets'
        # ImageNet one (the demo comparison trains them with the demo's).
        return _IMAGENET
    if arch not in RECIPES:
        raise ValueError(
            f"No recipe for arch={arch!r}. Known: " + ", ".join(RECIPES)
        )
    return RECIPES[arch]


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """The learning rate as a function of the global optimizer step.

    The rate changes at epoch boundaries, as the reference's does: epoch
    `e` (counted from the start of the schedule, `epoch_offset` included)
    runs at `lr * lr_gamma ** (e // lr_step_epochs)` (step) or
    `lr * (1 + cos(pi * e / schedule_epochs)) / 2` (cosine).

    Attributes:
        lr: learning rate at epoch 0 of the schedule.
        steps_per_epoch: optimizer steps per epoch.
        schedule: `"step"` or `"cosine"`.
        schedule_epochs: length of the whole schedule (cosine period).
        epoch_offset: schedule epoch at which this run starts; fine-tuning
            starts a third of the way in.
        lr_step_epochs: period of the step schedule.
        lr_gamma: factor of the step schedule.
    """

    lr: float
    steps_per_epoch: int
    schedule: str = "step"
    schedule_epochs: int = 90
    epoch_offset: int = 0
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"`schedule` must be one of {SCHEDULES}. "
                f"Received: schedule={self.schedule!r}"
            )
        if self.steps_per_epoch < 1:
            raise ValueError(
                "`steps_per_epoch` must be a positive int. "
                f"Received: steps_per_epoch={self.steps_per_epoch!r}"
            )

    def __call__(self, step) -> tf.Tensor:
        """The learning rate at `step` (0-based), a float32 scalar tensor."""
        step = tf.cast(step, tf.int64)
        epoch = self.epoch_offset + step // self.steps_per_epoch
        epoch = tf.cast(epoch, tf.float32)
        if self.schedule == "step":
            factor = tf.pow(
                tf.constant(self.lr_gamma, tf.float32),
                tf.floor(epoch / self.lr_step_epochs),
            )
        else:
            factor = 0.5 * (
                1.0 + tf.cos(math.pi * epoch / float(self.schedule_epochs))
            )
        return tf.constant(self.lr, tf.float32) * factor


RESUME = "resume"
"""The `dataclasses.field` metadata key of `TrainConfig`'s resume markers."""

FIXED = "fixed"
"""Marker of a setting that must not change when a run resumes."""

EXTENDABLE = "extendable"
"""Marker of a setting that must not change when a run resumes, but for
more epochs of a step schedule (whose rate does not depend on the run's
length, so that the steps already taken stay those of the longer run)."""


def _marked(marker: str, **kwargs):
    """A `dataclasses.field` carrying `{RESUME: marker}` as metadata."""
    return dataclasses.field(metadata={RESUME: marker}, **kwargs)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train; everything but the model and the data.

    The fields marked `_marked(FIXED)` or `_marked(EXTENDABLE)` (metadata
    `{"resume": "fixed"}`, `{"resume": "extendable"}`) fix the run's
    trajectory (the images of each step, the rate, the dtype): they are
    recorded in `run.json`, and a run resumes only with the same values
    (see `resume_fields` and `recipes.run_dir`). The others (where to
    write, how often, how verbosely) may change from one resume to the
    next.

    Attributes:
        out_dir: directory of checkpoints, logs and saved models.
        epochs: epochs of this run (the end of the schedule); with
            `epoch_offset`, at most 2**24 (the schedule counts epochs in
            float32), and `epochs * steps_per_epoch` at most 2**63 - 1.
        steps_per_epoch: optimizer steps per epoch.
        global_batch_size: images per micro-batch over all replicas.
        lr: learning rate at epoch 0 of the schedule, for the effective
            batch `accum_steps * global_batch_size`.
        accum_steps: micro-batches per optimizer step.
        momentum: SGD momentum (PyTorch's).
        weight_decay: L2 coefficient on every trainable weight (PyTorch's).
        schedule: `"step"` or `"cosine"`.
        schedule_epochs: length of the schedule (cosine period).
        epoch_offset: schedule epoch at which epoch 0 of this run sits
            (fine-tuning starts a third into the schedule).
        lr_step_epochs: period of the step schedule.
        lr_gamma: factor of the step schedule.
        mixed_precision: float16 compute with loss scaling (bfloat16 on
            TPU).
        checkpoint_every: save a checkpoint every this many steps (0: only
            at the end of each epoch).
        keep_checkpoints: how many checkpoints to keep.
        log_every: write training scalars to TensorBoard every this many
            steps.
        seed: seed of the data order (and, set by the caller, of the
            initial weights), from 0 to 2**32 - 1.
        verbose: 1 shows a progress bar per epoch, 0 nothing.
        run_info: more facts about the run for `run.json` (arch, data...);
            like the marked fields, they must not change when a run
            resumes (but for `strategy`).
        overwrite: start afresh where `out_dir` holds a run that this one
            cannot resume (other settings, or finished models without a
            checkpoint), deleting its files; by default that is an error.
            A checkpoint of the same settings still resumes.
    """

    out_dir: str
    epochs: int = _marked(EXTENDABLE)
    steps_per_epoch: int = _marked(FIXED)
    global_batch_size: int = _marked(FIXED)
    lr: float = _marked(FIXED)
    accum_steps: int = _marked(FIXED, default=1)
    momentum: float = _marked(FIXED, default=0.9)
    weight_decay: float = _marked(FIXED, default=1e-4)
    schedule: str = _marked(FIXED, default="step")
    schedule_epochs: int | None = _marked(EXTENDABLE, default=None)
    epoch_offset: int = _marked(FIXED, default=0)
    lr_step_epochs: int = _marked(FIXED, default=30)
    lr_gamma: float = _marked(FIXED, default=0.1)
    mixed_precision: bool = _marked(FIXED, default=False)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 20
    seed: int = _marked(FIXED, default=0)
    verbose: int = 1
    run_info: dict = dataclasses.field(default_factory=dict)
    overwrite: bool = False

    def __post_init__(self):
        for field in ("epochs", "steps_per_epoch", "global_batch_size",
                      "accum_steps", "keep_checkpoints", "log_every"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or (
                value < 1
            ):
                raise ValueError(
                    f"`{field}` must be a positive int. "
                    f"Received: {field}={value!r}"
                )
        if self.checkpoint_every < 0:
            raise ValueError(
                "`checkpoint_every` must be >= 0 (0: at epoch ends only). "
                f"Received: checkpoint_every={self.checkpoint_every!r}"
            )
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0. Received: lr={self.lr!r}")
        if max(self.schedule_length, self.epoch_offset + self.epochs) > (
            MAX_EPOCHS
        ):
            raise ValueError(
                f"The schedule must be at most {MAX_EPOCHS} (2**24) epochs "
                "long: the learning rate counts epochs in float32, exact up "
                f"to 2**24. Received: epochs={self.epochs!r}, "
                f"epoch_offset={self.epoch_offset!r}, "
                f"schedule_epochs={self.schedule_epochs!r}"
            )
        if self.total_steps > INT64_MAX:
            raise ValueError(
                "`epochs` x `steps_per_epoch` must be at most 2**63 - 1: the "
                "global step is an int64. Received: "
                f"epochs={self.epochs!r}, "
                f"steps_per_epoch={self.steps_per_epoch!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (
            0 <= self.seed <= MAX_SEED
        ):
            raise ValueError(
                f"`seed` must be an int from 0 to {MAX_SEED} (2**32 - 1, "
                "the range of NumPy's seeds). "
                f"Received: seed={self.seed!r}"
            )

    @property
    def effective_batch_size(self) -> int:
        """Images per optimizer step."""
        return self.global_batch_size * self.accum_steps

    @property
    def total_steps(self) -> int:
        """The global step at which the run ends."""
        return self.epochs * self.steps_per_epoch

    @property
    def schedule_length(self) -> int:
        """`schedule_epochs`, or by default the schedule that ends with the run."""
        return self.schedule_epochs or self.epoch_offset + self.epochs

    def learning_rate(self) -> LearningRate:
        """The schedule, as a function of the global step."""
        return LearningRate(
            lr=self.lr,
            steps_per_epoch=self.steps_per_epoch,
            schedule=self.schedule,
            schedule_epochs=self.schedule_length,
            epoch_offset=self.epoch_offset,
            lr_step_epochs=self.lr_step_epochs,
            lr_gamma=self.lr_gamma,
        )


def resume_fields(*markers: str) -> tuple[str, ...]:
    """The `TrainConfig` fields marked with one of `markers`.

    Args:
        *markers: `FIXED`, `EXTENDABLE`, or both; none means both.

    Returns:
        The names of the marked fields, in declaration order.

    Raises:
        ValueError: for a marker other than `FIXED` and `EXTENDABLE`.

    Example:

    >>> resume_fields(EXTENDABLE)
    ('epochs', 'schedule_epochs')
    """
    known = (FIXED, EXTENDABLE)
    for marker in markers:
        if marker not in known:
            raise ValueError(
                f"markers: {marker!r} is not a resume marker; expected "
                f"{' or '.join(map(repr, known))}"
            )
    wanted = markers or known
    return tuple(
        field.name
        for field in dataclasses.fields(TrainConfig)
        if field.metadata.get(RESUME) in wanted
    )
