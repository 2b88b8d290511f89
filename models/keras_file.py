"""A Keras 3 model file (.keras or .h5) read without Keras, and run as a chain of JAX layers.

`read_keras_file` gives the model's config and its weights by layer name; `chain_network` turns
a model that is a plain chain of common layers (Sequential, or Functional with one path from
input to output, nested models flattened) into a `Network` whose features are pure JAX. Any
other model raises `NotAChainError`, and the caller runs it through Keras instead.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from render.models.network import CONVENTIONS, Convention, Layer, find_layer, receptive_fields
from render.models.vgg import max_pool_2x2, per_image_channel, redirected_relu

DEFAULT_INPUT_SIZE = 224  # when the file does not fix a square input


class KerasFileError(ValueError):
    pass


class NotAChainError(KerasFileError):
    """The model is not a chain of the layers this reader runs; Keras itself can run it."""


# ---------------------------------------------------------------------------------------------
# Reading the file


def read_keras_file(path: str | Path) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """The model config (as in config.json) and each layer's variables, in Keras' order
    (Conv2D/Dense: kernel, bias; BatchNormalization: gamma, beta, moving_mean,
    moving_variance, less gamma or beta when `scale` or `center` is off), by layer name.

    `.keras` is a zip of config.json and model.weights.h5; `.h5` is the legacy single HDF5 file
    of `model.save("m.h5")`. Every problem is a `KerasFileError` of one line.
    """
    path = Path(path)
    if not path.is_file():
        raise KerasFileError(
            f"{path} does not exist: pass the path of a model saved with model.save('{path.name}')"
        )
    if path.suffix == ".keras" or (path.suffix not in (".h5", ".hdf5") and _is_zip(path)):
        return _read_zip(path)
    if h5py.is_hdf5(path):
        return _read_h5(path)
    if path.suffix in (".h5", ".hdf5"):
        raise KerasFileError(
            f"{path} is not a readable HDF5 file (corrupt or truncated): save it again with "
            f"model.save('{path.name}')"
        )
    raise KerasFileError(
        f"{path} is not a Keras model file (neither a .keras zip nor HDF5): save the model with "
        f"model.save('{path.stem}.keras')"
    )


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(4) == b"PK\x03\x04"


def _read_zip(path: Path) -> tuple[dict, dict[str, list[np.ndarray]]]:
    corrupt = KerasFileError(
        f"{path} is not a readable Keras file (corrupt or truncated zip): save it again with "
        f"model.save('{path.name}')"
    )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise KerasFileError(
                    f"{path} is a zip without config.json and model.weights.h5, not a Keras 3 "
                    f"model: save the model with model.save('{path.stem}.keras')"
                )
            config = json.loads(archive.read("config.json"))
            with archive.open("model.weights.h5") as member:
                weights_bytes = member.read()
        with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
            weights = _zip_weights(h5, config)
    except KerasFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError):
        raise corrupt from None
    return config, weights


def _zip_weights(h5: h5py.File, config: dict) -> dict[str, list[np.ndarray]]:
    """Each layer's `vars/0..n` group. Keras names the groups after layer classes
    (layers/conv2d_1/vars), and records the layer's own name in the group's `name` attribute;
    files without that attribute are matched by rebuilding Keras' class-based paths."""
    groups: list[h5py.Group] = []

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Group) and name.split("/")[-1] == "vars" and len(item):
            groups.append(item)

    h5.visititems(visit)
    if all("name" in group.attrs for group in groups):
        named = {_text(group.attrs["name"]): group for group in groups}
    else:
        named = {layer: h5[path]["vars"] for path, layer in _saved_paths(config) if path in h5}
    return {name: _vars(group) for name, group in named.items() if len(group)}


def _vars(group: h5py.Group) -> list[np.ndarray]:
    return [_array(group[str(i)]) for i in range(len(group))]


def _array(dataset: h5py.Dataset) -> np.ndarray:
    if dataset.attrs.get("dtype") == "bfloat16":
        return np.array(dataset, dtype=jnp.bfloat16).astype(np.float32)
    return np.asarray(dataset)


