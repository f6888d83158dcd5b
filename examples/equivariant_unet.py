"""An exactly shift-equivariant U-Net: the segmentation map moves with the input.

A U-Net downsamples in its encoder and upsamples in its decoder. With
strided pooling and `UpSampling2D`, shifting the input by one pixel
changes the segmentation map by more than a shift: the pools keep the
pixels at even offsets, whatever moved there. Here the encoder
downsamples with `APSPool2D` (max at stride 1, blur, then the polyphase
component of largest norm), which returns its choice, and the decoder
upsamples with `APSUpSampling2D`, which puts each map back at the offset
its encoder level chose. With circular padding in every convolution, a
circular shift of the input by any `(dy, dx)` shifts the output by exactly
`(dy, dx)` (Chaman & Dokmanić, CVPR 2021, "APS-U").

The script builds this U-Net (two levels, 32x32 inputs, random weights)
and the same U-Net with `MaxPooling2D(2)` and `UpSampling2D(2)`, runs both
on all 1024 circular shifts of a 32x32 image, and prints how far each
output is from the shifted output of the unshifted image:

    python examples/equivariant_unet.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_blurpool  # noqa: E402

SIZE = 32  # input side; divisible by the total stride 4
CLASSES = 3


def conv_block(x, filters: int, name: str):
    """Two 3x3 convolutions with circular padding, each with a ReLU."""
    for i in (1, 2):
        x = keras_blurpool.CircularPadding2D(1, name=f"{name}_pad{i}")(x)
        x = keras.layers.Conv2D(
            filters, 3, activation="relu", name=f"{name}_conv{i}"
        )(x)
    return x


def down(x, equivariant: bool, name: str):
    """2x downsampling; returns `(outputs, index)` (index None if strided)."""
    if not equivariant:
        return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x), None
    # As the APS authors: max at stride 1 (circularly padded), then APS
    # with a blur of 3 taps; the layer returns the polyphase index it chose.
    x = keras_blurpool.CircularPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    x = keras.layers.MaxPooling2D(2, strides=1, name=f"{name}_max")(x)
    return keras_blurpool.APSPool2D(3, return_index=True, name=f"{name}_aps")(x)


def up(x, index, equivariant: bool, name: str):
    """2x upsampling at the offset its encoder level chose."""
    if not equivariant:
        return keras.layers.UpSampling2D(2, name=f"{name}_up")(x)
    return keras_blurpool.APSUpSampling2D(3, name=f"{name}_aps_up")(x, index)


def build_unet(equivariant: bool, seed: int = 0) -> keras.Model:
    """A two-level U-Net mapping `(32, 32, 3)` images to per-pixel logits.

    Args:
        equivariant: `APSPool2D` / `APSUpSampling2D` (True) or strided
            `MaxPooling2D` / `UpSampling2D` (False), all else equal.
        seed: the weights' seed (both variants get the same weights).

    Returns:
        A `keras.Model`, `(batch, 32, 32, 3) -> (batch, 32, 32, CLASSES)`.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    skip1 = conv_block(inputs, 8, "enc1")  # 32x32
    x, index1 = down(skip1, equivariant, "down1")
    skip2 = conv_block(x, 16, "enc2")  # 16x16
    x, index2 = down(skip2, equivariant, "down2")
    x = conv_block(x, 32, "bottom")  # 8x8
    x = up(x, index2, equivariant, "up2")
    x = keras.layers.Concatenate(name="cat2")([skip2, x])
    x = conv_block(x, 16, "dec2")
    x = up(x, index1, equivariant, "up1")
    x = keras.layers.Concatenate(name="cat1")([skip1, x])
    x = conv_block(x, 8, "dec1")
    outputs = keras.layers.Conv2D(CLASSES, 1, name="logits")(x)
    return keras.Model(inputs, outputs, name="aps_unet" if equivariant else "unet")


def all_shifts(size: int = SIZE):
    """Every circular shift `(dy, dx)` of a `size` x `size` map."""
    return [(dy, dx) for dy in range(size) for dx in range(size)]


def equivariance_errors(model, image, shifts, batch_size: int = 256):
    """Per shift, `max |model(shift(image)) - shift(model(image))|`,
    relative to the largest output value.

    Args:
        model: an image-to-image model.
        image: one `(H, W, C)` image.
        shifts: `(dy, dx)` circular shifts.
        batch_size: images per `predict` batch.

    Returns:
        A float array of one error per shift.
    """
    reference = model.predict(image[None], verbose=0)[0]
    scale = np.abs(reference).max()
    errors = []
    for start in range(0, len(shifts), batch_size):
        chunk = shifts[start:start + batch_size]
        batch = np.stack([np.roll(image, s, axis=(0, 1)) for s in chunk])
        outputs = model.predict(batch, batch_size=batch_size, verbose=0)
        for s, out in zip(chunk, outputs):
            expected = np.roll(reference, s, axis=(0, 1))
            errors.append(np.abs(out - expected).max() / scale)
    return np.array(errors)


def main():
    image = np.random.default_rng(0).random((SIZE, SIZE, 3)).astype("float32")
    shifts = all_shifts()
    print(f"all {len(shifts)} circular shifts of a {SIZE}x{SIZE} image")
    for equivariant in (True, False):
        model = build_unet(equivariant)
        errors = equivariance_errors(model, image, shifts)
        moved = int((errors <= 1e-5).sum())
        print(
            f"{model.name:9s} output moves exactly with the input for "
            f"{moved} of {len(shifts)} shifts; largest relative error "
            f"{errors.max():.2e}"
        )


if __name__ == "__main__":
    main()
