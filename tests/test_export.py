"""Export for deployment: an anti-aliased network stays deploy-sized.

BlurPool2D's inference route is the padded one (pad + depthwise
convolution), so a TFLite conversion adds at most a few operations per
BlurPool2D and none of the "same" route's gathers and scatters, which GPU,
NNAPI and EdgeTPU delegates handle badly or not at all.
"""

import collections
import os

import keras
import numpy as np
import pytest

from keras_blurpool import BlurPool2D
from keras_blurpool.applications import ResNet18

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="LiteRT (TFLite) export is TensorFlow's",
    ),
    pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated"),
]

SIZE = 64


def _export(model, directory):
    """The model as a LiteRT flatbuffer: (op-name counts, interpreter)."""
    import tensorflow as tf

    path = os.path.join(str(directory), f"{model.name}.tflite")
    model.export(path, format="litert", verbose=False)
    # Without XNNPACK, which would replace runs of ops by DELEGATE nodes:
    # the counts are the flatbuffer's own operations.
    interpreter = tf.lite.Interpreter(
        model_path=path,
        experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        ),
    )
    interpreter.allocate_tensors()
    ops = collections.Counter(
        op["op_name"] for op in interpreter._get_ops_details()
    )
    return ops, interpreter


def _blurpools(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, BlurPool2D)
    ]


def test_exported_resnet18_adds_at_most_four_ops_per_blurpool(tmp_path):
    keras.utils.set_random_seed(0)
    plain = ResNet18(weights=None, input_shape=(SIZE, SIZE, 3),
                     classes=10, filter_size=None, name="plain")
    antialiased = ResNet18(weights=None, input_shape=(SIZE, SIZE, 3),
                           classes=10, filter_size=4, name="antialiased")
    blurpools = _blurpools(antialiased)
    # The stem's MaxBlurPool2D and one per downsampling block and shortcut.
    assert len(blurpools) == 7
    assert not _blurpools(plain)

    plain_ops, _ = _export(plain, tmp_path)
    ops, interpreter = _export(antialiased, tmp_path)
    total, plain_total = sum(ops.values()), sum(plain_ops.values())
    assert total <= plain_total + 4 * len(blurpools), (ops, plain_ops)
    # None of the training route's border corrections.
    assert not {name for name in ops if "GATHER" in name or "SCATTER" in name}, ops
    # Each BlurPool2D is one padding and one depthwise convolution.
    assert ops["DEPTHWISE_CONV_2D"] - plain_ops["DEPTHWISE_CONV_2D"] == 7, ops

    # The converted network computes what the Keras model does.
    x = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3))
    x = x.astype("float32")
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(out["index"]),
        keras.ops.convert_to_numpy(antialiased(x, training=False)),
        rtol=1e-4, atol=1e-5,
    )
