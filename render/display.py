"""From network input to something to look at: the 2016 post's deprocessing."""

from __future__ import annotations

import numpy as np

from render.models.network import CONVENTIONS, Convention


def deprocess_2016(image: np.ndarray, convention: Convention = CONVENTIONS["caffe"]) -> np.ndarray:
    """(H, W, 3) network-input image -> uint8 RGB, as the 2016 post displayed it.

    Back to RGB pixels, then center, scale to std 0.1, shift to 0.5, clip to [0, 1], x255.
    """
    x = convention.to_rgb(np.asarray(image, dtype=np.float64))
    x = x - x.mean()
    x = x / (x.std() + 1e-5) * 0.1 + 0.5
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def to_uint8(
    image: np.ndarray, display: str, convention: Convention = CONVENTIONS["caffe"]
) -> np.ndarray:
    """A style's way to show its image: the 2016 normalization, or the pixels as optimized."""
    if display == "2016":
        return deprocess_2016(image, convention)
    rgb = convention.to_rgb(np.asarray(image, dtype=np.float64))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