def _saved_paths(config: dict, prefix: str = ""):
    """(HDF5 path, layer name) of every layer, as .keras files name them: snake-cased class
    names, numbered in each model's layer order (a Sequential's input layer has none)."""
    used: dict[str, int] = {}
    for layer in config["config"]["layers"]:
        if config["class_name"] == "Sequential" and layer["class_name"] == "InputLayer":
            continue
        key = _snake(layer["class_name"])
        used[key] = used.get(key, -1) + 1
        path = f"{prefix}layers/{key}" + (f"_{used[key]}" if used[key] else "")
        if _is_model(layer):
            yield from _saved_paths(layer, path + "/")
        else:
            yield path, layer["config"]["name"]


def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_h5(path: Path) -> tuple[dict, dict[str, list[np.ndarray]]]:
    try:
        with h5py.File(path, "r") as h5:
            if "model_config" not in h5.attrs or "model_weights" not in h5:
                raise KerasFileError(
                    f"{path} holds weights only, not a model (no model_config): save the whole "
                    f"model with model.save('{path.stem}.keras')"
                )
            config = json.loads(_text(h5.attrs["model_config"]))
            layers = config["config"]["layers"]
            nested = {layer["config"]["name"] for layer in layers if _is_model(layer)}
            weights: dict[str, list[np.ndarray]] = {}
            root = h5["model_weights"]
            for layer in map(_text, root.attrs.get("layer_names", [])):
                for weight in map(_text, root[layer].attrs.get("weight_names", [])):
                    # a nested model's group holds its layers' variables, named layer/variable
                    owner = weight.split("/")[-2] if layer in nested else layer
                    weights.setdefault(owner, []).append(_array(root[layer][weight]))
    except KerasFileError:
        raise
    except (OSError, KeyError, ValueError):
        raise KerasFileError(
            f"{path} is not a readable Keras .h5 model (corrupt or truncated): save it again "
            f"with model.save('{path.name}')"
        ) from None
    return config, weights


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# The chain of layers


MODEL_CLASSES = {"Sequential", "Functional", "Model"}
SUPPORTED = {
    "InputLayer",
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dense",
    "BatchNormalization",
    "Dropout",
    "Activation",
    "Rescaling",
    "ReLU",
    "ZeroPadding2D",
}


def _is_model(layer: dict) -> bool:
    return layer["class_name"] in MODEL_CLASSES


def _mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


# Keras' activations by their saved names (with Keras' defaults where jax's differ)
ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": partial(jax.nn.leaky_relu, negative_slope=0.2),
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "celu": jax.nn.celu,
    "gelu": partial(jax.nn.gelu, approximate=False),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "hard_silu": jax.nn.hard_silu,
    "hard_swish": jax.nn.hard_silu,
    "log_sigmoid": jax.nn.log_sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "exponential": jnp.exp,
    "mish": _mish,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
}
ACROSS_CHANNELS = {"softmax", "log_softmax"}  # not elementwise: need every channel


@dataclass(frozen=True)
class Step:
    """One layer as the chain runs it. op: conv, dense, max_pool, avg_pool, flatten,
    global_avg, global_max, affine (x * scale + shift: BatchNormalization), rescale (the same,
    for Rescaling), activation, relu (Keras' ReLU with options), pad, identity (Dropout)."""

    name: str
    op: str
    activation: str = "linear"
    window: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    pads: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    relu: tuple[float, float | None, float] = (0.0, None, 0.0)  # slope, max_value, threshold
    folded: bool = False  # a BatchNormalization folded into the conv or dense before it


