"""Ways to compute a 3x3 'same' convolution (NHWC input, HWIO kernel), all equal to lax.conv.

Which is fastest depends on the host (vector width, matmul units, caches) and on the shape, so
the renderer measures them (render/autotune.py) rather than assuming one:

- `conv`: XLA's own convolution, differentiated by XLA.
- `shifted`: nine matmuls of shifted views of the input, accumulated.
- `im2col`: the nine shifted views side by side, one matmul with 9x the inner dimension.
- `winograd`: Winograd's F(2x2, 3x3): 16 matmuls on transformed 4x4 tiles, 2.25x fewer
  multiplications than the direct form.

Every form but `conv` gets its input gradient from itself: for a stride-1 'same' 3x3
convolution, the input gradient is the same convolution of the output gradient with the kernel
turned 180 degrees and its channel axes swapped. Matmul operands are `dtype` (fp32 or bf16),
accumulation is fp32; the kernel gets no gradient (only images are optimized).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

FORMS = ("conv", "shifted", "im2col", "winograd")

# Winograd F(2x2, 3x3) (Lavin & Gray 2016): y = A^T [(G g G^T) * (B^T d B)] A per 4x4 tile d
WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _dot(x: jax.Array, kernel: jax.Array, dtype, precision) -> jax.Array:
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    return jnp.dot(x, kernel, precision=precision, preferred_element_type=jnp.float32)


def _padded(x: jax.Array) -> jax.Array:
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def _shifted(x, kernel, dtype, precision):
    height, width = x.shape[1], x.shape[2]
    padded = _padded(x.astype(dtype))
    return sum(
        _dot(padded[:, i : i + height, j : j + width], kernel[i, j], dtype, precision)
        for i in range(3)
        for j in range(3)
    )


def _im2col(x, kernel, dtype, precision):
    height, width = x.shape[1], x.shape[2]
    padded = _padded(x.astype(dtype))
    views = [padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)]
    columns = jnp.concatenate(views, axis=-1)  # channel index = tap * Cin + c, as the reshape
    return _dot(columns, kernel.reshape(-1, kernel.shape[-1]), dtype, precision)


def _sandwich(matrix: np.ndarray, tile: list[list[jax.Array]]) -> list[list[jax.Array]]:
    """matrix @ tile @ matrix.T for a tile held as nested lists of arrays (unrolled adds)."""

    def mix(items):
        return [sum(w * item for w, item in zip(row, items, strict=True) if w) for row in matrix]

    columns = [mix(column) for column in zip(*tile, strict=True)]  # columns[b][p]
    return [mix(row) for row in zip(*columns, strict=True)]


def _winograd(x, kernel, dtype, precision):
    n, height, width, _ = x.shape
    # an even output size: tiles of 2x2 outputs; extra rows/columns are computed and dropped
    even_h, even_w = height + height % 2, width + width % 2
    padded = jnp.pad(x, ((0, 0), (1, 1 + even_h - height), (1, 1 + even_w - width), (0, 0)))
    rows, cols = even_h // 2, even_w // 2
    # element (a, b) of every 4x4 input tile (stride 2), each (N, rows, cols, Cin)
    tiles = [
        [padded[:, a : a + 2 * rows : 2, b : b + 2 * cols : 2] for b in range(4)] for a in range(4)
    ]
    v = jnp.stack([item for row in _sandwich(WINOGRAD_BT, tiles) for item in row])
    u = jnp.einsum("pi,ijco,qj->pqco", WINOGRAD_G, kernel, WINOGRAD_G, precision="highest")
    m = jnp.einsum(
        "tnhwc,tco->tnhwo",
        v.astype(dtype),
        u.reshape(16, *u.shape[2:]).astype(dtype),
        precision=precision,
        preferred_element_type=jnp.float32,
    )
    y = _sandwich(WINOGRAD_AT, [[m[4 * p + q] for q in range(4)] for p in range(4)])
    y = jnp.stack([jnp.stack(row) for row in y])  # (2, 2, N, rows, cols, Cout)
    y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, even_h, even_w, -1)
    return y[:, :height, :width]


_FORWARD = {"shifted": _shifted, "im2col": _im2col, "winograd": _winograd}


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _self_transposed(x, kernel, form, dtype, precision):
    return _FORWARD[form](x, kernel, dtype, precision)


def _forward(x, kernel, form, dtype, precision):
    return _FORWARD[form](x, kernel, dtype, precision), kernel


def _backward(form, dtype, precision, kernel, g):
    turned = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    return _FORWARD[form](g, turned, dtype, precision), jnp.zeros_like(kernel)


_self_transposed.defvjp(_forward, _backward)


def conv3x3(
    x: jax.Array, kernel: jax.Array, form: str = "conv", dtype=jnp.float32, precision=None
) -> jax.Array:
    """3x3 stride-1 'same' cross-correlation of NHWC `x` with HWIO `kernel`, fp32 result."""
    precision = lax.Precision.HIGHEST if precision is None else precision
    if form == "conv":
        # A bf16 result, not preferred_element_type=fp32: XLA upcasts the operands of a
        # mixed-type convolution to fp32 (operand_upcaster), which on a GPU would run it at
        # fp32/tf32 speed; a bf16 convolution runs on the tensor cores and still accumulates
        # in fp32 (cuDNN's bf16 mode). Everything after it is fp32.
        return lax.conv_general_dilated(
            x.astype(dtype),
            kernel.astype(dtype),
            window_strides=(1, 1),
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=precision,
        ).astype(jnp.float32)
    if form not in _FORWARD:
        raise ValueError(f"unknown convolution form {form!r}: use one of {', '.join(FORMS)}")
    return _self_transposed(x, kernel, form, dtype, precision)
