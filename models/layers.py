"""The one table of VGG16 layers: every name, alias, width and stride comes from here."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    name: str  # Keras name, e.g. block3_conv2
    alias: str | None  # 2016 post name, e.g. conv3_2
    kind: str  # "conv" or "dense"
    in_channels: int  # at full width
    channels: int  # at full width
    stride: int  # input pixels per output pixel; 0 for dense layers (no spatial map)

    @property
    def index(self) -> int:
        return LAYER_NAMES.index(self.name)


_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def _build_table() -> tuple[Layer, ...]:
    table, in_channels = [], 3
    for b, (width, repeats) in enumerate(_BLOCKS, start=1):
        for c in range(1, repeats + 1):
            name, alias = f"block{b}_conv{c}", f"conv{b}_{c}"
            table.append(Layer(name, alias, "conv", in_channels, width, 2 ** (b - 1)))
            in_channels = width
    table.append(Layer("fc1", None, "dense", 7 * 7 * 512, 4096, 0))
    table.append(Layer("fc2", None, "dense", 4096, 4096, 0))
    table.append(Layer("predictions", None, "dense", 4096, 1000, 0))
    return tuple(table)


LAYERS: tuple[Layer, ...] = _build_table()
LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in LAYERS)
CONV_LAYERS: tuple[Layer, ...] = tuple(layer for layer in LAYERS if layer.kind == "conv")
DENSE_LAYERS: tuple[Layer, ...] = tuple(layer for layer in LAYERS if layer.kind == "dense")
TOP_INPUT_SIZE = 224  # the fully connected top needs a 7x7 map after five poolings
NUM_CLASSES = 1000
_BY_NAME = {layer.name: layer for layer in LAYERS} | {
    layer.alias: layer for layer in LAYERS if layer.alias
}


class UnknownLayerError(ValueError):
    pass


def get_layer(name: str) -> Layer:
    """Look a layer up by Keras name or 2016 alias; unknown names suggest the nearest ones."""
    key = str(name).strip()
    if key in _BY_NAME:
        return _BY_NAME[key]
    near = difflib.get_close_matches(key, list(_BY_NAME), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    raise UnknownLayerError(
        f"unknown layer '{key}': {hint}valid layers are block1_conv1..block5_conv3 "
        "(aliases conv1_1..conv5_3), fc1, fc2, predictions"
    )


def get_conv_layer(name: str, purpose: str) -> Layer:
    """Like get_layer, for uses that need a spatial map: a dense layer is an error too."""
    layer = get_layer(name)
    if layer.kind != "conv":
        raise UnknownLayerError(
            f"layer {layer.name} is fully connected: {purpose} takes a conv layer "
            "(block1_conv1..block5_conv3)"
        )
    return layer


def output_size(layer: Layer, image_size: int) -> int:
    """Spatial side of a conv layer's map for a square input (Keras 'valid' pooling floors)."""
    size = image_size
    for _ in range(layer.stride.bit_length() - 1):
        size //= 2
    return size
