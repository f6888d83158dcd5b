"""keras-blurpool-convert builds nothing larger than the checkpoint holds,
and every bad checkpoint ends in its clean `error:` line.

An 85-byte safetensors file whose `fc.weight` has shape `[500000, 0]`
had a 500,000-class ResNet built (3.98 GB) before "does not fit";
`[10**7, 0]` ended in a ResourceExhaustedError traceback; a key such as
`fc.²` or a classifier of zero classes were tracebacks too.
"""

import dataclasses

import numpy as np
import pytest

from keras_blurpool import convert
from keras_blurpool.applications import registry
from tests.test_safetensors import write_state_dict


@pytest.fixture()
def built(monkeypatch):
    """The `classes` of every model the converter builds for resnetblur18."""
    classes = []
    spec = registry.get("resnetblur18")

    def builder(**kwargs):
        classes.append(kwargs["classes"])
        return spec.builder(**kwargs)

    monkeypatch.setitem(
        registry._REGISTRY, "resnetblur18", dataclasses.replace(spec, builder=builder)
    )
    return classes


def _convert(tmp_path, state):
    path = write_state_dict(tmp_path / "c.safetensors", state)
    out = tmp_path / "o.weights.h5"
    with pytest.raises(SystemExit) as info:
        convert.main(["resnetblur18", str(path), str(out), "--no-compare"])
    assert not out.exists()
    return str(info.value.code)


@pytest.mark.parametrize("shape", [(500_000, 0), (10**7, 0), (2_000, 7)])
def test_a_class_count_bomb_is_refused_before_its_model_is_built(
        tmp_path, built, shape):
    message = _convert(tmp_path, {"fc.weight": np.zeros(shape, "float32")})
    assert message.startswith("error: the checkpoint's classifier 'fc.weight' "
                              f"has shape {shape}"), message
    assert "classifier takes 512 inputs" in message
    # Only the one-class model that tells the classifier's inputs.
    assert built == [1]


def test_a_classifier_the_file_pays_for_is_built(tmp_path, built):
    # 1,500 classes of 512 inputs: the file holds the 3 MB the model needs.
    message = _convert(
        tmp_path, {"fc.weight": np.zeros((1500, 512), "float32")}
    )
    assert built == [1, 1500]
    assert "does not fit model" in message and "missing key 'conv1.weight'" in message


@pytest.mark.parametrize("state,expected", [
    ({"fc.\u00b2.weight": np.zeros((3, 2), "float32")},
     "unexpected key 'fc.\u00b2.weight'"),
    ({"fc.weight": np.zeros((0, 512), "float32")},
     "error: the checkpoint's classifier 'fc.weight' has shape (0, 512): "
     "no classes"),
])
def test_odd_classifiers_are_clean_errors(tmp_path, built, state, expected):
    assert expected in _convert(tmp_path, state)
