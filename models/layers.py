"""The VGG layer tables (VGG16, VGG19): every name, alias, width and stride comes from here."""

from __future__ import annotations

from render.models.network import (
    Layer,
    conv_layer,
    find_layer,
    receptive_fields,
)

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
TOP_INPUT_SIZE = 224  # the fully connected top needs a 7x7 map after five poolings
TOP_SIDE = 7
NUM_CLASSES = 1000


def vgg_table(blocks: tuple[tuple[int, int], ...]) -> tuple[Layer, ...]:
    """Conv layers block{b}_conv{c} (aliases conv{b}_{c}), then fc1, fc2 and predictions."""
    kernels, names = [], []
    for b, (_, repeats) in enumerate(blocks, start=1):
        if b > 1:
            kernels.append((2, 2, "valid"))  # the pooling before each block but the first
            names.append(None)
        for c in range(1, repeats + 1):
            kernels.append((3, 1, "same"))
            names.append((b, c))
    fields = [f for f, n in zip(receptive_fields(kernels), names, strict=True) if n]
    table, in_channels = [], 3
    for b, (width, repeats) in enumerate(blocks, start=1):
        for c in range(1, repeats + 1):
            stride, field, start = fields[len(table)]
            table.append(
                Layer(
                    name=f"block{b}_conv{c}",
                    kind="conv",
                    channels=width,
                    index=len(table),
                    alias=f"conv{b}_{c}",
                    stride=stride,
                    field=field,
                    start=start,
                    in_channels=in_channels,
                )
            )
            in_channels = width
    flat = TOP_SIDE * TOP_SIDE * in_channels
    top = (("fc1", 4096, flat), ("fc2", 4096, 4096), ("predictions", NUM_CLASSES, 4096))
    for name, width, fan_in in top:
        table.append(Layer(name, "dense", width, len(table), None, 0, 0, 0.0, True, fan_in))
    return tuple(table)


LAYERS: tuple[Layer, ...] = vgg_table(VGG16_BLOCKS)  # VGG16's
LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in LAYERS)
CONV_LAYERS: tuple[Layer, ...] = tuple(layer for layer in LAYERS if layer.kind == "conv")
DENSE_LAYERS: tuple[Layer, ...] = tuple(layer for layer in LAYERS if layer.kind == "dense")


def lookup(table: tuple[Layer, ...], name: str) -> Layer:
    """A layer of a VGG table by Keras name or 2016 alias; unknown names suggest the nearest."""
    return find_layer(table, name)


def get_layer(name: str) -> Layer:
    """A VGG16 layer by Keras name or 2016 alias."""
    return find_layer(LAYERS, name)


def get_conv_layer(name: str, purpose: str) -> Layer:
    return conv_layer(LAYERS, name, purpose)


def output_size(layer: Layer, image_size: int) -> int:
    """Spatial side of a conv layer's map for a square input (Keras 'valid' pooling floors)."""
    size = image_size
    for _ in range(layer.stride.bit_length() - 1):
        size //= 2
    return size
