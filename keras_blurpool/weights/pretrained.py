"""Pretrained ImageNet weights of the reference, fetched and converted once.

`weights="imagenet"` on a builder of `keras_blurpool.applications` comes
here: the checkpoint released by the reference for that architecture and
filter size is fetched, its SHA-256 checked against the prefix its file
name carries (`resnet50_lpf4_finetune-cad66808.pth`), read without PyTorch
(`read_torch_checkpoint`), loaded into the full 1000-class model and saved
as a Keras `.weights.h5` file in the Keras cache directory
(`$KERAS_HOME/models/keras_blurpool/`, `~/.keras/...` by default). Later
loads read that file only: they are fast and work offline. The downloaded
checkpoint itself is never kept.

The converted weights, like the released ones, are under the reference's
CC BY-NC-SA 4.0 licence (non-commercial).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request

import numpy as np

from keras_blurpool.weights.torch_checkpoint import read_torch_checkpoint
from keras_blurpool.weights.torch_state_dict import load_torch_weights

BASE_URL = "https://antialiased-cnns.s3.us-east-2.amazonaws.com/weights_v0.1/"

# The checkpoints released by the reference (its `model_urls` tables), as
# `(architecture, filter_size) -> file name` under `BASE_URL`. As in the
# reference, filter size 4 maps to the *fine-tuned* checkpoint (an
# antialiased network fine-tuned from the torchvision baseline, the best
# of the two); `IMAGENET_WEIGHTS_FROM_SCRATCH` holds the filter-4 networks
# trained from scratch (the reference's `_force_nonfinetuned=True`).
# ResNet-18/34/50/101, VGG-16 (with and without BatchNorm), DenseNet-121,
# MobileNetV2 and AlexNet were released at filter sizes 2, 3, 4 and 5;
# every other architecture at filter size 4 only. Nothing was released
# for the plain networks (their weights are torchvision's). Tests replace
# entries with `file://` URLs: a value holding "://" is a full URL.
IMAGENET_WEIGHTS: dict[tuple[str, int], str] = {
    # ResNet family.
    ("resnet18", 2): "resnet18_lpf2-6e2ee76f.pth",
    ("resnet18", 3): "resnet18_lpf3-449351b9.pth",
    ("resnet18", 4): "resnet18_lpf4_finetune-8cc58f59.pth",
    ("resnet18", 5): "resnet18_lpf5-c1eed0a1.pth",
    ("resnet34", 2): "resnet34_lpf2-4707aed9.pth",
    ("resnet34", 3): "resnet34_lpf3-16aa6c48.pth",
    ("resnet34", 4): "resnet34_lpf4_finetune-db622952.pth",
    ("resnet34", 5): "resnet34_lpf5-85283561.pth",
    ("resnet50", 2): "resnet50_lpf2-f0f7589d.pth",
    ("resnet50", 3): "resnet50_lpf3-a4e868d2.pth",
    ("resnet50", 4): "resnet50_lpf4_finetune-cad66808.pth",
    ("resnet50", 5): "resnet50_lpf5-9953c9ad.pth",
    ("resnet101", 2): "resnet101_lpf2-3d00941d.pth",
    ("resnet101", 3): "resnet101_lpf3-928f1444.pth",
    ("resnet101", 4): "resnet101_lpf4_finetune-9280acb0.pth",
    ("resnet101", 5): "resnet101_lpf5-1f3745af.pth",
    ("resnet152", 4): "resnet152_lpf4_finetune-7f67d9ae.pth",
    ("resnext50_32x4d", 4): "resnext50_32x4d_lpf4_finetune-9106e549.pth",
    ("resnext101_32x8d", 4): "resnext101_32x8d_lpf4_finetune-8f13a25d.pth",
    ("wide_resnet50_2", 4): "wide_resnet50_2_lpf4_finetune-02a183f7.pth",
    ("wide_resnet101_2", 4): "wide_resnet101_2_lpf4_finetune-da4eae04.pth",
    # VGG family.
    ("vgg11", 4): "vgg11_lpf4_finetune-35eab449.pth",
    ("vgg11_bn", 4): "vgg11_bn_lpf4_finetune-5d60b5e4.pth",
    ("vgg13", 4): "vgg13_lpf4_finetune-d8ff02c4.pth",
    ("vgg13_bn", 4): "vgg13_bn_lpf4_finetune-45e2a72f.pth",
    ("vgg16", 2): "vgg16_lpf2-60268e0c.pth",
    ("vgg16", 3): "vgg16_lpf3-e9b0ce42.pth",
    ("vgg16", 4): "vgg16_lpf4_finetune-79c9dff7.pth",
    ("vgg16", 5): "vgg16_lpf5-1391f70c.pth",
    ("vgg16_bn", 2): "vgg16_bn_lpf2-2c2052a8.pth",
    ("vgg16_bn", 3): "vgg16_bn_lpf3-1782878a.pth",
    ("vgg16_bn", 4): "vgg16_bn_lpf4_finetune-1dd798d1.pth",
    ("vgg16_bn", 5): "vgg16_bn_lpf5-c500b52f.pth",
    ("vgg19", 4): "vgg19_lpf4_finetune-7ab2cf45.pth",
    ("vgg19_bn", 4): "vgg19_bn_lpf4_finetune-d0114293.pth",
    # DenseNet family.
    ("densenet121", 2): "densenet121_lpf2-7da7d4cd.pth",
    ("densenet121", 3): "densenet121_lpf3-0f267ad8.pth",
    ("densenet121", 4): "densenet121_lpf4_finetune-eceaa619.pth",
    ("densenet121", 5): "densenet121_lpf5-ebc7880c.pth",
    ("densenet161", 4): "densenet161_lpf4_finetune-a5e0f328.pth",
    ("densenet169", 4): "densenet169_lpf4_finetune-992131e6.pth",
    ("densenet201", 4): "densenet201_lpf4_finetune-736979b2.pth",
    # MobileNetV2 and AlexNet.
    ("mobilenet_v2", 2): "mobilenet_v2_lpf2-f4379012.pth",
    ("mobilenet_v2", 3): "mobilenet_v2_lpf3-23b2e2ee.pth",
    ("mobilenet_v2", 4): "mobilenet_v2_lpf4_finetune-7eed94b1.pth",
    ("mobilenet_v2", 5): "mobilenet_v2_lpf5-ab8fe968.pth",
    ("alexnet", 2): "alexnet_lpf2-da8aca74.pth",
    ("alexnet", 3): "alexnet_lpf3-f9bbc410.pth",
    ("alexnet", 4): "alexnet_lpf4_finetune-20598a7a.pth",
    ("alexnet", 5): "alexnet_lpf5-4fa3706a.pth",
}

# Filter-4 networks trained from scratch, the reference's
# `_force_nonfinetuned=True` (see `get_imagenet_weights(fine_tuned=False)`).
IMAGENET_WEIGHTS_FROM_SCRATCH: dict[tuple[str, int], str] = {
    ("resnet18", 4): "resnet18_lpf4-8c77af40.pth",
    ("resnet34", 4): "resnet34_lpf4-55747267.pth",
    ("resnet50", 4): "resnet50_lpf4-994b528f.pth",
    ("resnet101", 4): "resnet101_lpf4-f8a116ff.pth",
    ("vgg16", 4): "vgg16_lpf4-de9267ac.pth",
    ("vgg16_bn", 4): "vgg16_bn_lpf4-a1c3559b.pth",
    ("densenet121", 4): "densenet121_lpf4-edeaab00.pth",
    ("mobilenet_v2", 4): "mobilenet_v2_lpf4-2e0b9cb9.pth",
    ("alexnet", 4): "alexnet_lpf4-0114fe25.pth",
}

# Reference architecture name -> public builder of
# `keras_blurpool.applications`.
ARCHITECTURES: dict[str, str] = {
    "resnet18": "ResNet18",
    "resnet34": "ResNet34",
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnext50_32x4d": "ResNeXt50_32x4d",
    "resnext101_32x8d": "ResNeXt101_32x8d",
    "wide_resnet50_2": "WideResNet50_2",
    "wide_resnet101_2": "WideResNet101_2",
    "vgg11": "VGG11",
    "vgg11_bn": "VGG11BN",
    "vgg13": "VGG13",
    "vgg13_bn": "VGG13BN",
    "vgg16": "VGG16",
    "vgg16_bn": "VGG16BN",
    "vgg19": "VGG19",
    "vgg19_bn": "VGG19BN",
    "densenet121": "DenseNet121",
    "densenet161": "DenseNet161",
    "densenet169": "DenseNet169",
    "densenet201": "DenseNet201",
    "mobilenet_v2": "MobileNetV2",
    "alexnet": "AlexNet",
}

# `pool_only` of the released networks: the reference's defaults, which
# are also our builders' defaults.
_RELEASED_POOL_ONLY = {"alexnet": False}

# Module names of the classifier in the reference's state dicts: ResNets
# have `fc`, every other family a `classifier` Sequential.
_HEAD_PREFIXES = ("fc.", "classifier.")

# Old DenseNet checkpoints (all the released ones) spell `norm.1` where
# the modules are now `norm1`; the reference renames them on loading.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
_CHUNK = 1 << 20


def _released(arch: str, filter_size, fine_tuned: bool) -> str | None:
    table = IMAGENET_WEIGHTS
    if not fine_tuned and (arch, filter_size) in IMAGENET_WEIGHTS_FROM_SCRATCH:
        table = IMAGENET_WEIGHTS_FROM_SCRATCH
    return table.get((arch, filter_size))


def check_imagenet_available(
    arch: str, filter_size, *, pool_only=None
) -> None:
    """Raises unless the reference released weights for this network.

    Args:
        arch: reference architecture name, e.g. `"resnet50"`.
        filter_size: the builder's `filter_size`.
        pool_only: the builder's `pool_only`, or None for architectures
            without one.

    Raises:
        ValueError: for an unknown architecture, `filter_size=None`, a
            filter size never released for `arch` (the message lists the
            released ones) or a `pool_only` other than the released one.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"No pretrained weights for architecture {arch!r}. Known: "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    sizes = sorted(size for name, size in IMAGENET_WEIGHTS if name == arch)
    if filter_size is None:
        raise ValueError(
            "`weights='imagenet'` needs an antialiased network: the "
            "reference released no weights for the plain one (those are "
            "torchvision's; pass the path of a torchvision `.pth` file as "
            f"`weights` instead). Received: filter_size=None for {arch!r}; "
            f"released filter sizes: {sizes}"
        )
    if (arch, filter_size) not in IMAGENET_WEIGHTS:
        raise ValueError(
            f"The reference released no ImageNet weights for {arch!r} with "
            f"filter_size={filter_size!r}. Released filter sizes for "
            f"{arch!r}: {sizes}"
        )
    released_pool_only = _RELEASED_POOL_ONLY.get(arch, True)
    if pool_only is not None and pool_only != released_pool_only:
        raise ValueError(
            f"The released ImageNet weights of {arch!r} are for "
            f"pool_only={released_pool_only}. Received: pool_only={pool_only!r}"
        )


