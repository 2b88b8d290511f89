"""The "caffe" input convention of the Keras VGG16 weights, and its inverse for display."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

MEAN_BGR = (103.939, 116.779, 123.68)


def caffe_preprocess(rgb_0_255):
    """RGB in 0-255 (..., H, W, 3) to the network's input: BGR, minus the mean pixel."""
    xp = jnp if isinstance(rgb_0_255, jnp.ndarray) else np
    return rgb_0_255[..., ::-1] - xp.asarray(MEAN_BGR, dtype=rgb_0_255.dtype)


def caffe_deprocess(bgr_centered):
    """The inverse of caffe_preprocess: back to RGB in 0-255 (not clipped)."""
    xp = jnp if isinstance(bgr_centered, jnp.ndarray) else np
    return (bgr_centered + xp.asarray(MEAN_BGR, dtype=bgr_centered.dtype))[..., ::-1]
