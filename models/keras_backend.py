"""Any Keras 3 model as a `Network`, run by Keras itself on its JAX backend.

For graphs that are not a plain chain of layers (ResNet, MobileNetV2, EfficientNet, ConvNeXt:
skip connections, depthwise convolutions, nested application bases). Each layer's features come
from a Keras sub-model called with `stateless_call`, so they trace inside jax.jit, jax.grad and
jax.vmap with the weights passed in as a pytree.

params is `{"trainable": [...], "non_trainable": [...]}`: the values of the full model's
`trainable_variables` and `non_trainable_variables`, as jax arrays, in Keras' order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from render.models.network import CONVENTIONS, Convention, Layer, find_layer

DEFAULT_INPUT_SIZE = 224

# Layers that map each position to the same position: the receptive field passes through.
_POINTWISE = {
    "Activation",
    "BatchNormalization",
    "Dropout",
    "ELU",
    "GaussianDropout",
    "GaussianNoise",
    "GroupNormalization",
    "Identity",
    "LayerNormalization",
    "LayerScale",
    "LeakyReLU",
    "Normalization",
    "PReLU",
    "ReLU",
    "Rescaling",
    "Softmax",
    "SpatialDropout2D",
    "StochasticDepth",
}
_MERGES = {"Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract"}
_CONVS = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D"}
_POOLS = {"AveragePooling2D", "MaxPooling2D"}
_GLOBAL_POOLS = {"GlobalAveragePooling2D", "GlobalMaxPooling2D"}
_NOT_VISUALIZABLE = {"InputLayer", "Flatten", "Dropout", "Reshape"}


class KerasMissingError(ValueError):
    pass


def _import_keras(path: str):
    """Keras 3 on the JAX backend, or a one-line error saying what is wrong."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError as error:
        if not (error.name or "keras").startswith("keras"):
            raise  # Keras is there but its configured backend is not
        raise KerasMissingError(
            f"{path} needs Keras 3 to run (its graph is not a plain chain of layers): "
            "pip install -e '.[keras]'"
        ) from None
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"{path} runs through Keras on its JAX backend, but Keras is already loaded with the "
            f"{backend} backend: set KERAS_BACKEND=jax before anything imports keras"
        )
    return keras


def _graph(model):
    """The functional graph of a model (a built Sequential keeps one inside)."""
    # Keras has no public view of a graph's calls (nodes): its private attributes are used here
    graph = getattr(model, "_functional", model)
    if graph is None or not hasattr(graph, "_nodes_by_depth"):
        raise ValueError(f"Keras model {model.name} has no built graph (give it an Input shape)")
    return graph


def _nodes(graph) -> list:
    """The graph's calls in execution order."""
    order = {id(op): i for i, op in enumerate(graph.operations)}
    by_depth = sorted(graph._nodes_by_depth.items(), key=lambda item: -item[0])
    return [n for _, nodes in by_depth for n in sorted(nodes, key=lambda n: order[id(n.operation)])]


def _spatial(tensor) -> bool:
    return len(tensor.shape) == 4


# A receptive field is (stride, field, start) for a spatial tensor, field 0 where it is
# unknown; None for a tensor with no spatial map (or one computed from such a tensor, such as a
# squeeze-excitation gate: global context is not counted in the field). Kernels and strides are
# taken along the height, as Layer has one field for both axes.


def _kernel_step(rf, kernel: int, step: int, before: int):
    stride, field, start = rf
    start = start + ((kernel - 1) / 2 - before) * stride
    return stride * step, field + (kernel - 1) * stride if field else 0, start


def _same_before(kernel: int, step: int, size: int | None) -> int:
    """Padding before the first position of Keras' 'same' (TensorFlow's rule)."""
    rest = (size or 0) % step
    return max(kernel - (step if rest == 0 else rest), 0) // 2


