"""Plain numpy VGG16 forward passes, independent of JAX: Keras and Theano (2016) semantics."""

from __future__ import annotations

import numpy as np

from render.models.layers import CONV_LAYERS, DENSE_LAYERS


def _pool_hwc(x):
    h, w, c = x.shape
    return x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def keras_forward(params: dict, image_hwc: np.ndarray, upto: str) -> np.ndarray:
    """Cross-correlation with HWIO kernels, NHWC flatten; float64."""
    x = image_hwc.astype(np.float64)
    for layer in CONV_LAYERS:
        if layer.name.endswith("_conv1") and layer.stride > 1:
            x = _pool_hwc(x)
        kernel, bias = params[layer.name]["kernel"], params[layer.name]["bias"]
        h, w, _ = x.shape
        padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        y = sum(padded[i : i + h, j : j + w] @ kernel[i, j] for i in range(3) for j in range(3))
        x = np.maximum(y + bias, 0)
        if layer.name == upto:
            return x
    x = _pool_hwc(x).reshape(-1)
    for layer in DENSE_LAYERS:
        x = x @ params[layer.name]["kernel"] + params[layer.name]["bias"]
        if layer.name != "predictions":
            x = np.maximum(x, 0)
        if layer.name == upto:
            return x
    raise KeyError(upto)


def theano_forward(layers: list[list[np.ndarray]], image_hwc: np.ndarray, upto: str) -> np.ndarray:
    """The 2016 Sequential model on its raw file arrays: true convolution on (C, H, W) maps,
    channels-first flatten. Returns conv maps as (H, W, C) for comparison."""
    x = image_hwc.astype(np.float64).transpose(2, 0, 1)
    weighted = [arrays for arrays in layers if arrays]
    convs = [a for a in weighted if a[0].ndim == 4]
    denses = [a for a in weighted if a[0].ndim == 2]
    for layer, (kernel, bias) in zip(CONV_LAYERS, convs, strict=True):
        if layer.name.endswith("_conv1") and layer.stride > 1:
            x = _pool_hwc(x.transpose(1, 2, 0)).transpose(2, 0, 1)
        _, h, w = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
        # true convolution: out[o, y, x] = sum_{c,i,j} W[o, c, i, j] * in[c, y + 1 - (i - 1), ...]
        y = sum(
            np.einsum(
                "oc,chw->ohw", kernel[:, :, i, j], padded[:, 2 - i : 2 - i + h, 2 - j : 2 - j + w]
            )
            for i in range(3)
            for j in range(3)
        )
        x = np.maximum(y + bias[:, None, None], 0)
        if layer.name == upto:
            return x.transpose(1, 2, 0)
    x = _pool_hwc(x.transpose(1, 2, 0)).transpose(2, 0, 1).reshape(-1)  # (c, h, w) flatten
    for layer, (kernel, bias) in zip(DENSE_LAYERS, denses, strict=True):
        x = x @ kernel + bias
        if layer.name != "predictions":
            x = np.maximum(x, 0)
        if layer.name == upto:
            return x
    raise KeyError(upto)