@dataclass(frozen=True)
class ChainNetwork:
    """A Keras chain model as a `Network`: `steps` run in order, up to the requested layer.

    A BatchNormalization right after a Conv2D or Dense without activation is folded into it
    (its scale and shift multiply the kernel and bias as the chain runs past it); that layer
    stays in `layers`, marked not visualizable, and asking for it still gives Keras' values, as
    does asking for the Conv2D or Dense before it (computed without the fold). Layer kinds:
    "conv" for a spatial output, "dense" for a vector, "flatten" for Flatten.
    """

    name: str
    layers: tuple[Layer, ...]
    input_size: int
    fixed_size: bool
    convention: Convention
    labels: tuple[str, ...] | None
    head: str | None
    steps: tuple[Step, ...]

    def features(
        self,
        params,
        images: jax.Array,
        layer: str,
        channels: jax.Array | None = None,
        redirect: jax.Array | None = None,
    ) -> jax.Array:
        """Output of `layer` for NHWC images (post-activation; pre-softmax for a Dense with
        softmax); with `channels` (B,), image b's channel channels[b] only."""
        target = find_layer(self.layers, layer).name
        return dict(self._run(params, images, {target}, channels, redirect))[target]

    def features_many(self, params, images: jax.Array, layers: list[str]) -> dict:
        """{layer: features} of several layers in one pass, up to the deepest."""
        wanted = {find_layer(self.layers, name).name: name for name in layers}
        return {wanted[name]: y for name, y in self._run(params, images, set(wanted))}

    def _run(self, params, x, targets: set[str], channels=None, redirect=None):
        """(name, output) of each target, in order; nothing past the last one runs. With
        `channels`, there is one target."""
        remaining, i = set(targets), 0
        while remaining:
            step, step_params = self.steps[i], params.get(self.steps[i].name, {})
            after = self.steps[i + 1] if i + 1 < len(self.steps) else None
            if step.name not in remaining and after is not None and after.folded:
                bn = params[after.name]
                step_params = {
                    "kernel": step_params["kernel"] * bn["scale"],
                    "bias": step_params["bias"] * bn["scale"] + bn["shift"],
                }
                step, i = dataclasses.replace(step, name=after.name), i + 1
            wanted = step.name in remaining
            x = _apply(step, step_params, x, channels if wanted else None, redirect, wanted)
            if wanted:
                yield step.name, x
                remaining.discard(step.name)
                if step.op == "dense" and step.activation == "softmax":
                    x = jax.nn.softmax(x)  # the logits were returned; later layers take this
            i += 1


def _apply(step: Step, params, x, channels=None, redirect=None, logits=False) -> jax.Array:
    """One step; with `channels`, image b's channel channels[b] of its output only. `logits`
    leaves out a Dense layer's softmax."""
    if step.op in ("conv", "dense"):
        softmax_head = logits and step.op == "dense" and step.activation == "softmax"
        activation = "linear" if softmax_head else step.activation
        linear = _conv(step) if step.op == "conv" else _dense
        kernel, bias = params["kernel"], params["bias"]
        if channels is not None and activation not in ACROSS_CHANNELS:
            y = per_image_channel(linear, x, kernel, bias, channels)
            return _activate(activation, y, redirect)
        y = _activate(activation, linear(x, kernel) + bias, redirect)
    else:
        y = _other(step, params, x, redirect)
    return y if channels is None else _select(y, channels)


def _conv(step: Step):
    def linear(x, kernel):
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides=step.strides,
            padding=step.padding.upper(),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=lax.Precision.HIGHEST,
        )

    return linear


def _dense(x, kernel):
    return jnp.dot(x, kernel, precision=lax.Precision.HIGHEST)


def _other(step: Step, params, x, redirect) -> jax.Array:
    if step.op in ("affine", "rescale"):
        return x * params["scale"] + params["shift"]
    if step.op == "activation":
        return _activate(step.activation, x, redirect)
    if step.op == "relu":
        slope, max_value, threshold = step.relu
        y = jnp.where(x > threshold, x, 0.0)
        if max_value is not None:
            y = jnp.clip(y, 0.0, max_value)
        return y - slope * jax.nn.relu(threshold - x) if slope else y
    if step.op == "max_pool":
        if step.window == step.strides == (2, 2) and step.padding == "valid":
            return max_pool_2x2(x)
        return _pool(x, -np.inf, lax.max, step)
    if step.op == "avg_pool":
        total = _pool(x, 0.0, lax.add, step)
        if step.padding == "valid":
            return total / (step.window[0] * step.window[1])
        # Keras averages a 'same' window over its positions inside the image only
        return total / _pool(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, lax.add, step)
    if step.op == "pad":
        return jnp.pad(x, ((0, 0), *step.pads, (0, 0)))
    if step.op == "flatten":
        return x.reshape(x.shape[0], -1)  # NHWC order, as Keras' channels_last
    if step.op == "global_avg":
        return x.mean(axis=(1, 2))
    if step.op == "global_max":
        return x.max(axis=(1, 2))
    if step.op == "identity":
        return x
    raise AssertionError(step.op)


