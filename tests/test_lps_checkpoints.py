"""The LPS authors' ResNet checkpoints load into `antialias="lps"` ResNets.

Their code (github.com/raymondyeh07/learnable_polyphase_sampling) is not
installable (no setup.py or pyproject; torch 1.9 and PyTorch Lightning
1.4 pinned), so it cannot be built here. These tests instead write a
state dict in the layout their `ResNetCustom` saves (keys under `core.`,
every LPS layer a `component_selection.get_logits` scoring network, a
`gumbel_tau` buffer and an `_antialias_layer.filt` blur, the stem's
max pool a `Sequential(LPS, pad, MaxPool2d(2, 1), LPS)`), and compare our
loaded network with a small PyTorch implementation of their forward pass
(circular convolutions; at inference each LPS keeps the component whose
mean score is largest, the shortcut the same one).
"""

import math

import numpy as np
import pytest

from keras_blurpool import applications

K = 2  # their ResNet18_LPS_LPF2_circular_basic: binomial filter of 2
WIDTHS = (64, 128, 256, 512)


def _binomial(channels, k):
    taps = np.array([math.comb(k - 1, i) for i in range(k)], "float64")
    kernel = np.outer(taps, taps) / taps.sum() ** 2
    return np.broadcast_to(kernel, (channels, 1, k, k)).astype("float32")


def _authors_resnet18_state_dict(classes=10, seed=0):
    """Keys and shapes of their ResNet-18 LPS (swap_conv_pool=False)."""
    rng = np.random.default_rng(seed)
    state = {}

    def tensor(*shape):
        # He-scaled, so that the logits stay of order one.
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 100
        return (rng.standard_normal(shape) * math.sqrt(2 / fan_in)).astype(
            "float32")

    def bn(name, n):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, n).astype("float32")
        state[f"{name}.bias"] = tensor(n)
        state[f"{name}.running_mean"] = tensor(n)
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, n).astype(
            "float32")
        state[f"{name}.num_batches_tracked"] = np.array(7, "int64")

    def lps(name, channels, blur, scoring=True):
        if scoring:
            for conv, inputs in (("conv1", channels), ("conv2", channels)):
                prefix = f"{name}.component_selection.get_logits.{conv}"
                state[f"{prefix}.weight"] = tensor(channels, inputs, 3, 3)
                state[f"{prefix}.bias"] = tensor(channels)
        state[f"{name}.component_selection.gumbel_tau"] = np.array(
            0.3, "float32")
        if blur:
            state[f"{name}._antialias_layer.filt"] = _binomial(channels, K)

    state["conv1.weight"] = tensor(64, 3, 7, 7)
    bn("bn1", 64)
    lps("maxpool.0", 64, blur=False)
    lps("maxpool.3", 64, blur=True)
    inputs = 64
    for stage, width in enumerate(WIDTHS, start=1):
        for block in range(2):
            name = f"layer{stage}.{block}"
            state[f"{name}.conv1.weight"] = tensor(width, inputs, 3, 3)
            bn(f"{name}.bn1", width)
            if stage > 1 and block == 0:
                lps(f"{name}.conv2.0", width, blur=True)
                state[f"{name}.conv2.1.weight"] = tensor(width, width, 3, 3)
                lps(f"{name}.downsample.0", inputs, blur=True, scoring=False)
                state[f"{name}.downsample.1.weight"] = tensor(
                    width, inputs, 1, 1)
                bn(f"{name}.downsample.2", width)
            else:
                state[f"{name}.conv2.weight"] = tensor(width, width, 3, 3)
            bn(f"{name}.bn2", width)
            inputs = width
    state["fc.weight"] = tensor(classes, 512)
    state["fc.bias"] = tensor(classes)
    return {f"core.{k}": v for k, v in state.items()}


