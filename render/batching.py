"""Batch size and step-loop placement per backend, and the padding of the last batch."""

from __future__ import annotations

import jax
import numpy as np

from models.layers import CONV_LAYERS, Layer, output_size

# Measured on XLA:CPU (2-core Zen4, 128 px, see BENCHMARKS.md in the README): per-image
# channel selection makes block1 fastest one image at a time; deeper layers like 8.
CPU_BATCH = {1: 1, 2: 4}
CPU_BATCH_DEEP = 8
ACCELERATOR_MEMORY_SHARE = 0.4  # of the device's memory, for one batch's activations
BYTES_PER_ACTIVATION = 4 * 4  # fp32, kept for backward, gradient, and slack for XLA's temporaries


def default_loop(backend: str) -> str:
    """XLA:CPU runs convolutions 2.5-3x slower inside a compiled loop; accelerators prefer it."""
    return "python" if backend == "cpu" else "device"


def activations_per_image(layer: Layer, size: int, width_divisor: int = 1) -> int:
    """Elements of every activation of the network cut at `layer`, for one image."""
    total = size * size * 3
    for conv in CONV_LAYERS[: layer.index + 1]:
        total += output_size(conv, size) ** 2 * conv.channels // width_divisor
    return total


def auto_batch_size(layer: Layer, size: int, filters: int, width_divisor: int = 1) -> int:
    """Images per batch: measured sizes on CPU, a memory budget on GPU/TPU."""
    device = jax.local_devices()[0]
    if device.platform == "cpu":
        batch = CPU_BATCH.get(layer.stride, CPU_BATCH_DEEP)
    else:
        stats = device.memory_stats() or {}
        memory = stats.get("bytes_limit", 16 * 2**30)
        per_image = activations_per_image(layer, size, width_divisor) * BYTES_PER_ACTIVATION
        batch = max(1, int(memory * ACCELERATOR_MEMORY_SHARE // per_image))
        batch = min(batch, 1024)
    return fit_batch(batch, filters)


def fit_batch(batch: int, filters: int) -> int:
    """No larger than the work, and a multiple of the local device count."""
    devices = jax.local_device_count()
    batch = min(batch, filters)
    return max(devices, -(-batch // devices) * devices)


def padded(targets: list[int], batch: int) -> np.ndarray:
    """The batch's targets, padded by repeating the last one so every batch has one shape."""
    return np.asarray(targets + [targets[-1]] * (batch - len(targets)), dtype=np.int32)
