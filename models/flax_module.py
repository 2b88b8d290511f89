"""Your own Flax module as a Network: its named submodules are its layers.

A factory `pkg.module:function` returns `(module, params, layers)`: a linen Module, its
variables (as `module.init` returns them) and the names of the submodules to visualize, in
order ("block1/conv" for nested ones). A layer's activations are what that submodule returns
(so wrap a convolution and its ReLU in one submodule to see post-ReLU maps); they are read with
Flax's `capture_intermediates`, so any module works unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from render.models.network import Convention, Layer


class FactoryError(ValueError):
    pass


def import_factory(spec: str) -> Callable:
    """The function named by 'pkg.module:function'."""
    module_name, _, function = str(spec).partition(":")
    if not module_name or not function:
        raise FactoryError(
            f"model.factory={spec} is invalid: use pkg.module:function (a function returning "
            "(module, params, layer names))"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise FactoryError(
            f"model.factory={spec}: cannot import {module_name} ({err}); is it on PYTHONPATH?"
        ) from None
    if not callable(getattr(module, function, None)):
        raise FactoryError(f"model.factory={spec}: {module_name} has no function {function}")
    return getattr(module, function)


def _capture(layer: str):
    def wanted(module, method_name: str) -> bool:
        return method_name == "__call__" and "/".join(module.scope.path) == layer

    return wanted


@dataclass(frozen=True, eq=False)
class FlaxNetwork:
    """A user's linen Module as a `Network` (no redirected ReLU: the module computes its own)."""

    module: object
    layer_names: tuple[str, ...]
    convention: Convention
    input_size: int = 224
    labels: tuple[str, ...] | None = None
    name: str = "flax"
    layers: tuple[Layer, ...] = ()
    head: str | None = None
    fixed_size: bool = False

    def features(self, params, images, layer, channels=None, redirect=None) -> jax.Array:
        del redirect
        _, state = self.module.apply(
            params, images, capture_intermediates=_capture(layer), mutable=["intermediates"]
        )
        found = state["intermediates"]
        for name in layer.split("/"):
            found = found[name]
        y = found["__call__"][0]
        if channels is None:
            return y
        index = channels.reshape((-1,) + (1,) * (y.ndim - 1))
        return jnp.take_along_axis(y, index, axis=-1)[..., 0]


def flax_network(
    factory: str,
    convention: Convention,
    input_size: int = 224,
    labels: tuple[str, ...] | None = None,
) -> tuple[FlaxNetwork, object]:
    """Build the factory's module and describe its layers from their output shapes."""
    try:
        module, params, names = import_factory(factory)()
    except (TypeError, ValueError) as err:
        if isinstance(err, FactoryError):
            raise
        raise FactoryError(
            f"model.factory={factory} must return (module, params, layer names): {err}"
        ) from None
    network = FlaxNetwork(module, tuple(names), convention, input_size, labels, f"flax:{factory}")
    dummy = jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)
    layers = []
    for index, name in enumerate(network.layer_names):
        try:
            shape = jax.eval_shape(lambda x, name=name: network.features(params, x, name), dummy)
        except KeyError:
            raise FactoryError(
                f"model.factory={factory}: the module has no submodule '{name}' (name layers "
                "by their submodule path, e.g. block1/conv)"
            ) from None
        spatial = len(shape.shape) == 4
        stride = max(1, input_size // shape.shape[1]) if spatial else 0
        kind = "conv" if spatial else "dense"
        layers.append(Layer(name, kind, shape.shape[-1], index, None, stride, 0, 0.0))
    head = layers[-1].name if layers and layers[-1].kind == "dense" else None
    network = FlaxNetwork(
        module,
        network.layer_names,
        convention,
        input_size,
        labels,
        network.name,
        tuple(layers),
        head,
        head is not None,
    )
    return network, params
