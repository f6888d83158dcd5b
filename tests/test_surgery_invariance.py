"""keras.applications models made exactly invariant to circular shifts by
`antialias_model(model, antialias="aps")`: every offset of an 8x8 grid and
a few large ones, in one batch per model, change the pooled features by at
most 1e-5 relative; the same models after `antialias="blur"` change
visibly (the control). He-normal random kernels, randomised BatchNorm statistics; each check
also asserts that the output depends on the input.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_blurpool import antialias_model
from tests._invariance import GRID_SHIFTS
from tests._invariance import random_image
from tests._invariance import randomize_batchnorm
from tests._invariance import randomize_kernels
from tests._invariance import shift_changes

# Model -> input side: the smallest in 64-128 px divisible by the total
# stride (32) whose maps are large enough for the circular padding
# (ConvNeXt's 7x7 depthwise convs need a 3x3 last map: 96 px).
MODELS = {
    "ResNet50": 64,
    "ResNet50V2": 64,
    "MobileNetV2": 64,
    "MobileNetV3Small": 64,
    "EfficientNetB0": 64,
    "DenseNet121": 64,
    "ConvNeXtTiny": 96,
    "Xception": 96,
}
# Models that rescale [0, 255] pixels themselves; the others get [-1, 1].
PIXELS_0_255 = ("MobileNetV3Small", "EfficientNetB0", "ConvNeXtTiny")
CONTROL_SHIFTS = [(1, 0), (0, 1), (1, 1), (3, 5)]


def images(name, size, count=1, seed=0):
    """Random images in the pixel range the model expects."""
    batch = np.stack([random_image(size, seed=seed + i) for i in range(count)])
    return batch * 127.5 + 127.5 if name in PIXELS_0_255 else batch


# In float32 the random EfficientNetB0 amplifies rounding (its squeeze-
# and-excitation means sum the positions in another order after a shift)
# to about 5e-5: it is checked in float64, where rounding is 1e-16.
FLOAT64 = ("EfficientNetB0",)


def build(name, size):
    if name in FLOAT64:
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float64")
        try:
            return _build(name, size)
        finally:
            keras.config.set_dtype_policy(previous)
    return _build(name, size)


def _build(name, size):
    kwargs = {"weights": None, "include_top": False, "pooling": "avg",
              "input_shape": (size, size, 3)}
    if name.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = True
    model = getattr(keras.applications, name)(**kwargs)
    randomize_kernels(model)
    randomize_batchnorm(model, calibration=images(name, size, count=4, seed=1))
    return model


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    name = request.param
    size = MODELS[name]
    keras.utils.set_random_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keras.applications' own warnings
        model = build(name, size)
    return name, model, images(name, size)[0]


def test_aps_surgery_is_exactly_invariant(case):
    name, model, image = case
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing not invariant
        new, report = antialias_model(model, "aps", return_report=True)
    assert report.not_invariant == {}
    assert new.count_params() == model.count_params()
    changes = shift_changes(new, image, GRID_SHIFTS)
    assert changes.max() <= 1e-5, f"{name}: {changes.max():.3g}"


def test_blur_surgery_is_not_invariant(case):
    # The control: the paper's blur keeps zero padding and fixed sampling.
    name, model, image = case
    new = antialias_model(model, "blur", min_channels=0)
    changes = shift_changes(new, image, CONTROL_SHIFTS)
    assert changes.max() > 1e-4, f"{name}: {changes.max():.3g}"


def test_lps_surgery_is_exactly_invariant():
    keras.utils.set_random_seed(0)
    model = build("MobileNetV3Small", 64)
    new = antialias_model(model, "lps")
    image = images("MobileNetV3Small", 64)[0]
    changes = shift_changes(new, image, GRID_SHIFTS[::4])
    assert changes.max() <= 1e-5, changes.max()
