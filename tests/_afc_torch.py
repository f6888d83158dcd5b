"""A PyTorch port of the AFC authors' ConvNeXt forward passes (inference).

Written from reading `hmichaeli/alias_free_convnets` (`models/
convnext_afc.py`, `convnext_aps.py`, `ideal_lpf.py`, `activation.py`,
`poly_mlp.py`, `layer_norm.py`, `apspool.py`); their repository has no
licence, so nothing is copied: these are functions of a state dict in
their key layout, with their rFFT masks, polynomial and norms.
"""

import math

import numpy as np


def rect(n, cutoff, edge):
    """Their create_lpf_rect (edge 0) / create_recon_rect (edge 0.5), 1-D."""
    low = int((n * cutoff) // 2)
    high = n - low
    r = np.ones(n, "float32")
    r[low + 1:high] = 0
    if n % 4 == 0:
        r[low] = edge
        r[high] = edge
    return r


def lpf(torch, x, cutoff):
    """LPF_RFFT: rfft2, multiply by the rectangle's first half, irfft2."""
    n = x.shape[-1]
    r = torch.from_numpy(np.outer(rect(n, cutoff, 0.0), rect(n, cutoff, 0.0)))
    spectrum = torch.fft.rfft2(x) * r[:, : n // 2 + 1]
    return torch.fft.irfft2(spectrum, s=(x.shape[-2], x.shape[-1]))


def upsample(torch, x, up=2):
    """UpsampleRFFT: zeros inserted, LPF_RECON_RFFT(1 / up), times up**2."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h, 1, w, 1)
    x = torch.nn.functional.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(b, c, h * up, w * up)
    n = x.shape[-1]
    r = torch.from_numpy(np.outer(rect(n, 1 / up, 0.5), rect(n, 1 / up, 0.5)))
    return torch.fft.irfft2(torch.fft.rfft2(x) * r[:, : n // 2 + 1]) * up**2


def poly(s, name, x):
    """PolyActPerChannel (channels_first), degree 2."""
    coef = s[f"{name}.coef"]
    x = s[f"{name}.in_scale"] * x
    x = coef[:, 0] + coef[:, 1] * x + coef[:, 2] * (x**2)
    return s[f"{name}.out_scale"] * x


def lpf_poly(torch, s, name, x, cutoff=0.75):
    """LPFPolyActPerChannel."""
    coef = s[f"{name}.coef"]
    x = s[f"{name}.in_scale"] * x
    x = coef[:, 0] + coef[:, 1] * x + coef[:, 2] * (x * lpf(torch, x, cutoff))
    return s[f"{name}.out_scale"] * x


def norm_c(s, name, x):
    """LayerNorm_C, channels_first."""
    u = x.mean(1, keepdim=True)
    v = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / (v + 1e-6).sqrt()
    return s[f"{name}.weight"][:, None, None] * x + s[f"{name}.bias"][:, None, None]


def norm_chw2(s, name, x):
    """LayerNorm_AF(u_dims=1, s_dims=(1, 2, 3))."""
    u = x.mean(1, keepdim=True)
    v = (x - u).pow(2).mean((1, 2, 3), keepdim=True)
    x = (x - u) / (v + 1e-6).sqrt()
    return s[f"{name}.weight"][:, None, None] * x + s[f"{name}.bias"][:, None, None]


def conv(torch, s, name, x, pads, groups=1):
    x = torch.nn.functional.pad(x, pads, mode="circular")
    return torch.nn.functional.conv2d(x, s[f"{name}.weight"], s[f"{name}.bias"], groups=groups)


def aps(torch, x):
    """ApsPool(filt_size=1, stride 2): the polyphase of largest l2 norm,
    their order (0,0), (1,0), (0,1), (1,1) (permute_polyphase)."""
    parts = [x[:, :, i::2, j::2] for j in range(2) for i in range(2)]
    stacked = torch.stack(parts, 1)
    index = stacked.flatten(2).norm(dim=2).argmax(1)
    return stacked[torch.arange(x.shape[0]), index]


def forward(torch, state, x, variant, depths):
    """Logits of their network of `variant` on NCHW `x`."""
    F = torch.nn.functional
    s = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    norm = norm_chw2 if variant == "afc" else norm_c
    x = conv(torch, s, "downsample_layers.0.0.1", x, (1, 2, 1, 2))
    if variant == "afc":
        x = x + s["downsample_layers.0.1.gamma"] * lpf_poly(
            torch, s, "downsample_layers.0.1.residual.0", x)
        x = lpf(torch, x, 0.25)[:, :, ::4, ::4]
        x = norm(s, "downsample_layers.0.3", x)
    elif variant == "circular":
        x = norm(s, "downsample_layers.0.2", x[:, :, ::4, ::4])
    else:
        x = norm(s, "downsample_layers.0.3", aps(torch, aps(torch, x)))
    for i in range(4):
        if i:
            x = norm(s, f"downsample_layers.{i}.0", x)
            x = conv(torch, s, f"downsample_layers.{i}.1.1", x, (0, 1, 0, 1))
            if variant == "afc":
                x = lpf(torch, x, 0.5)[:, :, ::2, ::2]
            elif variant == "circular":
                x = x[:, :, ::2, ::2]
            else:
                x = aps(torch, x)
        for j in range(depths[i]):
            p = f"stages.{i}.{j}"
            y = conv(torch, s, f"{p}.dwconv.1", x, (3, 3, 3, 3), groups=x.shape[1])
            y = norm(s, f"{p}.norm", y)
            m = f"{p}.mlp" if variant != "aps" else p
            if variant == "afc":  # AALMLP
                y = upsample(torch, y)
                y = F.linear(y.permute(0, 2, 3, 1), s[f"{m}.pwconv1.weight"],
                             s[f"{m}.pwconv1.bias"])
                y = poly(s, f"{m}.act", y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
                y = F.linear(y, s[f"{m}.pwconv2.weight"], s[f"{m}.pwconv2.bias"])
                y = lpf(torch, y.permute(0, 3, 1, 2), 0.5)[:, :, ::2, ::2].permute(0, 2, 3, 1)
            else:
                y = F.linear(y.permute(0, 2, 3, 1), s[f"{m}.pwconv1.weight"],
                             s[f"{m}.pwconv1.bias"])
                y = F.linear(F.gelu(y), s[f"{m}.pwconv2.weight"], s[f"{m}.pwconv2.bias"])
            x = x + (s[f"{p}.gamma"] * y).permute(0, 3, 1, 2)
    x = F.layer_norm(x.mean((-2, -1)), (x.shape[1],), s["norm.weight"], s["norm.bias"], 1e-6)
    return F.linear(x, s["head.weight"], s["head.bias"]).numpy()


def state_dict(variant, depths, dims, classes, seed=0, in_chans=3):
    """Random weights in their key layout (scaled so logits stay O(1);
    layer scales near 1 so every block matters)."""
    rng = np.random.default_rng(seed)
    s = {}

    def w(*shape, fan_in=None):
        fan_in = fan_in or int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype("float32")

    def small(*shape):
        return (0.1 * rng.standard_normal(shape)).astype("float32")

    def norm(name, n):
        s[f"{name}.weight"] = (1 + small(n)).astype("float32")
        s[f"{name}.bias"] = small(n)

    def poly(name, n):
        base = np.array([0.0169394634313126, 0.5, 0.3078363963999393], "float32")
        s[f"{name}.coef"] = (base[None, :, None, None] * (1 + small(n, 3, 1, 1))).astype("float32")
        s[f"{name}.in_scale"] = np.array([1.0 + 0.1 * rng.random()], "float32")
        s[f"{name}.out_scale"] = np.array([1.0 + 0.1 * rng.random()], "float32")

    s["downsample_layers.0.0.1.weight"] = w(dims[0], in_chans, 4, 4)
    s["downsample_layers.0.0.1.bias"] = small(dims[0])
    if variant == "afc":
        poly("downsample_layers.0.1.residual.0", dims[0])
        s["downsample_layers.0.1.gamma"] = np.array([0.5], "float32")
    norm("downsample_layers.0.2" if variant == "circular" else "downsample_layers.0.3", dims[0])
    for i in range(4):
        if i:
            norm(f"downsample_layers.{i}.0", dims[i - 1])
            s[f"downsample_layers.{i}.1.1.weight"] = w(dims[i], dims[i - 1], 2, 2)
            s[f"downsample_layers.{i}.1.1.bias"] = small(dims[i])
        d = dims[i]
        for j in range(depths[i]):
            p = f"stages.{i}.{j}"
            s[f"{p}.dwconv.1.weight"] = w(d, 1, 7, 7)
            s[f"{p}.dwconv.1.bias"] = small(d)
            norm(f"{p}.norm", d)
            m = f"{p}.mlp" if variant != "aps" else p
            s[f"{m}.pwconv1.weight"] = w(4 * d, d)
            s[f"{m}.pwconv1.bias"] = small(4 * d)
            if variant == "afc":
                poly(f"{m}.act", 4 * d)
            s[f"{m}.pwconv2.weight"] = w(d, 4 * d)
            s[f"{m}.pwconv2.bias"] = small(d)
            s[f"{p}.gamma"] = (0.5 + small(d)).astype("float32")
    norm("norm", dims[-1])
    s["head.weight"] = w(classes, dims[-1])
    s["head.bias"] = small(classes)
    return s
