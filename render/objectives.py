"""Objectives: what a rendered image should excite, as a loss per image (higher is better)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from render.models.network import Network

# (params, images (B, H, W, 3), targets (B,), redirect 0/1 or None) -> loss per image (B,)
Objective = Callable[..., jax.Array]


def channel_mean(network: Network, layer: str) -> Objective:
    """Mean over the spatial map of channel targets[b] of `layer` (post-ReLU), per image."""

    def objective(params, images, targets, redirect=None):
        activation = network.features(params, images, layer, channels=targets, redirect=redirect)
        return activation.reshape(activation.shape[0], -1).mean(axis=1)

    return objective


def class_probability(network: Network) -> Objective:
    """Softmax probability of class targets[b], per image (the 2016 post's output)."""

    def objective(params, images, targets, redirect=None):
        logits = network.features(params, images, network.head, redirect=redirect)
        probabilities = jax.nn.softmax(logits, axis=-1)
        return jnp.take_along_axis(probabilities, targets[:, None], axis=-1)[:, 0]

    return objective


def for_job(network: Network, objective: str, layer: str, class_output: str = "logit") -> Objective:
    """The objective of a filter or class job (a class's logit is channel k of the head)."""
    if objective == "class" and class_output == "softmax":
        return class_probability(network)
    return channel_mean(network, layer)
