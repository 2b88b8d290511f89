"""Read VGG16 or VGG19 weights from Keras HDF5 files in either layout, checking every shape.

Keras layout (vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5): root attr `layer_names`,
one group per layer with attr `weight_names`; kernels are HWIO cross-correlation kernels.

2016 layout (vgg16_weights.h5 of the 2016 Keras post): root attr `nb_layers`, groups `layer_{k}`
with attr `nb_params` and datasets `param_{p}`. Its conv kernels are Theano-ordered
(out, in, kh, kw) for a true convolution, and fc1's rows follow a channels-first flatten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from render.models.layers import NUM_CLASSES, TOP_INPUT_SIZE, TOP_SIDE, vgg_table
from render.models.network import Layer
from render.models.vgg import ARCHITECTURES, VGG

__all__ = ["TOP_SIDE", "WeightsError", "WeightsInfo", "load_weights", "random_params"]


def _tables(architecture: str) -> tuple[tuple[Layer, ...], tuple[Layer, ...]]:
    table = vgg_table(ARCHITECTURES[architecture])
    return (
        tuple(layer for layer in table if layer.kind == "conv"),
        tuple(layer for layer in table if layer.kind == "dense"),
    )


class WeightsError(ValueError):
    pass


@dataclass(frozen=True)
class WeightsInfo:
    path: str
    layout: str  # "keras" or "theano2016"
    has_top: bool
    width_divisor: int


def theano_conv_to_hwio(kernel: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) true-convolution kernel -> HWIO cross-correlation kernel.

    A true convolution is a cross-correlation with the kernel rotated by 180 degrees, hence
    the spatial flip (Keras' convert_kernel) before the transpose.
    """
    return np.ascontiguousarray(kernel[:, :, ::-1, ::-1].transpose(2, 3, 1, 0))


def chw_rows_to_hwc(kernel: np.ndarray, channels: int, side: int = TOP_SIDE) -> np.ndarray:
    """Reorder fc1's rows from a channels-first (c, h, w) flatten to the NHWC (h, w, c) one."""
    out = kernel.shape[1]
    return np.ascontiguousarray(
        kernel.reshape(channels, side, side, out).transpose(1, 2, 0, 3).reshape(-1, out)
    )


def _open(path: str, network: str = "VGG16") -> h5py.File:
    if not os.path.isfile(path):
        raise WeightsError(
            f"weights file not found: {path} (pass weights=imagenet to download the official "
            f"file, or weights=/path/to/{network.lower()}.h5)"
        )
    if not h5py.is_hdf5(path):
        hint = " (a .keras file: use model=keras model.file=...)" if path.endswith(".keras") else ""
        raise WeightsError(
            f"{path} is not an HDF5 file: expected Keras {network} weights (.h5){hint}"
        )
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise WeightsError(f"{path} is truncated or damaged ({err}); fetch it again") from None


def _attr_strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _keras_datasets(root: h5py.Group) -> dict[str, list[h5py.Dataset]]:
    found = {}
    for name in _attr_strings(root.attrs["layer_names"]):
        group = root[name]
        weight_names = _attr_strings(group.attrs.get("weight_names", []))
        if weight_names:
            found[name] = [group[w] for w in weight_names]
    return found


def _theano_datasets(f: h5py.File, path: str, architecture: str) -> dict[str, list[h5py.Dataset]]:
    CONV_LAYERS, DENSE_LAYERS = _tables(architecture)
    with_params = []
    for k in range(int(f.attrs["nb_layers"])):
        group = f[f"layer_{k}"]
        params = [group[f"param_{p}"] for p in range(int(group.attrs["nb_params"]))]
        if params:
            with_params.append(params)
    convs = [p for p in with_params if p[0].ndim == 4]
    denses = [p for p in with_params if p[0].ndim == 2]
    if len(convs) != len(CONV_LAYERS) or len(denses) not in (0, len(DENSE_LAYERS)):
        raise WeightsError(
            f"{path} has {len(convs)} convolution and {len(denses)} dense layers; "
            f"{architecture.upper()} has "
            f"{len(CONV_LAYERS)} and {len(DENSE_LAYERS)} (or none): is it another network?"
        )
    names = [layer.name for layer in CONV_LAYERS] + [layer.name for layer in DENSE_LAYERS]
    return dict(zip(names, convs + denses, strict=False))


