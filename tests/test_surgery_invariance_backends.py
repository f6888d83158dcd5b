"""`antialias_model(model, antialias="aps")` on JAX and PyTorch: ResNet50
and MobileNetV2 of keras.applications stay exactly invariant to circular
shifts. (On TensorFlow tests/test_surgery_invariance.py covers these and
six more; CI runs this file in its JAX and PyTorch stages.)"""

import keras
import pytest

from keras_blurpool import antialias_model
from tests._invariance import GRID_SHIFTS
from tests._invariance import shift_changes
from tests.test_surgery_invariance import build
from tests.test_surgery_invariance import images

pytestmark = pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="TensorFlow: tests/test_surgery_invariance.py",
)


@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2"])
def test_aps_surgery_is_exactly_invariant_on_this_backend(name):
    keras.utils.set_random_seed(0)
    model = build(name, 64)
    new = antialias_model(model, "aps")
    # Every third shift: 22 offsets of the 8x8 grid and (45, 50).
    changes = shift_changes(new, images(name, 64)[0], GRID_SHIFTS[::3])
    assert changes.max() <= 1e-5, changes.max()