def cache_dir() -> str:
    """Directory of the converted weights, created if needed.

    `$KERAS_HOME/models/keras_blurpool`, or `~/.keras/models/keras_blurpool`;
    read at every call (not at import) so that `KERAS_HOME` can be set late.
    Falls back to `/tmp/.keras/...` when the home directory is not
    writable, as Keras does.

    Returns:
        The directory path.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    path = os.path.join(home, "models", "keras_blurpool")
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(path)
    except OSError:
        path = os.path.join(
            tempfile.gettempdir(), ".keras", "models", "keras_blurpool"
        )
        os.makedirs(path, exist_ok=True)
    return path


def _origin(file_name: str) -> str:
    return file_name if "://" in file_name else BASE_URL + file_name


def _file_name(origin: str) -> str:
    return os.path.basename(urllib.parse.urlparse(origin).path)


def _expected_hash(file_name: str) -> str:
    match = _HASH_IN_NAME.search(file_name)
    if match is None:
        raise ValueError(
            f"Checkpoint file name {file_name!r} carries no SHA-256 prefix "
            "(expected `name-<hex>.pth`)"
        )
    return match.group(1)


def _download(origin: str, destination: str) -> str:
    """Copies `origin` (http(s), file://) to `destination`; returns SHA-256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(origin) as response, open(
            destination, "wb"
        ) as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except OSError as error:  # URLError is an OSError
        raise ValueError(
            f"Could not fetch the pretrained weights from {origin} "
            f"({error}). Once converted they are cached in {cache_dir()}; "
            "offline, download the file elsewhere and pass its path as "
            "`weights`."
        ) from error
    return digest.hexdigest()


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def prepare_state_dict(state_dict: dict, *, include_top: bool) -> dict:
    """Adapts a reference state dict to a builder's model.

    Renames the old DenseNet keys (`norm.1` -> `norm1`) as the reference
    does, and drops the classifier (`fc.*`, `classifier.*`) when the model
    has no top.

    Args:
        state_dict: PyTorch names to arrays.
        include_top: whether the target model has its classifier.

    Returns:
        A new dict.
    """
    prepared = {}
    for key, value in state_dict.items():
        match = _DENSENET_OLD_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        if not include_top and key.startswith(_HEAD_PREFIXES):
            continue
        prepared[key] = value
    return prepared