def _expected_shapes(layer, width_divisor: int, layout: str) -> tuple[tuple, tuple]:
    d = width_divisor
    out = layer.channels // d if layer.name != "predictions" else NUM_CLASSES
    if layer.kind == "conv":
        cin = 3 if layer.in_channels == 3 else layer.in_channels // d
        kernel = (out, cin, 3, 3) if layout == "theano2016" else (3, 3, cin, out)
    else:
        kernel = (layer.in_channels // d, out)
    return kernel, (out,)


def _check_layer(path, layer, datasets, width_divisor, layout, architecture) -> None:
    if len(datasets) != 2:
        raise WeightsError(f"{path}: layer {layer.name} has {len(datasets)} arrays, expected 2")
    expected = _expected_shapes(layer, width_divisor, layout)
    for what, dataset, shape in zip(("kernel", "bias"), datasets, expected, strict=True):
        if tuple(dataset.shape) != shape:
            raise WeightsError(
                f"{path}: layer {layer.name} has {what} shape {tuple(dataset.shape)}, "
                f"{architecture.upper()} needs {shape}: is it another network?"
            )


def _read_layer(path, layer, datasets, width_divisor, layout, last_conv) -> dict[str, np.ndarray]:
    try:
        kernel, bias = (np.asarray(d, dtype=np.float32) for d in datasets)
    except OSError as err:
        raise WeightsError(
            f"{path}: cannot read layer {layer.name} ({err}): the file is truncated or damaged"
        ) from None
    if layout == "theano2016" and layer.kind == "conv":
        kernel = theano_conv_to_hwio(kernel)
    if layout == "theano2016" and layer.name == "fc1":
        kernel = chw_rows_to_hwc(kernel, last_conv.channels // width_divisor)
    return {"kernel": kernel, "bias": bias}


def load_weights(
    path: str, need_top: bool = False, read: bool = True, architecture: str = "vgg16"
) -> tuple[dict | None, WeightsInfo]:
    """Load a VGG16 (or VGG19) weights file as Flax params; the layout is detected from the file.

    Every shape is checked first; with read=False only the check runs and params is None.
    """
    CONV_LAYERS, DENSE_LAYERS = _tables(architecture)
    LAYER_NAMES = {layer.name for layer in CONV_LAYERS + DENSE_LAYERS}
    network = architecture.upper()
    with _open(path, network) as f:
        try:
            if "layer_names" in f.attrs:
                layout, found = "keras", _keras_datasets(f)
            elif "model_weights" in f and "layer_names" in f["model_weights"].attrs:
                layout, found = "keras", _keras_datasets(f["model_weights"])
            elif "nb_layers" in f.attrs:
                layout, found = "theano2016", _theano_datasets(f, path, architecture)
            else:
                raise WeightsError(
                    f"{path} is HDF5 but not Keras weights (no 'layer_names' or 'nb_layers')"
                )
        except (KeyError, OSError) as err:
            raise WeightsError(f"{path}: damaged weights file ({err})") from None
        foreign = [name for name in found if name not in LAYER_NAMES]
        if foreign:
            other = "vgg19" if architecture == "vgg16" else "vgg16"
            other_names = {layer.name for layer in vgg_table(ARCHITECTURES[other])}
            if set(found) <= other_names:
                hint = f"{other.upper()} weights? use model={other}"
            else:
                hint = f"a model of your own? use model=keras model.file={path}"
            raise WeightsError(f"{path} has layer '{foreign[0]}', which {network} does not: {hint}")
        missing = [layer.name for layer in CONV_LAYERS if layer.name not in found]
        if missing:
            raise WeightsError(
                f"{path} has no layer '{missing[0]}': not complete {network} weights"
            )
        has_top = all(layer.name in found for layer in DENSE_LAYERS)
        if need_top and not has_top:
            raise WeightsError(
                f"{path} has no fully connected top (a notop file); this objective needs the "
                f"full file {architecture}_weights_tf_dim_ordering_tf_kernels.h5 (weights=imagenet "
                "downloads it)"
            )
        first = found["block1_conv1"][0].shape
        first_out = first[0] if layout == "theano2016" else first[-1]
        if first_out <= 0 or CONV_LAYERS[0].channels % first_out:
            raise WeightsError(f"{path}: block1_conv1 has {first_out} filters, {network} has 64")
        divisor = CONV_LAYERS[0].channels // first_out
        layers = CONV_LAYERS + (DENSE_LAYERS if need_top else ())
        for layer in layers:
            _check_layer(path, layer, found[layer.name], divisor, layout, architecture)
        info = WeightsInfo(path, layout, has_top, divisor)
        if not read:
            return None, info
        params = {
            layer.name: _read_layer(
                path, layer, found[layer.name], divisor, layout, CONV_LAYERS[-1]
            )
            for layer in layers
        }
    return {"params": params}, info


def random_params(
    seed: int = 0, width_divisor: int = 1, top: bool = True, architecture: str = "vgg16"
) -> dict:
    """Seeded He-normal weights, for smoke runs and tests (never a result to show)."""
    model = VGG(width_divisor=width_divisor, blocks=ARCHITECTURES[architecture])
    upto = "predictions" if top else _tables(architecture)[0][-1].name
    size = TOP_INPUT_SIZE if top else 32
    dummy = jnp.zeros((1, size, size, 3), jnp.float32)
    params = jax.jit(lambda key: model.init(key, dummy, upto=upto))(jax.random.key(seed))
    return jax.tree.map(np.asarray, params)
