"""Objectives: what a rendered image should excite, as a loss per image (higher is better)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from render.models.vgg import VGG16

# (params, images (B, H, W, 3), targets (B,), redirect 0/1 or None) -> loss per image (B,)
Objective = Callable[..., jax.Array]


def channel_mean(model: VGG16, layer: str) -> Objective:
    """Mean over the spatial map of channel targets[b] of `layer` (post-ReLU), per image."""

    def objective(params, images, targets, redirect=None):
        activation = model.apply(params, images, upto=layer, channels=targets, redirect=redirect)
        return activation.reshape(activation.shape[0], -1).mean(axis=1)

    return objective


def class_probability(model: VGG16) -> Objective:
    """Softmax probability of class targets[b], per image (the 2016 post's output)."""

    def objective(params, images, targets, redirect=None):
        logits = model.apply(params, images, upto="predictions", redirect=redirect)
        probabilities = jax.nn.softmax(logits, axis=-1)
        return jnp.take_along_axis(probabilities, targets[:, None], axis=-1)[:, 0]

    return objective


def for_job(model: VGG16, objective: str, layer: str, class_output: str = "logit") -> Objective:
    """The objective of a filter or class job (a class's logit is channel k of predictions)."""
    if objective == "class" and class_output == "softmax":
        return class_probability(model)
    return channel_mean(model, layer)
