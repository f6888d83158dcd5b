"""Builds timm models with random weights for tests/test_timm.py.

Run by the Python that has timm (`.venv-timm`), never imported by the test
process: importing torchvision after TensorFlow crashes the process. Reads
a JSON list of jobs on stdin, each `{"name", "kwargs", "size", "out"}`,
and writes `<out>.safetensors` (the state dict, as the Hub holds it),
`<out>_x.npy` (a random NCHW batch) and `<out>_y.npy` (timm's logits);
prints one JSON line per job with the trainable parameter count.
"""

import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _torch_models import randomize_batchnorm  # noqa: E402


def main():
    torch.set_num_threads(2)
    for seed, job in enumerate(json.load(sys.stdin)):
        torch.manual_seed(seed)
        model = timm.create_model(job["name"], pretrained=False, **job["kwargs"])
        model.eval()
        randomize_batchnorm(torch, model, seed)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, job["out"] + ".safetensors")
        x = torch.randn(
            2, 3, job["size"], job["size"], generator=torch.Generator().manual_seed(seed)
        )
        with torch.no_grad():
            y = model(x)
        np.save(job["out"] + "_x.npy", x.numpy())
        np.save(job["out"] + "_y.npy", y.numpy())
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(json.dumps({"out": job["out"], "params": params}), flush=True)


if __name__ == "__main__":
    main()
