"""Layer-wise learning rates of an encoder (``optim.layer_lr_decay``): the top layer at the encoder's rate, each
layer below it ``decay`` times the one above; what lies outside the layers at the bottom layer's rate."""

from __future__ import annotations

from torch import nn


def encoder_groups(encoder: nn.Module, lr: float, decay: float = 1.0) -> list[dict]:
    """Optimizer parameter groups of ``encoder`` (its ``layer_modules()``): layer k of L (1-based) at
    ``lr * decay ** (L - k)``, every other encoder parameter (front end, positions, final norm) at
    ``lr * decay ** L``. ``decay`` 1 gives one group, named ``encoder``."""
    params = list(encoder.parameters())
    if decay == 1.0:
        return [{"params": params, "lr": lr, "name": "encoder"}]
    layers = encoder.layer_modules()
    depth = {id(p) for layer in layers for p in layer.parameters()}
    groups = [{"params": [p for p in params if id(p) not in depth], "lr": lr * decay ** len(layers),
               "name": "encoder.rest"}]
    for k, layer in enumerate(layers, 1):
        groups.append({"params": list(layer.parameters()), "lr": lr * decay ** (len(layers) - k),
                       "name": f"encoder.layer{k}"})
    return [g for g in groups if g["params"]]