def _authors_forward(torch, state, x):
    """Their LPS ResNet-18 at inference, from their code's description."""
    F = torch.nn.functional
    s = {k[len("core."):]: torch.from_numpy(np.asarray(v))
         for k, v in state.items()}

    def conv(x, name, stride=1, padding=0):
        if padding:
            x = F.pad(x, (padding,) * 4, mode="circular")
        return F.conv2d(x, s[f"{name}.weight"], s.get(f"{name}.bias"),
                        stride=stride)

    def bn(x, name):
        return F.batch_norm(x, s[f"{name}.running_mean"],
                            s[f"{name}.running_var"], s[f"{name}.weight"],
                            s[f"{name}.bias"], training=False, eps=1e-5)

    def split(x):  # their split_polyV2 order: (0,0), (0,1), (1,0), (1,1)
        return [x[:, :, i::2, j::2] for i in range(2) for j in range(2)]

    def blur(x, name):
        filt = s.get(f"{name}._antialias_layer.filt")
        if filt is None:
            return x
        k = filt.shape[-1]
        x = F.pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2),
                  mode="circular")
        return F.conv2d(x, filt, groups=x.shape[1])

    def lps(x, name, index=None):
        components = split(blur(x, name))
        if index is None:
            scoring = f"{name}.component_selection.get_logits"
            scores = []
            for c in components:
                h = F.relu(conv(c, f"{scoring}.conv1", padding=1))
                scores.append(conv(h, f"{scoring}.conv2", padding=1).mean(
                    dim=(1, 2, 3)))
            index = torch.stack(scores, 1).argmax(1)
        stacked = torch.stack(components, 1)
        return stacked[torch.arange(x.shape[0]), index], index

    x = F.relu(bn(conv(x, "conv1", padding=3), "bn1"))
    x, _ = lps(x, "maxpool.0")
    x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="circular"), 2, stride=1)
    x, _ = lps(x, "maxpool.3")
    for stage in range(1, 5):
        for block in range(2):
            name = f"layer{stage}.{block}"
            y = F.relu(bn(conv(x, f"{name}.conv1", padding=1), f"{name}.bn1"))
            if stage > 1 and block == 0:
                y, index = lps(y, f"{name}.conv2.0")
                y = conv(y, f"{name}.conv2.1", padding=1)
                shortcut, _ = lps(x, f"{name}.downsample.0", index)
                shortcut = bn(conv(shortcut, f"{name}.downsample.1"),
                              f"{name}.downsample.2")
            else:
                y = conv(y, f"{name}.conv2", padding=1)
                shortcut = x
            x = F.relu(bn(y, f"{name}.bn2") + shortcut)
    x = x.mean(dim=(2, 3))
    return F.linear(x, s["fc.weight"], s["fc.bias"]).numpy()


def _lps_resnet18(**kwargs):
    return applications.ResNet18(
        antialias="lps", filter_size=K, padding="circular",
        input_shape=(64, 64, 3), classes=10, classifier_activation=None,
        **kwargs)


