"""Objectives: what a rendered image should excite, as a loss per image (higher is better)."""

from __future__ import annotations

from collections.abc import Callable

import jax

from models.vgg16 import VGG16

# (params, images (B, H, W, 3), targets (B,), redirect 0/1 or None) -> loss per image (B,)
Objective = Callable[..., jax.Array]


def channel_mean(model: VGG16, layer: str) -> Objective:
    """Mean over the spatial map of channel targets[b] of `layer` (post-ReLU), per image."""

    def objective(params, images, targets, redirect=None):
        activation = model.apply(params, images, upto=layer, channels=targets, redirect=redirect)
        return activation.reshape(activation.shape[0], -1).mean(axis=1)

    return objective