def _pool(x, init, reduce, step: Step) -> jax.Array:
    window, strides = (1, *step.window, 1), (1, *step.strides, 1)
    return lax.reduce_window(x, init, reduce, window, strides, step.padding.upper())


def _activate(name: str, x, redirect) -> jax.Array:
    if name == "relu" and redirect is not None:
        return redirected_relu(x, redirect)
    return ACTIVATIONS[name](x)


def _select(y: jax.Array, channels: jax.Array) -> jax.Array:
    index = channels.reshape((-1,) + (1,) * (y.ndim - 1))
    return jnp.take_along_axis(y, index, axis=-1)[..., 0]


def chain_network(
    config: dict,
    weights: dict[str, list[np.ndarray]],
    preprocess: str,
    labels: tuple[str, ...] | list[str] | None = None,
    name: str | None = None,
) -> tuple[ChainNetwork, dict]:
    """The network and its params (jnp arrays by layer name) of a chain model read by
    `read_keras_file`; `preprocess` names its input convention (caffe, tf, torch, unit).
    Raises NotAChainError naming the first layer it cannot run."""
    if preprocess not in CONVENTIONS:
        raise KerasFileError(
            f"unknown preprocess '{preprocess}': use one of {', '.join(CONVENTIONS)}"
        )
    chain = _chain_layers(config)
    shape = _input_shape(chain[0])
    steps, params = [], {}
    for previous, layer in zip(chain, chain[1:], strict=False):
        step, step_params = _step(layer, previous, weights.get(layer["config"]["name"], []))
        steps.append(step)
        if step_params:
            params[step.name] = {k: jnp.asarray(v, jnp.float32) for k, v in step_params.items()}
    names = [step.name for step in steps]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise NotAChainError(f"two layers are named '{twice}' (a nested model reuses a name)")
    ops = [step.op for step in steps]
    fixed = "flatten" in ops and "dense" in ops[ops.index("flatten") :]
    height, width = shape[1], shape[2]
    square = height is not None and height == width
    if fixed and not square:
        raise KerasFileError(
            f"the model's input is {height}x{width} and its dense head fixes it: only square "
            "inputs can be rendered"
        )
    size = height if square else DEFAULT_INPUT_SIZE
    network = ChainNetwork(
        name=name or f"keras:{config['config'].get('name', 'model')}",
        layers=_layer_table(steps, params, (size, size, shape[3] or 3)),
        input_size=size,
        fixed_size=fixed,
        convention=CONVENTIONS[preprocess],
        labels=tuple(labels) if labels is not None else None,
        head=_head(steps),
        steps=tuple(steps),
    )
    return network, params


def load_keras_file(
    path: str | Path, preprocess: str, labels: tuple[str, ...] | list[str] | None = None
) -> tuple[ChainNetwork, dict]:
    """`chain_network` of a model file, named keras:<file name>."""
    config, weights = read_keras_file(path)
    return chain_network(config, weights, preprocess, labels, name=f"keras:{Path(path).name}")


def _chain_layers(config: dict) -> list[dict]:
    """The model's layer configs in order, nested models flattened, one input layer first."""
    _check_classes(config)
    flat = _flatten(config)
    if flat[0]["class_name"] != "InputLayer":
        built = flat[0].get("build_config", {}).get("input_shape")
        flat.insert(0, {"class_name": "InputLayer", "config": {"batch_shape": built}})
    return [flat[0]] + [layer for layer in flat[1:] if layer["class_name"] != "InputLayer"]


def _check_classes(config: dict) -> None:
    for layer in config["config"]["layers"]:
        if _is_model(layer):
            _check_classes(layer)
        elif layer["class_name"] not in SUPPORTED:
            raise NotAChainError(
                f"layer '{layer['config'].get('name')}' is a {layer['class_name']}, which the "
                "pure-JAX chain reader does not run"
            )


