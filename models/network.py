"""The one interface every network implements: its layers, its input convention, its features.

render/ talks to networks only through `Network`: VGG16 and VGG19 (Flax), a Keras file read as a
chain of layers, any Keras 3 model through Keras itself, or a user's own Flax module.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np


class UnknownLayerError(ValueError):
    pass


@dataclass(frozen=True)
class Convention:
    """How RGB pixels in 0-255 become the network's input: channels reordered (BGR or not), then
    `x * scale + offset` per input channel. Keras' preprocess_input modes, and plain RGB/255."""

    name: str
    bgr: bool
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]

    def to_input(self, rgb):
        """RGB 0-255 (..., 3) -> network input (numpy in, numpy out; jax in, jax out)."""
        xp = jnp if isinstance(rgb, jax.Array) else np
        ordered = rgb[..., ::-1] if self.bgr else rgb
        scale, offset = (xp.asarray(v, dtype=rgb.dtype) for v in (self.scale, self.offset))
        return ordered * scale + offset

    def to_rgb(self, x):
        """Network input -> RGB 0-255, not clipped (the inverse of to_input)."""
        xp = jnp if isinstance(x, jax.Array) else np
        scale, offset = (xp.asarray(v, dtype=x.dtype) for v in (self.scale, self.offset))
        pixels = (x - offset) / scale
        return pixels[..., ::-1] if self.bgr else pixels


_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CONVENTIONS = {
    # BGR minus the ImageNet mean pixel: Keras VGG16/VGG19 and ResNet50 weights
    "caffe": Convention("caffe", True, (1.0, 1.0, 1.0), (-103.939, -116.779, -123.68)),
    "tf": Convention("tf", False, (1 / 127.5,) * 3, (-1.0, -1.0, -1.0)),  # -1..1
    "torch": Convention(
        "torch",
        False,
        tuple(1 / (255.0 * s) for s in _TORCH_STD),
        tuple(-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD, strict=True)),
    ),
    "unit": Convention("unit", False, (1 / 255.0,) * 3, (0.0, 0.0, 0.0)),  # RGB/255
}