def _receptive_field(layer, node, fields: list):
    """The receptive field of one layer call's output, from those of its inputs."""
    kind = type(layer).__name__
    spatial = [rf for rf in fields if rf is not None]
    if not node.outputs or not _spatial(node.outputs[0]) or not spatial or kind in _GLOBAL_POOLS:
        return None
    if kind in _MERGES or (kind in _POINTWISE and len(spatial) == 1):
        stride = max(rf[0] for rf in spatial)
        if any(rf[1] == 0 for rf in spatial):
            return stride, 0, 0.0
        widest = max(spatial, key=lambda rf: rf[1])
        return stride, widest[1], widest[2]
    rf = spatial[0]
    size = node.input_tensors[0].shape[1]
    if kind in _CONVS or kind in _POOLS:
        kernel = layer.kernel_size[0] if kind in _CONVS else layer.pool_size[0]
        step = layer.strides[0]
        if kind in _CONVS:
            kernel = (kernel - 1) * layer.dilation_rate[0] + 1
        before = _same_before(kernel, step, size) if layer.padding == "same" else 0
        return _kernel_step(rf, kernel, step, before)
    if kind == "ZeroPadding2D":
        return rf[0], rf[1], rf[2] - layer.padding[0][0] * rf[0]
    if kind == "Cropping2D":
        return rf[0], rf[1], rf[2] + layer.cropping[0][0] * rf[0]
    if kind in ("Dense", "EinsumDense"):  # on a map: one position at a time
        return rf
    out = node.outputs[0].shape[1]
    stride = max(1, round(rf[0] * size / out)) if size and out else rf[0]
    return stride, 0, 0.0


class KerasNetwork:
    """A Keras 3 model behind the `Network` interface (see the module docstring for params).

    `redirect` is ignored: Keras computes its own ReLUs. fixed_size holds when the input shape
    has a concrete height and width and a Flatten or Reshape turns a map larger than 1x1 into a
    vector (a dense head then needs exactly that many inputs); a head after global pooling
    takes any size.
    """

    def __init__(self, keras, model, name: str, convention: Convention, labels):
        self._keras = keras
        self._model = model
        self.name = name
        self.convention = convention
        self.labels = tuple(labels) if labels is not None else None
        if len(model.inputs) != 1:
            raise ValueError(f"{name} takes {len(model.inputs)} inputs; render needs one image")
        height, width = model.inputs[0].shape[1:3]
        self.input_size = height or DEFAULT_INPUT_SIZE
        self._positions = {}
        for group in ("trainable", "non_trainable"):
            for i, variable in enumerate(getattr(model, f"{group}_variables")):
                self._positions[id(variable)] = (group, i)
        self._routes: dict[str, tuple] = {}  # layer name -> ((graph, output tensors), ...)
        self._head_route: tuple = ()
        self._layers: dict[str, Any] = {}
        self._submodels: dict[tuple[int, int], Any] = {}
        table = []
        self._walk(model, [(1, 1, 0.0)], (), table, {}, top=True)
        flattens = any(
            type(layer).__name__ in ("Flatten", "Reshape") and _map_larger_than_one(node)
            for _, layer, node, _ in table
        )
        self.fixed_size = bool(height and width and flattens)
        self.layers = tuple(_table_entry(i, *row) for i, row in enumerate(table))
        self.head = self._find_head(table)

    def _walk(self, model, fields, prefix, table, rfs, top=False):
        """Append every layer call of `model` (nested models flattened) to the table, with the
        route from the images to its output; returns the receptive fields of its outputs."""
        graph = _graph(model)
        for tensor, rf in zip(graph.inputs, fields, strict=True):
            rfs[id(tensor)] = rf
        seen = set()
        for node in _nodes(graph):
            layer = node.operation
            inputs = [rfs.get(id(t)) for t in node.input_tensors]
            outputs = tuple(node.outputs)
            if isinstance(layer, self._keras.Model):
                route = (*prefix, (graph, tuple(node.input_tensors)))
                outs = self._walk(layer, inputs, route, table, rfs)
            elif isinstance(layer, self._keras.layers.InputLayer):
                outs = [rfs[id(t)] for t in node.outputs]
                if top:
                    self._add(table, layer, node, outs[0], model, (*prefix, (graph, outputs)))
            else:
                rf = _receptive_field(layer, node, inputs)
                outs = [rf] * len(node.outputs)
                if isinstance(layer, self._keras.layers.Layer) and id(layer) not in seen:
                    seen.add(id(layer))  # a shared layer is listed at its first call
                    self._add(table, layer, node, rf, model, (*prefix, (graph, outputs)))
            for tensor, rf in zip(node.outputs, outs, strict=True):
                rfs[id(tensor)] = rf
        return [rfs.get(id(t)) for t in graph.outputs]

    def _add(self, table, layer, node, rf, model, route) -> None:
        """A table row under the layer's own name, or model/name when an outer layer has it."""
        name = layer.name if layer.name not in self._layers else f"{model.name}/{layer.name}"
        self._layers[name], self._routes[name] = layer, route
        table.append((name, layer, node, rf))

    def _find_head(self, table) -> str | None:
        """The last Dense layer when the model ends with one (or with a softmax after one)."""
        name, layer, node, _ = table[-1]
        kind = type(layer).__name__
        if kind in ("Activation", "Softmax") and len(node.input_tensors) == 1:
            producer = node.input_tensors[0]._keras_history.operation
            matches = [row for row in table if row[1] is producer]
            if matches:
                name, layer, node, _ = matches[-1]
                kind = type(layer).__name__
        if kind != "Dense" or len(node.input_tensors) != 1:
            return None
        *prefix, (graph, _) = self._routes[name]
        self._head_route = (*prefix, (graph, tuple(node.input_tensors)))
        return name

    def params(self) -> dict[str, list[jax.Array]]:
        """The model's current weights as the params pytree."""
        return {
            "trainable": [jnp.asarray(v.value) for v in self._model.trainable_variables],
            "non_trainable": [jnp.asarray(v.value) for v in self._model.non_trainable_variables],
        }

    def _values(self, params, variables) -> list:
        return [params[g][i] for g, i in (self._positions[id(v)] for v in variables)]

    def _run(self, params, x, graph, outputs):
        """One stage of a route: a cached sub-model of `graph` from its inputs to `outputs`."""
        if [id(t) for t in outputs] == [id(t) for t in graph.inputs]:
            return x
        key = (id(graph), id(outputs[0]))
        if key not in self._submodels:
            ends = outputs[0] if len(outputs) == 1 else list(outputs)
            self._submodels[key] = self._keras.Model(graph.inputs, ends)
        sub = self._submodels[key]
        trainable = self._values(params, sub.trainable_variables)
        fixed = self._values(params, sub.non_trainable_variables)
        y, _ = sub.stateless_call(trainable, fixed, x, training=False)
        return y

    def features(
        self,
        params,
        images: jax.Array,
        layer: str,
        channels: jax.Array | None = None,
        redirect: jax.Array | None = None,
    ) -> jax.Array:
        """Activations of `layer` (the head's pre-softmax logits) for images (B, H, W, 3), as
        the Network protocol describes; `redirect` is ignored."""
        del redirect
        name = layer if layer in self._routes else find_layer(self.layers, layer).name
        head = name == self.head
        x = images
        for graph, outputs in self._head_route if head else self._routes[name]:
            x = self._run(params, x, graph, outputs)
        if head:
            dense = self._layers[name]
            (kernel,) = self._values(params, [dense.kernel])
            x = jnp.matmul(x, kernel)
            if dense.use_bias:
                (bias,) = self._values(params, [dense.bias])
                x = x + bias
        if channels is None:
            return x
        index = channels.reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.take_along_axis(x, index, axis=-1)[..., 0]


