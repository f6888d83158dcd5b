"""Quick start: how much a one-pixel shift moves a CNN's output.

Builds the same small random CNN twice, once downsampling with strided
MaxPooling2D and once with MaxBlurPool2D (max at stride 1, blur, then
subsample), and measures how far the pooled output moves when the input is
shifted by one pixel. Anti-aliasing makes the network markedly more stable.

    python examples/quickstart.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_blurpool  # noqa: E402


def small_cnn(antialiased: bool, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)  # both models get the same conv weights
    inputs = keras.Input((None, None, 3))
    x = inputs
    for i, filters in enumerate((16, 32, 64)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                name=f"conv{i}")(x)
        if antialiased:
            x = keras_blurpool.MaxBlurPool2D(filter_size=4, name=f"pool{i}")(x)
        else:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="head")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def shift_change(model: keras.Model, images: np.ndarray) -> float:
    """Mean relative change of the output under 1-pixel shifts."""
    base = np.asarray(model(images[:, 1:-1, 1:-1]))
    changes = []
    for dy, dx in [(0, 1), (1, 0), (1, 1)]:
        h, w = images.shape[1:3]
        shifted = images[:, 1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
        out = np.asarray(model(shifted))
        changes.append(np.linalg.norm(out - base, axis=1)
                       / np.linalg.norm(base, axis=1))
    return float(np.mean(changes))


def main():
    rng = np.random.default_rng(0)
    # Smooth random images: noise blurred by a box filter, like natural images
    # having most of their energy at low frequencies.
    noise = rng.random((32, 72, 72, 3)).astype("float32")
    kernel = np.ones(5) / 5
    images = np.apply_along_axis(np.convolve, 1, noise, kernel, "same")
    images = np.apply_along_axis(np.convolve, 2, images, kernel, "same")
    images = images.astype("float32")
    baseline = shift_change(small_cnn(antialiased=False), images)
    antialiased = shift_change(small_cnn(antialiased=True), images)
    print("relative change of the output under a one-pixel shift")
    print(f"  MaxPooling2D (baseline):     {baseline:.3f}")
    print(f"  MaxBlurPool2D (antialiased): {antialiased:.3f}")
    print(f"  anti-aliasing reduces it {baseline / antialiased:.1f}x")


if __name__ == "__main__":
    main()
