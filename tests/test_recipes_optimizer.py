"""Tests of PyTorch's SGD in Keras, `recipes/optimizer.py`."""

import keras
import numpy as np
import tensorflow as tf

from recipes.optimizer import TorchSGD


def test_torch_sgd_equals_torch(reference):
    torch, _ = reference
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(6).astype("float32")
    grads = rng.standard_normal((5, 6)).astype("float32")
    rates = [0.1, 0.1, 0.01, 0.01, 0.001]  # a step of the schedule midway

    param = torch.nn.Parameter(torch.tensor(w0))
    torch_sgd = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=1e-2)
    for lr, g in zip(rates, grads):
        torch_sgd.param_groups[0]["lr"] = lr
        param.grad = torch.tensor(g)
        torch_sgd.step()

    variable = keras.Variable(w0)
    lr = keras.Variable(0.1)
    ours = TorchSGD(learning_rate=lambda: lr.value, momentum=0.9, weight_decay=1e-2)
    for rate, g in zip(rates, grads):
        lr.assign(rate)
        ours.apply([tf.constant(g)], [variable])
    np.testing.assert_allclose(
        np.array(variable), param.detach().numpy(), rtol=1e-5, atol=1e-7
    )