def _build_full(arch: str, filter_size: int):
    """The released network: include_top, 1000 classes, default pool_only."""
    from keras_blurpool import applications

    builder = getattr(applications, ARCHITECTURES[arch])
    return builder(
        include_top=True,
        weights=None,
        classes=1000,
        classifier_activation=None,
        filter_size=filter_size,
    )


def get_imagenet_weights(
    arch: str, filter_size: int = 4, *, fine_tuned: bool = True
) -> str:
    """Path of the converted ImageNet weights, fetching them if needed.

    The first call downloads the reference's checkpoint, checks its
    SHA-256 prefix, converts it into a full 1000-class model and writes
    `<checkpoint name>.weights.h5` atomically into `cache_dir()`; the
    checkpoint is then deleted. Later calls only return the cached path.

    Args:
        arch: reference architecture name, e.g. `"resnet50"`.
        filter_size: 2, 3, 4 or 5 where released (see `IMAGENET_WEIGHTS`).
        fine_tuned: at filter size 4, `True` (the reference's default)
            picks the network fine-tuned from the baseline, `False` the one
            trained from scratch where it exists.

    Returns:
        Path of a Keras `.weights.h5` file for the full model of `arch`.

    Raises:
        ValueError: for combinations never released, a download failure,
            a file whose SHA-256 does not match its name, or a corrupted
            or truncated checkpoint. Nothing is left in the cache then.

    Example:

    >>> path = get_imagenet_weights("resnet50", 4)
    >>> ResNet50(filter_size=4).load_weights(path)
    """
    check_imagenet_available(arch, filter_size)
    origin = _origin(_released(arch, filter_size, fine_tuned))
    file_name = _file_name(origin)
    expected = _expected_hash(file_name)
    stem = file_name.split(".", 1)[0]
    directory = cache_dir()
    target = os.path.join(directory, f"{stem}.weights.h5")
    if os.path.isfile(target):
        return target

    # Everything is written under temporary names in the cache directory
    # (same file system, so os.replace is atomic) and removed on any
    # failure: a cached file is always complete and verified.
    fd, checkpoint = tempfile.mkstemp(
        prefix=f".{stem}-", suffix=".pth.part", dir=directory
    )
    os.close(fd)
    fd, partial = tempfile.mkstemp(
        prefix=f".{stem}-", suffix=".weights.h5", dir=directory
    )
    os.close(fd)
    try:
        actual = _download(origin, checkpoint)
        if not actual.startswith(expected):
            raise ValueError(
                f"The file fetched from {origin} is corrupted: its SHA-256 "
                f"is {actual}, the file name says {expected}..."
            )
        try:
            raw = read_torch_checkpoint(checkpoint)
        except ValueError as error:
            # The reader names the temporary file; name the origin instead.
            raise ValueError(
                f"The checkpoint fetched from {origin} cannot be read: "
                f"{str(error).split(': ', 1)[-1]}"
            ) from error
        state_dict = prepare_state_dict(raw, include_top=True)
        model = _build_full(arch, filter_size)
        load_torch_weights(model, state_dict)
        # save_weights wants the `.weights.h5` suffix and overwrites.
        model.save_weights(partial, overwrite=True)
        publish(partial, target)
    finally:
        _remove_quietly(checkpoint)
        _remove_quietly(partial)
    return target