def test_authors_checkpoint_loads_and_matches_their_forward(reference,
                                                            tmp_path):
    torch, _ = reference
    state = _authors_resnet18_state_dict()
    path = tmp_path / "resnet18_lps.pth"
    torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v))
                               for k, v in state.items()}, "epoch": 89},
               path)
    model = _lps_resnet18(weights=str(path))
    x = np.random.default_rng(1).uniform(0, 1, (4, 64, 64, 3)).astype(
        "float32")
    ours = np.asarray(model.predict(x, verbose=0))
    with torch.no_grad():
        theirs = _authors_forward(
            torch, state, torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    # A scoring weight really arrived (OIHW -> HWIO).
    layer = model.get_layer("conv3_block1_2_blur")
    np.testing.assert_array_equal(
        np.asarray(layer.scoring_layers[0].kernel),
        np.transpose(state["core.layer2.0.conv2.0.component_selection"
                           ".get_logits.conv1.weight"], (2, 3, 1, 0)))


def test_wrong_filter_or_missing_scoring_weights_are_refused():
    state = _authors_resnet18_state_dict()
    with pytest.raises(ValueError, match="filter"):
        # Their LPF2 checkpoint into a filter-3 network.
        applications.load_torch_weights(
            applications.ResNet18(antialias="lps", filter_size=3,
                                  padding="circular", classes=10), state)
    del state["core.layer3.0.conv2.0.component_selection.get_logits.conv2"
              ".bias"]
    with pytest.raises(ValueError, match="conv2.bias"):
        applications.load_torch_weights(_lps_resnet18(), state)


def test_their_temperatures_load_into_the_lps_layers():
    # Each LPS layer's gumbel_tau (where their schedule had got to) is the
    # LPSPool2D's tau; the shortcuts' (never used: they take the main
    # branch's choice) are dropped, as our shortcuts have none.
    state = _authors_resnet18_state_dict()
    state["core.layer3.0.conv2.0.component_selection.gumbel_tau"] = np.array(
        0.7, "float32")
    model = applications.load_torch_weights(_lps_resnet18(), state)
    taus = {layer.name: float(np.asarray(layer.tau)) for layer in model.layers
            if hasattr(layer, "tau")}
    assert len(taus) == 5  # the stem's two, stages 3-5's main branches
    assert taus.pop("conv4_block1_2_blur") == pytest.approx(0.7)
    assert taus == pytest.approx({name: 0.3 for name in taus})


@pytest.mark.parametrize("tau,message", [
    (np.array(0.0, "float32"), r"must be a finite float from 0.0001"),
    (np.array(-1.0, "float32"), r"Received: .*gumbel_tau=-1.0"),
    (np.array([0.3, 0.3], "float32"), r"has shape \(2,\).*scalar"),
])
def test_a_bad_temperature_is_refused_naming_its_key(tau, message):
    state = _authors_resnet18_state_dict()
    key = "core.layer2.0.conv2.0.component_selection.gumbel_tau"
    state[key] = tau
    model = _lps_resnet18()
    before = np.asarray(model.get_layer("conv3_block1_2_blur").tau).copy()
    with pytest.raises(ValueError, match=f"layer2.0.conv2.0.component_selection"
                       f".gumbel_tau.*{message}"):
        applications.load_torch_weights(model, state)
    assert np.asarray(model.get_layer("conv3_block1_2_blur").tau) == before


def test_a_filter_of_another_width_or_rank_is_refused():
    key = "core.layer2.0.conv2.0._antialias_layer.filt"
    state = _authors_resnet18_state_dict()
    state[key] = state[key][:5]  # 5 channels where the layer has 128
    with pytest.raises(ValueError, match=r"filt' filters 5 channel\(s\), but "
                       r"layer 'conv3_block1_2_blur/blur' has 128 input "
                       "channels"):
        applications.load_torch_weights(_lps_resnet18(), state)
    state = _authors_resnet18_state_dict()
    state[key] = state[key][:, :, None]  # 5-D
    with pytest.raises(ValueError) as error:
        applications.load_torch_weights(_lps_resnet18(), state)
    message = str(error.value)
    assert ("has shape (128, 1, 1, 2, 2), which is no BlurPool filter: the "
            "reference's is (channels, 1, k, k), and layer "
            "'conv3_block1_2_blur/blur' expects (128, 1, 2, 2)") in message
    # It said "a filter of size 2, but the layer has filter_size=2: build
    # the model with filter_size=2".
    assert "build the model with" not in message


def test_torchvision_baseline_loads_into_an_lps_network():
    # A plain torchvision ResNet-18 state dict: the authors' without the LPS
    # layers, the Sequential wrappers undone.
    baseline = {}
    for key, value in _authors_resnet18_state_dict().items():
        key = key[len("core."):]
        if ("component_selection" in key or "_antialias_layer" in key):
            continue
        key = key.replace("conv2.1.", "conv2.")
        key = key.replace("downsample.1.", "downsample.0.")
        key = key.replace("downsample.2.", "downsample.1.")
        baseline[key] = value
    model = _lps_resnet18()
    scoring = model.get_layer("conv4_block1_2_blur").scoring_layers[1]
    before = np.asarray(scoring.kernel).copy()
    applications.load_torch_weights(model, baseline)
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("conv4_block1_2_conv").kernel),
        np.transpose(baseline["layer3.0.conv2.weight"], (2, 3, 1, 0)))
    # The scoring networks, absent from the checkpoint, keep their values.
    np.testing.assert_array_equal(np.asarray(scoring.kernel), before)
