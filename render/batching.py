"""Batch size and step-loop placement per backend, and the padding of the last batch."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from render.models.network import Layer, Network

# Measured on XLA:CPU (2-core Zen4, 128 px; render/BENCHMARKS.md): small batches keep the
# activations in cache, and channel selection makes block1 fastest one image at a time.
CPU_BATCH = {1: 1, 2: 2, 4: 2}  # layer stride -> batch
CPU_BATCH_DEEP = 4
ACCELERATOR_MEMORY_SHARE = 0.4  # of the device's memory, for one batch's activations
BYTES_PER_ACTIVATION = 4 * 4  # fp32, kept for backward, gradient, and slack for XLA's temporaries


def default_loop(backend: str) -> str:
    """XLA:CPU runs convolutions 2.5-3x slower inside a compiled loop; accelerators prefer it."""
    return "python" if backend == "cpu" else "device"


def activations_per_image(network: Network, layer: Layer, size: int) -> int:
    """Elements of every activation of the network cut at `layer`, for one image."""
    total = size * size * 3
    for item in network.layers[: layer.index + 1]:
        if item.kind == "conv" and item.stride:
            total += (size // item.stride) ** 2 * item.channels
    return total


def auto_batch_size(network: Network, layer: Layer, size: int, filters: int) -> int:
    """Images per batch: measured sizes on CPU, a memory budget on GPU/TPU."""
    device = jax.local_devices()[0]
    if device.platform == "cpu":
        batch = CPU_BATCH.get(layer.stride, CPU_BATCH_DEEP)
    else:
        stats = device.memory_stats() or {}
        memory = stats.get("bytes_limit", 16 * 2**30)
        per_image = activations_per_image(network, layer, size) * BYTES_PER_ACTIVATION
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


def _mesh() -> Mesh | None:
    devices = jax.local_devices()
    return Mesh(np.array(devices), ("filters",)) if len(devices) > 1 else None


def split_over_devices(batch_array):
    """Shard the filter (leading) axis of a batch over all local devices; no-op on one."""
    mesh = _mesh()
    if mesh is None:
        return batch_array
    return jax.device_put(batch_array, NamedSharding(mesh, PartitionSpec("filters")))


def replicate_over_devices(tree):
    """A copy of `tree` (the weights) on every local device; no-op on one."""
    mesh = _mesh()
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