def _flatten(config: dict) -> list[dict]:
    layers = config["config"]["layers"]
    if config["class_name"] != "Sequential":
        layers = _functional_order(config["config"])
    flat = []
    for layer in layers:
        flat.extend(_flatten(layer) if _is_model(layer) else [layer])
    return flat


def _functional_order(model: dict) -> list[dict]:
    """A Functional model's layers from input to output, when they form a single path."""
    by_name = {layer["config"]["name"]: layer for layer in model["layers"]}
    ends = [_endpoints(model[key]) for key in ("input_layers", "output_layers")]
    if len(ends[0]) != 1 or len(ends[1]) != 1:
        raise NotAChainError(
            f"model '{model.get('name')}' has {len(ends[0])} inputs and {len(ends[1])} outputs"
        )
    order, current = [], ends[1][0]
    while True:
        layer = by_name[current]
        order.append(layer)
        nodes = layer.get("inbound_nodes", [])
        if not nodes:
            break
        sources = _inbound_names(nodes)
        if len(nodes) != 1 or len(sources) != 1:
            raise NotAChainError(
                f"layer '{current}' ({layer['class_name']}) takes {len(sources)} inputs or is "
                "called more than once: not a chain"
            )
        current = sources[0]
    if current != ends[0][0] or len(order) != len(by_name):
        raise NotAChainError(f"model '{model.get('name')}' is not a single path of layers")
    return order[::-1]


def _endpoints(spec) -> list[str]:
    if spec and isinstance(spec[0], str):
        return [spec[0]]
    return [item[0] for item in spec]


def _inbound_names(item) -> list[str]:
    """Names of the layers whose outputs a node takes (Keras 3 and Keras 2 configs)."""
    if isinstance(item, dict):
        if item.get("class_name") == "__keras_tensor__":
            return [item["config"]["keras_history"][0]]
        return [name for value in item.values() for name in _inbound_names(value)]
    if isinstance(item, list):
        if len(item) >= 3 and isinstance(item[0], str) and isinstance(item[1], int):
            return [item[0]]
        return [name for value in item for name in _inbound_names(value)]
    return []


def _input_shape(layer: dict) -> tuple:
    config = layer["config"]
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if shape is None:
        return (None, None, None, 3)
    if len(shape) != 4:
        raise NotAChainError(f"the input is {shape}, not a batch of images (B, H, W, C)")
    return tuple(shape)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _activation_name(value, layer: dict) -> str:
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")
    if value is None:
        return "linear"
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise NotAChainError(
            f"layer '{layer['config']['name']}' has activation {value!r}, which the pure-JAX "
            "chain reader does not run"
        )
    return value


