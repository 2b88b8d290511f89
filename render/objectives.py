"""Objectives: what a rendered image should excite, as a loss per image (higher is better)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from render import algebra
from render.models.network import Layer, Network

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


def at_input_size(objective: Objective, network: Network) -> Objective:
    """The objective of a network whose dense head fixes its input size, on views of another
    size (random transforms pad and crop): each view is resized to that size first."""
    if not network.fixed_size:
        return objective
    side = network.input_size

    def resized(params, images, targets, redirect=None):
        if images.shape[1:3] != (side, side):
            images = jax.image.resize(images, (images.shape[0], side, side, 3), "linear")
        return objective(params, images, targets, redirect)

    return resized


def for_job(network: Network, objective: str, layer: str, class_output: str = "logit") -> Objective:
    """The objective of a filter or class job (a class's logit is channel k of the head)."""
    if objective == "class" and class_output == "softmax":
        return at_input_size(class_probability(network), network)
    if objective == "class":
        return at_input_size(channel_mean(network, layer), network)
    return channel_mean(network, layer)


def interpolation(
    a: algebra.Objective,
    b: algebra.Objective,
    text_a: str,
    text_b: str,
    frames: int,
    alignment: float,
    layer: Layer,
) -> tuple[list[algebra.Objective], list[str]]:
    """The blends (1 - t) * a + t * b for t = 0 .. 1 in `frames` steps, each minus `alignment`
    times the alignment of neighbouring frames' activations at `layer` (rendered as one batch,
    in order, so that neighbours look alike); and each blend as text."""
    blends, texts = [], []
    for t in np.linspace(0.0, 1.0, frames):
        t = float(t)
        blend = a * (1.0 - t) + b * t
        if alignment:
            blend = blend - algebra.alignment(layer.name) * alignment
        blends.append(blend)
        texts.append(f"{1.0 - t:.4g}*({text_a}) + {t:.4g}*({text_b})")
    return blends, texts


def caricature(
    network: Network, params, photo: np.ndarray, layer: str, cosine_power: float = 0.0
) -> algebra.Objective:
    """Lucid's caricature: agree with the photo's own activations at `layer`, position by
    position (`algebra.match`); `photo` (H, W, 3) is a network input."""
    found = network.features(params, jnp.asarray(photo, jnp.float32)[None], layer)
    return algebra.match(layer, np.asarray(found[0]), cosine_power)
