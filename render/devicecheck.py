"""Numerics of the default device against the CPU: is each precision computing the same thing?

    python -m render.devicecheck --weights /tmp/real-vgg16/vgg16_notop_keras.h5

For a batch of filters of a few layers, the objective (one filter's mean activation per image)
and its input gradient, the two things an ascent step uses, are computed on the default device
at each precision and compared with fp32 on the CPU backend of the same process, as
|got - reference| / |reference| (L2 norms over the batch). The limits catch a wrong computation
(a wrong layout or kernel order gives errors of order 1), not rounding: fp32 1e-3 (other
convolution algorithms only re-associate sums); tf32 1e-1 and bf16 2e-1, because rounding
flips ReLU masks near zero and the gradient carries that through up to 13 layers twice. On the
CPU's bf16 path with the real weights the gradient error is 0.008 / 0.05 / 0.1 at block1_conv2 /
block3_conv3 / block5_conv3 (64 px). Use the real weights: with random ones, whose activations
span a wider range, the CPU's own bf16 path is 0.29 off at block5_conv3. Exit status 1 when one
is over its limit.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from render.errors import UserError, run_tool
from render.models.layers import get_layer
from render.models.vgg import PRECISIONS, VGGNetwork
from render.networks import load_params
from render.objectives import channel_mean

LIMITS = {"fp32": 1e-3, "tf32": 1e-1, "bf16": 2e-1}


def value_and_input_gradient(
    params: dict, layer: str, precision: str, images: jax.Array, targets: jax.Array
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image objective and its gradient with respect to the images, on the inputs' device."""
    objective = channel_mean(VGGNetwork(precision=precision), layer)

    def total(images):
        losses = objective(params, images, targets)
        return losses.sum(), losses

    (_, losses), grads = jax.jit(jax.value_and_grad(total, has_aux=True))(images)
    return np.asarray(losses), np.asarray(grads)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """|got - expected| / |expected| over the whole batch (L2 norms)."""
    return float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-30))


def check(
    params: dict, layers: list[str], precisions: list[str], size: int, filters: int
) -> list[tuple[str, str, float, float, float]]:
    """Rows of (layer, precision, objective error, gradient error, limit)."""
    cpu = jax.devices("cpu")[0]
    rng = np.random.default_rng(0)
    rows = []
    for layer in layers:
        channels = get_layer(layer).channels
        targets = np.linspace(0, channels - 1, filters).astype(np.int32)
        images = rng.normal(0, 20, (filters, size, size, 3)).astype(np.float32)  # caffe units
        reference = value_and_input_gradient(
            jax.device_put(params, cpu),
            layer,
            "fp32",
            jax.device_put(images, cpu),
            jax.device_put(targets, cpu),
        )
        for precision in precisions:
            got = value_and_input_gradient(
                params, layer, precision, jnp.asarray(images), jnp.asarray(targets)
            )
            errors = [relative_error(g, r) for g, r in zip(got, reference, strict=True)]
            rows.append((layer, precision, *errors, LIMITS[precision]))
    return rows


def main(argv: list[str] | None = None) -> None:
    run_tool("render.devicecheck", lambda: check_device(argv))


def check_device(argv: list[str] | None) -> int:
    """The command: 0 when every precision is within its limit, 1 when one is not."""
    parser = argparse.ArgumentParser(
        prog="python -m render.devicecheck",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--weights", default="random", help="a VGG16 .h5 file, or random")
    parser.add_argument("--layers", default="block1_conv2,block3_conv3,block5_conv3")
    parser.add_argument("--precision", default="fp32,tf32,bf16")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--filters", type=int, default=8)
    args = parser.parse_args(argv)
    precisions = args.precision.split(",")
    unknown = [p for p in precisions if p not in PRECISIONS]
    try:
        layers = [get_layer(name).name for name in args.layers.split(",")]
        if unknown:
            raise ValueError(f"--precision {unknown[0]}: use one of {', '.join(PRECISIONS)}")
        params = load_params(None if args.weights == "random" else args.weights)
    except ValueError as err:
        raise UserError(str(err)) from None
    try:
        jax.devices("cpu")
    except RuntimeError:
        raise UserError("no CPU backend for the reference: add cpu to JAX_PLATFORMS") from None
    device = jax.local_devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), reference: cpu fp32")
    print(f"{'layer':<14}{'precision':>10}{'objective':>11}{'gradient':>11}{'limit':>8}")
    failed = False
    for layer, precision, value_error, grad_error, limit in check(
        params, layers, precisions, args.size, args.filters
    ):
        ok = value_error <= limit and grad_error <= limit
        failed |= not ok
        print(
            f"{layer:<14}{precision:>10}{value_error:>11.2e}{grad_error:>11.2e}{limit:>8.0e}"
            f"  {'ok' if ok else 'OVER THE LIMIT'}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    main()