def _map_larger_than_one(node) -> bool:
    shape = node.input_tensors[0].shape if node.input_tensors else ()
    return len(shape) == 4 and (shape[1] or 2) * (shape[2] or 2) > 1


def _table_entry(index: int, name: str, layer, node, rf) -> Layer:
    kind_name = type(layer).__name__
    shape = node.outputs[0].shape if len(node.outputs) == 1 else ()
    kind = {4: "conv", 2: "dense"}.get(len(shape), kind_name.lower())
    visualizable = kind in ("conv", "dense") and kind_name not in _NOT_VISUALIZABLE
    in_shape = node.input_tensors[0].shape if len(node.input_tensors) == 1 else ()
    stride, field, start = rf if rf is not None else (0, 0, 0.0)
    return Layer(
        name=name,
        kind=kind,
        channels=int(shape[-1] or 0) if shape else 0,
        index=index,
        stride=int(stride),
        field=int(field),
        start=float(start),
        visualizable=visualizable,
        in_channels=int(in_shape[-1] or 0) if in_shape else 0,
    )


def keras_network(
    path: str, preprocess: str, labels: Sequence[str] | None = None
) -> tuple[KerasNetwork, dict[str, list[jax.Array]]]:
    """A saved Keras 3 model (.keras) as (network, params); `preprocess` names its input
    convention (caffe, tf, torch or unit)."""
    if preprocess not in CONVENTIONS:
        raise ValueError(f"unknown preprocess '{preprocess}': one of {', '.join(CONVENTIONS)}")
    keras = _import_keras(path)
    model = keras.saving.load_model(path, compile=False)
    network = KerasNetwork(
        keras, model, "keras:" + os.path.basename(path), CONVENTIONS[preprocess], labels
    )
    return network, network.params()
