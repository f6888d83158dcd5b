"""What the paper measures, for any Keras classifier and dataset.

`accuracy`, `shift_consistency` (two random crops agree), `diagonal_shift`
(predictions along a diagonal shift, with `plot_diagonal_shift`) and
`circular_shift_consistency` (two circular shifts agree); beyond the
paper, `adversarial_shift_accuracy` (right under every shift of a grid,
with `plot_adversarial_shift`), `fractional_shift_consistency` (sub-pixel
shifts, Fourier or bilinear) and `translation_flip_rate` (ImageNet-P's
flip probability along a translation). All stream the
dataset in batches, run under the active `tf.distribute` strategy, and
show a progress bar. `eval_settings(arch, tag)` gives each released
network's own validation preprocessing (timm's: bicubic, its crop_pct).
"""

# The package streams datasets with tf.data (under any Keras backend), so it
# needs TensorFlow installed, which the core package does not require.
try:
    import tensorflow  # noqa: F401
except ImportError as error:
    raise ImportError(
        "keras_blurpool.evaluation streams datasets with tf.data and needs "
        "TensorFlow installed (it runs under any Keras backend): "
        "pip install 'keras-blurpool[tensorflow]'"
    ) from error

from keras_blurpool.evaluation.accuracy import accuracy
from keras_blurpool.evaluation.adversarial import adversarial_shift_accuracy
from keras_blurpool.evaluation.adversarial import plot_adversarial_shift
from keras_blurpool.evaluation.consistency import circular_shift_consistency
from keras_blurpool.evaluation.consistency import shift_consistency
from keras_blurpool.evaluation.diagonal import DiagonalShiftResult
from keras_blurpool.evaluation.diagonal import diagonal_shift
from keras_blurpool.evaluation.diagonal import plot_diagonal_shift
from keras_blurpool.evaluation.flip_rate import translation_flip_rate
from keras_blurpool.evaluation.fractional import fractional_shift_consistency
from keras_blurpool.evaluation.settings import eval_settings

__all__ = [
    "DiagonalShiftResult",
    "accuracy",
    "adversarial_shift_accuracy",
    "circular_shift_consistency",
    "diagonal_shift",
    "eval_settings",
    "fractional_shift_consistency",
    "plot_adversarial_shift",
    "plot_diagonal_shift",
    "shift_consistency",
    "translation_flip_rate",
]
