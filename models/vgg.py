"""Flax VGG16 and VGG19 that stop at any named layer and compute just one channel of it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from render.models.layers import (
    TOP_INPUT_SIZE,
    VGG16_BLOCKS,
    VGG19_BLOCKS,
    lookup,
    vgg_table,
)
from render.models.lowering import conv3x3
from render.models.network import CONVENTIONS, Convention, Layer

# precision name -> (operand dtype, lax precision); accumulation is always fp32
PRECISIONS = {
    "fp32": (jnp.float32, lax.Precision.HIGHEST),
    "tf32": (jnp.float32, lax.Precision.DEFAULT),
    "bf16": (jnp.bfloat16, lax.Precision.DEFAULT),
}


@jax.custom_vjp
def redirected_relu(x: jax.Array, redirect: jax.Array) -> jax.Array:
    """ReLU whose gradient, while `redirect` is 1, also reaches negative inputs when it pushes
    them up and the image's plain ReLU gradient is zero everywhere (Lucid's trick, so filters
    that start dead still get a gradient). Cotangents are of a loss being minimized."""
    return jnp.maximum(x, 0)


def _redirected_fwd(x, redirect):
    return jnp.maximum(x, 0), (x, redirect)


def _redirected_bwd(residual, g):
    x, redirect = residual
    plain = jnp.where(x > 0, g, 0)
    pushing_up = jnp.where((x <= 0) & (g > 0), 0, g)
    axes = tuple(range(1, g.ndim))
    silent = jnp.all(plain == 0, axis=axes, keepdims=True) & (redirect > 0)
    return jnp.where(silent, pushing_up, plain), jnp.zeros_like(redirect)


redirected_relu.defvjp(_redirected_fwd, _redirected_bwd)


def _relu(x: jax.Array, redirect) -> jax.Array:
    return nn.relu(x) if redirect is None else redirected_relu(x, redirect)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2/2 max-pooling ('valid', odd edges dropped as Keras does).

    Written as reshape + max rather than reduce_window: its gradient is an elementwise mask
    instead of XLA's select-and-scatter, which is several times slower on CPU.
    """
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def per_image_channel(linear, x: jax.Array, kernel, bias, channels: jax.Array) -> jax.Array:
    """Output channel `channels[b]` of image b of the layer `linear(x, kernel) + bias`.

    With fewer images than channels, only the B requested channels are computed for the whole
    batch and each image keeps its own (the diagonal): B/C of the layer's arithmetic, with plain
    dense convolutions rather than the per-image grouped ones vmap would produce. Images never
    mix, so each image's result and gradient depend on that image alone.
    """
    if channels.shape[0] < kernel.shape[-1]:
        y = linear(x, jnp.take(kernel, channels, axis=-1)) + jnp.take(bias, channels)
        return jnp.moveaxis(jnp.diagonal(y, axis1=0, axis2=-1), -1, 0)
    y = linear(x, kernel) + bias
    index = channels.reshape((-1,) + (1,) * (y.ndim - 1))
    return jnp.take_along_axis(y, index, axis=-1)[..., 0]


# On XLA:CPU, precision=bf16 runs convolutions with at least this many input channels as
# shifted bf16 matmuls unless the host's measured choice says otherwise (render/autotune.py):
# XLA:CPU's bf16 lax.conv is no faster than fp32 while bf16 matmuls are; narrower layers, with
# large maps, are memory-bound that way and stay lax.conv.
BF16_MATMUL_MIN_CHANNELS = 256


def default_form(precision: str, in_channels: int) -> str:
    """The convolution form used where no measured choice is given."""
    wide = in_channels >= BF16_MATMUL_MIN_CHANNELS
    return "shifted" if precision == "bf16" and wide and jax.default_backend() == "cpu" else "conv"