def publish(partial: str, target: str) -> None:
    """Atomically renames a finished temporary file to `target`.

    `tempfile.mkstemp` creates files readable by their owner only; give
    the result the permissions an ordinary new file gets (umask applied).

    Args:
        partial: the finished temporary file, in `target`'s directory.
        target: the final path.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)
    os.replace(partial, target)


def _copy_by_name(source, target) -> None:
    """Copies the weights of every weighted layer of `target` from `source`."""
    layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        other = layers.get(layer.name)
        if other is None or len(other.weights) != len(layer.weights):
            raise ValueError(
                f"Layer '{layer.name}' of model '{target.name}' has no "
                "counterpart in the pretrained network"
            )
        for variable, value in zip(layer.weights, other.weights):
            variable.assign(np.asarray(value))


def load_imagenet_weights(
    model, arch: str, filter_size: int, *, include_top: bool
) -> None:
    """Loads the reference's ImageNet weights into a builder's model.

    Args:
        model: built by the builder of `arch` with `filter_size`.
        arch: reference architecture name.
        filter_size: the model's filter size.
        include_top: whether the model has its 1000-class classifier.
    """
    path = get_imagenet_weights(arch, filter_size)
    if include_top:
        model.load_weights(path)
        return
    # The cached file holds the full network; the headless model is the
    # same graph minus the head, so copy layer by layer.
    full = _build_full(arch, filter_size)
    full.load_weights(path)
    _copy_by_name(full, model)


def load_checkpoint_weights(model, path, *, include_top: bool) -> None:
    """Loads a PyTorch checkpoint of the reference into a builder's model.

    Args:
        model: a model of `keras_blurpool.applications`.
        path: `.pth` / `.pth.tar` / `.pt` file (either torch format).
        include_top: whether the model has its classifier; if not, the
            checkpoint's classifier is ignored.
    """
    state_dict = prepare_state_dict(
        read_torch_checkpoint(path), include_top=include_top
    )
    load_torch_weights(model, state_dict)


def infer_filter_size(state_dict) -> int | None:
    """Filter size of the BlurPool `filt` buffers of a state dict.

    Args:
        state_dict: PyTorch names to arrays.

    Returns:
        The size `k` of the `(C, 1, k, k)` buffers, or None when there are
        none (a plain network, or a checkpoint saved without buffers).

    Raises:
        ValueError: if the buffers disagree on the size.
    """
    sizes = {
        int(np.shape(value)[-1])
        for key, value in state_dict.items()
        if key.endswith(".filt") and np.ndim(value) == 4
    }
    if len(sizes) > 1:
        raise ValueError(
            f"The checkpoint mixes BlurPool filter sizes {sorted(sizes)}"
        )
    return sizes.pop() if sizes else None
