"""Tiny VGG16 weight files in both HDF5 layouts, written from the same params."""

from __future__ import annotations

import h5py
import numpy as np

from render.models.layers import CONV_LAYERS, DENSE_LAYERS
from render.models.weights import TOP_SIDE

WIDTH_DIVISOR = 16
LAST_OF_BLOCK = (
    "block1_conv2",
    "block2_conv2",
    "block3_conv3",
    "block4_conv3",
    "block5_conv3",
)  # channels 4, 8, 16, 32, 32; fc 256


def fixture_params(seed: int = 1, width_divisor: int = WIDTH_DIVISOR, top: bool = True) -> dict:
    """He-normal kernels and non-zero biases, as numpy arrays {layer: {kernel, bias}}."""
    rng = np.random.default_rng(seed)
    params, cin = {}, 3
    for layer in CONV_LAYERS:
        cout = layer.channels // width_divisor
        kernel = rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32)
        params[layer.name] = {"kernel": kernel, "bias": rng.normal(0, 0.1, cout).astype(np.float32)}
        cin = cout
    if top:
        fin = TOP_SIDE * TOP_SIDE * cin
        for layer in DENSE_LAYERS:
            fout = 1000 if layer.name == "predictions" else layer.channels // width_divisor
            kernel = rng.normal(0, np.sqrt(2 / fin), (fin, fout)).astype(np.float32)
            params[layer.name] = {
                "kernel": kernel,
                "bias": rng.normal(0, 0.1, fout).astype(np.float32),
            }
            fin = fout
    return params


def keras_layer_names(top: bool) -> list[str]:
    names = ["input_1"]
    for layer in CONV_LAYERS:
        names.append(layer.name)
        if layer.name in LAST_OF_BLOCK:
            names.append(layer.name.split("_")[0] + "_pool")
    return names + (["flatten", "fc1", "fc2", "predictions"] if top else [])


def write_keras(path, params: dict, slash_names: bool = False, extra_layers=None) -> None:
    """The Keras layout; slash_names uses `layer/kernel:0` instead of `layer_W_1:0`;
    extra_layers {name: arrays} are appended (to imitate another network)."""
    top = "fc1" in params
    extra_layers = extra_layers or {}
    names = [
        n for n in keras_layer_names(top) if n in params or "_conv" not in n or n in extra_layers
    ]
    names += list(extra_layers)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in names]
        for name in names:
            group = f.create_group(name)
            arrays = params.get(name) or extra_layers.get(name)
            if not arrays:
                group.attrs["weight_names"] = []
                continue
            if slash_names:
                weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            else:
                weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            group.create_dataset(weight_names[0], data=arrays["kernel"])
            group.create_dataset(weight_names[1], data=arrays["bias"])


def to_theano(params: dict) -> list[list[np.ndarray]]:
    """The 2016 file's 37 layers: Theano (out, in, kh, kw) flipped kernels, CHW-ordered fc1."""
    layers: list[list[np.ndarray]] = []
    for layer in CONV_LAYERS:
        kernel = params[layer.name]["kernel"].transpose(3, 2, 0, 1)[:, :, ::-1, ::-1]
        layers += [[], [np.ascontiguousarray(kernel), params[layer.name]["bias"]]]  # ZeroPadding
        if layer.name in LAST_OF_BLOCK:
            layers.append([])  # MaxPooling
    if "fc1" in params:
        channels = params["block5_conv3"]["kernel"].shape[-1]
        fc1 = params["fc1"]["kernel"]
        fc1 = fc1.reshape(TOP_SIDE, TOP_SIDE, channels, -1).transpose(2, 0, 1, 3).reshape(fc1.shape)
        layers += [[], [fc1, params["fc1"]["bias"]], []]  # Flatten, Dense, Dropout
        layers += [[params["fc2"]["kernel"], params["fc2"]["bias"]], []]
        layers += [[params["predictions"]["kernel"], params["predictions"]["bias"]]]
    return layers


def write_theano(path, params: dict) -> None:
    layers = to_theano(params)
    with h5py.File(path, "w") as f:
        f.attrs["nb_layers"] = len(layers)
        for k, arrays in enumerate(layers):
            group = f.create_group(f"layer_{k}")
            group.attrs["nb_params"] = len(arrays)
            for p, array in enumerate(arrays):
                group.create_dataset(f"param_{p}", data=array)