class Conv3x3(nn.Module):
    features: int
    precision: str = "fp32"
    form: str | None = None  # models/lowering.py's FORMS; None: default_form

    @nn.compact
    def __call__(self, x: jax.Array, channels=None, redirect=None) -> jax.Array:
        shape = (3, 3, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.he_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dtype, precision = PRECISIONS[self.precision]
        form = self.form or default_form(self.precision, x.shape[-1])

        def linear(x, kernel):
            return conv3x3(x, kernel, form, dtype, precision)

        if channels is not None:
            return _relu(per_image_channel(linear, x, kernel, bias, channels), redirect)
        return _relu(linear(x, kernel) + bias, redirect)


class Dense(nn.Module):
    features: int
    relu: bool = True
    precision: str = "fp32"

    @nn.compact
    def __call__(self, x: jax.Array, channels=None, redirect=None) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.he_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dtype, precision = PRECISIONS[self.precision]

        def linear(x, kernel):
            return jnp.dot(
                x.astype(dtype),
                kernel.astype(dtype),
                precision=precision,
                preferred_element_type=jnp.float32,
            )

        if channels is not None:
            y = per_image_channel(linear, x, kernel, bias, channels)
        else:
            y = linear(x, kernel) + bias
        return _relu(y, redirect) if self.relu else y


class VGG(nn.Module):
    """VGG16 (or VGG19, by `blocks`) on caffe-preprocessed NHWC input.

    `upto` names the last layer computed (post-ReLU for conv/fc1/fc2, pre-softmax logits for
    `predictions`); nothing past it is evaluated. With `channels` (one index per image), only
    image b's channel `channels[b]` of that layer is returned, without its channel axis.
    `redirect` (a 0/1 scalar array) switches every ReLU's gradient to `redirected_relu`.
    `width_divisor` shrinks every layer's width, for small test fixtures.
    """

    width_divisor: int = 1
    precision: str = "fp32"
    blocks: tuple[tuple[int, int], ...] = VGG16_BLOCKS
    forms: tuple[tuple[str, str], ...] = ()  # (layer name, convolution form), measured per host

    @nn.compact
    def __call__(
        self, x: jax.Array, upto: str = "predictions", channels=None, redirect=None
    ) -> jax.Array:
        table = vgg_table(self.blocks)
        target = lookup(table, upto)
        forms = dict(self.forms)
        for layer in table:
            width = layer.channels // self.width_divisor
            select = channels if layer is target else None
            if layer.kind == "conv":
                if layer.name.endswith("_conv1") and layer.stride > 1:
                    x = max_pool_2x2(x)
                x = Conv3x3(width, self.precision, forms.get(layer.name), name=layer.name)(
                    x, select, redirect
                )
            else:
                if layer.name == "fc1":
                    x = max_pool_2x2(x).reshape(x.shape[0], -1)  # NHWC flatten, as Keras (TF)
                if layer.name == "predictions":
                    width = layer.channels  # always 1000 classes
                relu = layer.name != "predictions"
                x = Dense(width, relu, self.precision, name=layer.name)(x, select, redirect)
            if layer.name == target.name:
                return x
        raise AssertionError("unreachable")


VGG16 = VGG


def VGG19(**options) -> VGG:
    return VGG(blocks=VGG19_BLOCKS, **options)


ARCHITECTURES = {"vgg16": VGG16_BLOCKS, "vgg19": VGG19_BLOCKS}


@dataclass(frozen=True)
class VGGNetwork:
    """VGG16 or VGG19 with Keras' ImageNet conventions, as a `Network`."""

    name: str = "vgg16"
    width_divisor: int = 1
    precision: str = "fp32"
    labels: tuple[str, ...] | None = None
    input_size: int = TOP_INPUT_SIZE
    fixed_size: bool = False  # only the class head needs 224 px (see head_size)
    convention: Convention = CONVENTIONS["caffe"]
    head: str | None = "predictions"
    render_size: int = 128  # size=auto for filters
    head_size: int | None = TOP_INPUT_SIZE
    forms: tuple[tuple[str, str], ...] = ()  # (layer name, convolution form); others: default

    @property
    def module(self) -> VGG:
        return VGG(self.width_divisor, self.precision, ARCHITECTURES[self.name], self.forms)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The table at this network's width (fixtures divide every width but the classes')."""
        return tuple(
            replace(
                layer,
                channels=layer.channels // self.width_divisor
                if layer.name != "predictions"
                else layer.channels,
            )
            for layer in vgg_table(ARCHITECTURES[self.name])
        )

    def features(self, params, images, layer, channels=None, redirect=None) -> jax.Array:
        return self.module.apply(params, images, upto=layer, channels=channels, redirect=redirect)

    def features_many(self, params, images, layers: list[str]) -> dict:
        """{layer: activations} of several layers in one pass, up to the deepest."""
        table = self.layers
        wanted = {lookup(table, name).name: name for name in layers}
        deepest = max(wanted, key=lambda name: lookup(table, name).index)
        _, state = self.module.apply(
            params,
            images,
            upto=deepest,
            capture_intermediates=lambda mdl, method: mdl.name in wanted and method == "__call__",
            mutable=["intermediates"],
        )
        found = state["intermediates"]
        return {asked: found[name]["__call__"][0] for name, asked in wanted.items()}
