"""The models of tests/test_backends.py, built alike on every backend.

Imported by that test on its backend (JAX or PyTorch) and by its
TensorFlow subprocess (`tensorflow_reference`), which writes TensorFlow's
logits, the checkpoints and the `.keras` file into a folder. Weights come
from `seed_weights`: a value per variable drawn from a generator seeded by
the variable's path, so both processes hold the same weights without
writing every network's weights to disk (VGG's are 0.5 GB).
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from collections.abc import Callable

import keras
import numpy as np

from keras_blurpool import antialias_model
from keras_blurpool import applications

SMALL, VGG_SIZE = 64, 96  # VGG and AlexNet: a 3x3 map into their 7x7/6x6 pool
SHIFT = (8, 24)  # the circular shift of the APS/LPS invariance test
CLASSES = 10
VGGS = ("VGG11", "VGG13", "VGG16", "VGG19", "VGG11BN", "VGG13BN", "VGG16BN", "VGG19BN")
# One member of every family: the reference's seven (ResNet, ResNeXt, Wide
# ResNet, VGG, DenseNet, MobileNetV2, AlexNet) and timm's three stems (7x7
# with blur, 7x7 with average pooling, the deep stem).
FAMILIES = (
    "ResNet18", "ResNeXt50_32x4d", "WideResNet50_2", "DenseNet121",
    "MobileNetV2", "AlexNet", "ResNetBlur18", "ResNetAA50", "ResNetAA34D",
)
CHECKPOINTS = ("resnet18.pth", "resnet18.safetensors")
KERAS_FILE = "resnet18.keras"


@dataclasses.dataclass(frozen=True)
class Case:
    """A network that both processes build and run on the same input.

    Attributes:
        build: `folder -> keras.Model` (folder holds the checkpoints).
        size: the input side.
        seeded: weights from `seed_weights` (else from the build itself).
        shifted: the batch is an image and its circular shift by `SHIFT`.
    """

    build: Callable[[str], keras.Model]
    size: int
    seeded: bool = True
    shifted: bool = False


def _builder(name, size, **kwargs):
    def build(folder):
        return getattr(applications, name)(
            input_shape=(size, size, 3), classes=CLASSES,
            classifier_activation=None, **kwargs,
        )

    return build


def _antialiased_keras_application(folder):
    model = keras.applications.MobileNetV2(
        input_shape=(VGG_SIZE, VGG_SIZE, 3), alpha=0.35, weights=None,
        classes=CLASSES, classifier_activation=None,
    )
    return antialias_model(model)


def _checkpoint(file_name):
    def build(folder):
        return applications.ResNet18(
            input_shape=(SMALL, SMALL, 3), classifier_activation=None,
            weights=os.path.join(folder, file_name),
        )

    return build


CASES = {
    **{name: Case(_builder(name, VGG_SIZE), VGG_SIZE) for name in VGGS},
    **{
        name: Case(_builder(name, VGG_SIZE if name == "AlexNet" else SMALL),
                   VGG_SIZE if name == "AlexNet" else SMALL)
        for name in FAMILIES
    },
    "antialias_model": Case(_antialiased_keras_application, VGG_SIZE),
    # filter_size=1: behind a blur the polyphase components of a random
    # network are nearly alike, and their scores tie within 1e-7 of each
    # other (measured at 64 px), closer than two backends' rounding: the
    # choice, and the logits, may then differ between backends. Unblurred,
    # the closest scores are 5e-4 apart here.
    **{
        f"ResNet18_{antialias}": Case(
            _builder("ResNet18", SMALL, antialias=antialias, padding="circular",
                     filter_size=1),
            SMALL, shifted=True,
        )
        for antialias in ("aps", "lps")
    },
    **{name: Case(_checkpoint(name), SMALL, seeded=False) for name in CHECKPOINTS},
}


def seed_weights(model: keras.Model) -> None:
    """Sets every weight of `model` from a generator seeded by its path.

    He-uniform kernels (fan-in from the layer: a depthwise kernel's is its
    window), biases and BatchNorm shifts in [-0.1, 0.1], BatchNorm scales
    and variances in [0.5, 1.5]: logits of a sane scale through every
    network. Scalars
    (LPS's temperature) keep their built value, a constant.
    """
    for layer in _leaf_layers(model):
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if not shape:
                continue
            rng = np.random.default_rng(zlib.crc32(variable.path.encode()))
            # float32 draws: VGG's 130 million weights in about a second.
            uniform = rng.random(shape, dtype=np.float32)
            if variable.name in ("gamma", "moving_variance"):
                value = uniform + 0.5
            elif variable.name in ("beta", "moving_mean", "bias"):
                value = (uniform - 0.5) * 0.2
            elif len(shape) >= 2:
                if isinstance(layer, keras.layers.DepthwiseConv2D):
                    fan_in = math.prod(shape[:-2])
                else:
                    fan_in = math.prod(shape[:-1])
                value = (uniform * 2 - 1) * np.float32(math.sqrt(6.0 / fan_in))
            else:
                raise ValueError(f"no seeded value for {variable.path} {shape}")
            variable.assign(value.astype(variable.dtype))


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def inputs(name: str) -> np.ndarray:
    """The batch of case `name`: 2 images, or an image and its shift."""
    case = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if case.shifted:
        image = rng.uniform(0, 1, (case.size, case.size, 3))
        batch = np.stack([image, np.roll(image, SHIFT, axis=(0, 1))])
    else:
        batch = rng.standard_normal((2, case.size, case.size, 3))
    return batch.astype("float32")


def build(name: str, folder) -> keras.Model:
    """Case `name`'s model with its weights."""
    case = CASES[name]
    keras.utils.set_random_seed(0)
    model = case.build(os.fspath(folder))
    if case.seeded:
        seed_weights(model)
    return model


def logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Inference logits; compiled on JAX, whose eager ops each compile."""
    if keras.backend.backend() == "jax":
        return keras.ops.convert_to_numpy(model.predict_on_batch(x))
    return keras.ops.convert_to_numpy(model(x, training=False))


def _write_checkpoints(folder) -> str | None:
    """The reference's ResNet-18 as `.pth` and `.safetensors`; why not."""
    try:
        import antialiased_cnns
        import safetensors.numpy
        import torch
    except ImportError as error:
        return f"torch, antialiased_cnns and safetensors are needed ({error})"
    from tests._torch_models import randomize_batchnorm

    torch.manual_seed(0)
    torch_model = randomize_batchnorm(torch, antialiased_cnns.resnet18(filter_size=4))
    state = torch_model.state_dict()
    torch.save(state, os.path.join(folder, CHECKPOINTS[0]))
    safetensors.numpy.save_file(
        {k: v.detach().numpy() for k, v in state.items()},
        os.path.join(folder, CHECKPOINTS[1]),
    )
    return None


def tensorflow_reference(folder) -> dict:
    """On TensorFlow: `<case>.npz` (`x`, `y`) for every case, the `.keras`
    file; `{"skipped": {case: reason}}`."""
    assert keras.backend.backend() == "tensorflow", keras.backend.backend()
    folder = os.fspath(folder)
    reason = _write_checkpoints(folder)
    skipped = {name: reason for name in CHECKPOINTS if reason}
    for name in CASES:
        if name in skipped:
            continue
        model = build(name, folder)
        x = inputs(name)
        np.savez(os.path.join(folder, f"{name}.npz"), x=x, y=logits(model, x))
        if name == "ResNet18":
            model.save(os.path.join(folder, KERAS_FILE))
        del model
        keras.backend.clear_session()
    return {"skipped": skipped}
