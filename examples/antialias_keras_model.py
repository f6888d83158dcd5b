"""Anti-alias a model you already have, in one call.

Takes keras.applications MobileNetV3Small (random weights: nothing is
downloaded), makes its anti-aliased twin with
`keras_blurpool.antialias_model` and prints what was replaced and how far
each model's features move when the input is shifted by 1 to 7 pixels.
The twin has the same layers, names and weights — only its strided layers
now run at stride 1 and are followed by a blur pool.

    python examples/antialias_keras_model.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_blurpool  # noqa: E402

SIZE = 96  # the crop the models see
MARGIN = 8  # room for the shifts around it


def feature_change(model: keras.Model, images: np.ndarray) -> float:
    """Mean relative change of the features under 1-7 px diagonal shifts."""
    def crop(offset):
        return images[:, offset:offset + SIZE, offset:offset + SIZE]

    base = np.asarray(model(crop(0), training=False))
    changes = []
    for shift in range(1, MARGIN):
        out = np.asarray(model(crop(shift), training=False))
        changes.append(np.linalg.norm(out - base, axis=-1)
                       / np.linalg.norm(base, axis=-1))
    return float(np.mean(changes))


def main():
    keras.utils.set_random_seed(0)
    plain = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(SIZE, SIZE, 3), include_top=False,
        pooling="avg", include_preprocessing=False,
    )
    antialiased, report = keras_blurpool.antialias_model(plain, return_report=True)
    print(report)
    for kind, names in report.replaced.items():
        if names:
            print(f"  {kind}: {', '.join(names)}")
    print(f"parameters: {plain.count_params()} plain, "
          f"{antialiased.count_params()} anti-aliased")

    # Smooth random images, larger than the crop so that it can shift.
    rng = np.random.default_rng(0)
    small = rng.normal(size=(8, 13, 13, 3)).astype("float32")
    images = np.asarray(keras.ops.image.resize(small, (SIZE + MARGIN,) * 2))
    before = feature_change(plain, images)
    after = feature_change(antialiased, images)
    print("relative change of the pooled features under 1-7 px shifts")
    print(f"  MobileNetV3Small:              {before:.4f}")
    print(f"  antialias_model(...) of it:    {after:.4f}")


if __name__ == "__main__":
    main()