@dataclass(frozen=True)
class Layer:
    """One layer of a network, in the network's own order.

    kind: "conv" for any layer with a spatial map (B, H, W, C) (convolutions, pooling,
    activations, blocks...), "dense" for a vector (B, C). `stride` and `field` are the receptive
    field of one output position: input pixels between neighbouring positions, and the side of
    the square of input pixels that one position sees; position i's centre is at input pixel
    `start + i * stride` (before clipping to the image).
    """

    name: str
    kind: str  # "conv" or "dense"; anything else (flatten, dropout, input) is not visualizable
    channels: int
    index: int  # position in the network's order
    alias: str | None = None  # e.g. the 2016 post's conv5_2 for VGG's block5_conv2
    stride: int = 1  # 0 for dense layers
    field: int = 1  # receptive field side in input pixels (0 for dense layers)
    start: float = 0.0  # centre of position 0 in input pixel coordinates
    visualizable: bool = True
    in_channels: int = 0  # channels of the layer's input, where the network records it

    def box(self, y: int, x: int, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Input pixels [x0, y0, x1, y1) seen by map position (y, x), clipped to the image."""
        height, width = image_size
        half = self.field / 2
        cx, cy = self.start + x * self.stride, self.start + y * self.stride
        x0, y0 = max(0, int(np.floor(cx - half + 0.5))), max(0, int(np.floor(cy - half + 0.5)))
        x1 = min(width, int(np.floor(cx + half + 0.5)))
        y1 = min(height, int(np.floor(cy + half + 0.5)))
        return x0, y0, x1, y1


class Network(Protocol):
    """What render needs of a network. Images are in the network's input space (see
    `convention`); params are a pytree passed to `features` (so programs can donate, replicate
    and shard them)."""

    name: str  # what identifies the architecture in run keys and folders, e.g. "vgg16"
    layers: tuple[Layer, ...]
    input_size: int  # default image side
    fixed_size: bool  # a dense head fixes the input size
    convention: Convention
    labels: tuple[str, ...] | None  # names of the head's classes, when it has one
    head: str | None  # the layer whose channels are class logits (pre-softmax), if any

    def features(
        self,
        params,
        images: jax.Array,
        layer: str,
        channels: jax.Array | None = None,
        redirect: jax.Array | None = None,
    ) -> jax.Array:
        """Activations of `layer` (post-activation; the head's pre-softmax logits) for images
        (B, H, W, 3): (B, H', W', C) or (B, C). With `channels` (B,) only image b's channel
        channels[b] is returned, without the channel axis. `redirect` (a 0/1 scalar) switches
        ReLU gradients to the redirected ReLU (see models.vgg16.redirected_relu)."""
        ...


def features_of(network: Network, params, images: jax.Array, layers: list[str]) -> dict:
    """{layer: activations} for several layers, in one pass where the network offers
    `features_many` (VGG does), else one pass per layer."""
    many = getattr(network, "features_many", None)
    if many is not None:
        return many(params, images, layers)
    return {name: network.features(params, images, name) for name in layers}


def _listing(layers: tuple[Layer, ...]) -> str:
    """VGG16's: block1_conv1..block5_conv3 (aliases conv1_1..conv5_3), fc1, fc2, predictions."""
    spatial = [layer for layer in layers if layer.visualizable and layer.kind == "conv"]
    dense = [layer.name for layer in layers if layer.visualizable and layer.kind == "dense"]
    parts = []
    if spatial:
        parts.append(
            f"{spatial[0].name}..{spatial[-1].name}" if len(spatial) > 1 else spatial[0].name
        )
        if spatial[0].alias and spatial[-1].alias:
            parts[0] += f" (aliases {spatial[0].alias}..{spatial[-1].alias})"
    parts += dense if len(dense) <= 4 else [f"{dense[0]}..{dense[-1]}"]
    return ", ".join(parts)


def find_layer(layers: tuple[Layer, ...], name: str) -> Layer:
    """A layer by name or alias; an unknown name is one line naming the nearest ones."""
    key = str(name).strip()
    for layer in layers:
        if key in (layer.name, layer.alias):
            return layer
    names = [layer.name for layer in layers] + [layer.alias for layer in layers if layer.alias]
    near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    raise UnknownLayerError(f"unknown layer '{key}': {hint}valid layers are {_listing(layers)}")


def conv_layer(layers: tuple[Layer, ...], name: str, purpose: str) -> Layer:
    """Like find_layer, for uses that need a spatial map: a dense layer, or one that cannot be
    visualized (Flatten, Dropout), is an error too."""
    layer = find_layer(layers, name)
    spatial = [item.name for item in layers if item.visualizable and item.kind == "conv"]
    span = f"{spatial[0]}..{spatial[-1]}" if spatial else "none in this model"
    if not layer.visualizable:
        raise UnknownLayerError(
            f"layer {layer.name} cannot be visualized (it has no filters of its own): {purpose} "
            f"takes a conv layer ({span})"
        )
    if layer.kind != "conv":
        raise UnknownLayerError(
            f"layer {layer.name} is fully connected: {purpose} takes a conv layer ({span})"
        )
    return layer


def receptive_fields(kernels: list[tuple[int, int, str]]) -> list[tuple[int, int, float]]:
    """(stride, field, start) after each of a chain of (kernel, stride, padding) layers, padding
    'same' or 'valid' (Keras semantics; 'same' pads (kernel - 1) // 2 before)."""
    stride, field, start, out = 1, 1, 0.0, []
    for kernel, step, padding in kernels:
        before = (kernel - 1) // 2 if padding == "same" else 0
        start = start + ((kernel - 1) / 2 - before) * stride
        field = field + (kernel - 1) * stride
        stride = stride * step
        out.append((stride, field, start))
    return out
