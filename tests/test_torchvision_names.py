"""Torchvision-named baseline checkpoints load into antialiased models.

BlurPool has no parameters, so a plain network's state_dict (torchvision's
names, e.g. `layer2.0.conv1.weight`, `features.3.weight`) fits the
antialiased twin: the way the paper fine-tunes from baseline weights.
"""

import numpy as np
import pytest

import keras_blurpool
from keras_blurpool import applications
from tests.conftest import numpy_state_dict
from tests.conftest import randomize_batchnorm
from tests.test_densenet_mobilenet import _as_torchvision_mobilenet
from tests.test_resnet import _as_torchvision
from tests.test_vgg_alexnet import torchvision_baseline


def _torchvision_model(torch, aa, arch):
    torch.manual_seed(0)
    if arch == "resnet18":
        return _as_torchvision(torch, aa.resnet18(filter_size=1))
    if arch == "mobilenet_v2":
        return _as_torchvision_mobilenet(torch, aa, aa.mobilenet_v2(filter_size=1))
    if arch == "alexnet":
        model = aa.alexnet(filter_size=1, pool_only=True)
        return torchvision_baseline(torch, model, relu_after_conv1=True)
    return torchvision_baseline(torch, getattr(aa, arch)(filter_size=1))


@pytest.mark.parametrize("arch,builder", [
    ("resnet18", applications.ResNet18),
    ("mobilenet_v2", applications.MobileNetV2),
    ("vgg11_bn", applications.VGG11BN),
    ("alexnet", applications.AlexNet),
])
def test_torchvision_checkpoint_into_antialiased_model(reference, arch, builder):
    torch, aa = reference
    tv_model = randomize_batchnorm(torch, _torchvision_model(torch, aa, arch))
    state = numpy_state_dict(tv_model)
    assert not any(k.endswith(".filt") for k in state)

    baseline = keras_blurpool.load_torch_weights(builder(filter_size=None), state)
    antialiased = keras_blurpool.load_torch_weights(builder(filter_size=4), state)
    # Same numbers as loading the baseline and transferring (the reference's
    # copy_params_buffers), and the baseline itself equals torchvision.
    by_path = {w.path: np.asarray(w) for w in antialiased.weights}
    for w in baseline.weights:
        np.testing.assert_array_equal(by_path[w.path], np.asarray(w))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("float32")
    with torch.no_grad():
        expected = torch.softmax(tv_model(torch.from_numpy(x)), -1).numpy()
    got = np.asarray(baseline(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(got, expected, atol=1e-5)
