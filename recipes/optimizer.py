"""SGD with PyTorch's momentum and weight-decay semantics.

The reference trains with `torch.optim.SGD(lr, momentum=0.9,
weight_decay=1e-4)`:

    g = grad + weight_decay * w
    buf = momentum * buf + g
    w = w - lr * buf

`keras.optimizers.SGD` differs in two ways that matter for the recipe: its
velocity already contains the learning rate (`v = momentum * v - lr * g`),
so after a step of the schedule the old, ten times larger rate keeps
acting through the velocity for a while; and its `weight_decay` is
decoupled (`w -= lr * wd * w`, AdamW style) rather than an L2 term that
goes through the momentum. `TorchSGD` follows torch exactly.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_blurpool_recipes")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with momentum and L2 weight decay, as `torch.optim.SGD`.

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable
            without arguments returning the current rate.
        momentum: momentum factor, in [0, 1).
        weight_decay: L2 coefficient added to every gradient as
            `weight_decay * w` before the momentum (torch's `weight_decay`).
        name: the optimizer name.
        **kwargs: other `keras.optimizers.Optimizer` arguments (e.g.
            `clipnorm`), except its decoupled `weight_decay`.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        name: str = "torch_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"`momentum` must be in [0, 1). Received: momentum={momentum!r}"
            )
        if weight_decay < 0:
            raise ValueError(
                "`weight_decay` must be >= 0. "
                f"Received: weight_decay={weight_decay!r}"
            )
        self.momentum = float(momentum)
        # Not `self.weight_decay`: the base class applies that one decoupled.
        self.l2 = float(weight_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2:
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        if not self.momentum:
            self.assign_sub(variable, learning_rate * gradient)
            return
        buf = self.momentums[self._get_variable_index(variable)]
        self.assign(
            buf, ops.cast(self.momentum, variable.dtype) * buf + gradient
        )
        self.assign_sub(variable, learning_rate * buf)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay": self.l2})
        return config