def _step(layer: dict, previous: dict, arrays: list[np.ndarray]) -> tuple[Step, dict]:
    """The step of one layer config and its params (numpy)."""
    cls, config = layer["class_name"], layer["config"]
    name = config["name"]

    def unsupported(option: str) -> NotAChainError:
        return NotAChainError(
            f"layer '{name}' is a {cls} with {option}, which the pure-JAX chain reader does not run"
        )

    if config.get("data_format", "channels_last") != "channels_last":
        raise unsupported(f"data_format {config['data_format']}")
    if cls in ("Conv2D", "Dense"):
        activation = _activation_name(config.get("activation"), layer)
        kernel = arrays[0]
        bias = arrays[1] if config.get("use_bias", True) else np.zeros(kernel.shape[-1])
        if cls == "Dense":
            return Step(name, "dense", activation), {"kernel": kernel, "bias": bias}
        if _pair(config.get("dilation_rate", 1)) != (1, 1):
            raise unsupported(f"dilation_rate {config['dilation_rate']}")
        if config.get("groups", 1) != 1:
            raise unsupported(f"groups={config['groups']}")
        if config["padding"] not in ("same", "valid"):
            raise unsupported(f"padding '{config['padding']}'")
        step = Step(
            name,
            "conv",
            activation,
            window=_pair(config["kernel_size"]),
            strides=_pair(config["strides"]),
            padding=config["padding"],
        )
        return step, {"kernel": kernel, "bias": bias}
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        window = _pair(config["pool_size"])
        strides = window if config.get("strides") is None else _pair(config["strides"])
        op = "max_pool" if cls == "MaxPooling2D" else "avg_pool"
        return Step(name, op, window=window, strides=strides, padding=config["padding"]), {}
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        if config.get("keepdims"):
            raise unsupported("keepdims=True")
        return Step(name, "global_avg" if "Average" in cls else "global_max"), {}
    if cls == "BatchNormalization":
        axis = config.get("axis", -1)
        if axis not in (-1, 3, [-1], [3]):
            raise unsupported(f"axis {axis}")
        rest = list(arrays)
        gamma = rest.pop(0) if config.get("scale", True) else 1.0
        beta = rest.pop(0) if config.get("center", True) else 0.0
        mean, variance = rest
        scale = gamma / np.sqrt(variance + config.get("epsilon", 1e-3))
        foldable = previous["class_name"] in ("Conv2D", "Dense") and (
            previous["config"].get("activation") in (None, "linear")
        )
        step = Step(name, "affine", folded=foldable)
        return step, {"scale": scale, "shift": beta - mean * scale}
    if cls == "Rescaling":
        scale = np.asarray(config.get("scale", 1.0), np.float32)
        offset = np.asarray(config.get("offset", 0.0), np.float32)
        return Step(name, "rescale"), {"scale": scale, "shift": offset}
    if cls == "Activation":
        return Step(name, "activation", _activation_name(config["activation"], layer)), {}
    if cls == "ReLU":
        slope = float(config.get("negative_slope") or 0.0)
        threshold = float(config.get("threshold") or 0.0)
        max_value = config.get("max_value")
        if (slope, max_value, threshold) == (0.0, None, 0.0):
            return Step(name, "activation", "relu"), {}
        return Step(name, "relu", relu=(slope, max_value, threshold)), {}
    if cls == "ZeroPadding2D":
        padding = config["padding"]
        if isinstance(padding, int) or isinstance(padding[0], int):
            (top, left) = _pair(padding)
            pads = ((top, top), (left, left))
        else:
            pads = (_pair(padding[0]), _pair(padding[1]))
        return Step(name, "pad", pads=pads), {}
    if cls == "Flatten":
        return Step(name, "flatten"), {}
    if cls == "Dropout":
        return Step(name, "identity"), {}
    raise AssertionError(cls)


def _head(steps: list[Step]) -> str | None:
    """The last Dense, when the model ends with it (maybe followed by a softmax Activation)."""
    tail = list(steps)
    while tail and tail[-1].op == "activation" and tail[-1].activation in ("softmax", "linear"):
        tail.pop()
    return tail[-1].name if tail and tail[-1].op == "dense" else None


def _layer_table(steps: list[Step], params: dict, input_shape: tuple) -> tuple[Layer, ...]:
    """Layers with their widths (from the shapes the chain computes) and receptive fields."""
    shapes, x = [], jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    for step in steps:
        shapes.append(
            (x.shape, jax.eval_shape(partial(_apply, step), params.get(step.name, {}), x).shape)
        )
        x = jax.ShapeDtypeStruct(shapes[-1][1], jnp.float32)
    kernels = [
        (step.window[0], step.strides[0], step.padding)
        if step.op in ("conv", "max_pool", "avg_pool")
        else (1, 1, "valid")
        for step in steps
    ]
    fields = receptive_fields(kernels)
    table, shift = [], 0.0
    for index, (step, (before, after)) in enumerate(zip(steps, shapes, strict=True)):
        if step.op == "pad":
            # every later centre moves back by the padded rows, in input pixels
            shift -= step.pads[0][0] * (fields[index - 1][0] if index else 1)
        spatial = len(after) == 4
        stride, field, start = fields[index] if spatial else (0, 0, 0.0)
        match = re.fullmatch(r"block(\d+)_conv(\d+)", step.name)
        table.append(
            Layer(
                name=step.name,
                kind="flatten" if step.op == "flatten" else ("conv" if spatial else "dense"),
                channels=int(after[-1]),
                index=index,
                alias=f"conv{match[1]}_{match[2]}" if match else None,
                stride=stride,
                field=field,
                start=start + shift if spatial else 0.0,
                visualizable=not (step.op in ("flatten", "identity", "rescale") or step.folded),
                in_channels=int(before[-1]),
            )
        )
    return tuple(table)
