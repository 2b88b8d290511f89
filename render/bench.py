"""Benchmark: filters/s, counted GFLOP/s and the share of the machine's measured matmul ceiling.

    python -m render.bench --weights /tmp/real-vgg16/vgg16_notop_keras.h5
    python -m render.bench --layers block1_conv2 --batch 1,2,4,8 --loop python,device

FLOPs are counted as in the throughput issue: forward plus data-gradient backward through the
network cut at the layer, per step, 2 per multiply-add. "nominal" counts the whole target layer
(what a plain implementation computes, comparable across frameworks); "executed" counts what
this renderer computes: only min(batch, channels) channels of the target layer.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from render.ascent import LOOPS, Ascent, compile_ascent, image_keys
from render.batching import auto_batch_size, default_loop, fit_batch, padded
from render.errors import UserError
from render.files import write_json
from render.model_io import load_params
from render.models.layers import CONV_LAYERS, Layer, get_layer, output_size
from render.models.vgg import PRECISIONS, VGG16
from render.objectives import channel_mean
from render.styles import build_style

CHOLLET2016 = {"name": "chollet2016", "parameterization": "pixels", "optimizer": "normalized_sgd"}


def conv_flops(layer: Layer, size: int, target_channels: int | None = None) -> float:
    """Forward FLOPs of one image through the network cut at `layer`."""
    total = 0.0
    for conv in CONV_LAYERS[: layer.index + 1]:
        side = output_size(conv, size)
        cout = target_channels if conv is layer and target_channels else conv.channels
        total += 2.0 * side * side * 9 * conv.in_channels * cout
    return total


def step_flops(layer: Layer, size: int, target_channels: int | None = None) -> float:
    """Forward plus data-gradient backward (the same count again) for one image and step."""
    return 2 * conv_flops(layer, size, target_channels)


def matmul_ceiling(precision: str = "fp32") -> float:
    """Best square matmul rate of the default device at `precision`, in GFLOP/s (4096 on CPU,
    8192 on accelerators, where a smaller one is mostly launch overhead)."""
    on_cpu = jax.default_backend() == "cpu"
    n, repeats = (4096, 5) if on_cpu else (8192, 20)
    dtype, lax_precision = PRECISIONS[precision]
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32), dtype)
    dot = jax.jit(
        lambda a, b: jnp.dot(a, b, precision=lax_precision, preferred_element_type=jnp.float32)
    )
    dot(a, a).block_until_ready()
    best = min(_timed(lambda: dot(a, a).block_until_ready()) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_memory_mb(ascent: Ascent) -> float:
    """On accelerators, the largest compiled program's peak (XLA's buffer analysis); on CPU,
    where that analysis leaves temporaries out, the process's peak resident memory."""
    if jax.default_backend() != "cpu" and ascent.memory_bytes:
        return ascent.memory_bytes / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_layer(
    params,
    layer: Layer,
    filters: int,
    size: int,
    steps: int,
    batch: int | None,
    loop: str,
    repeats: int,
    precision: str = "fp32",
) -> dict:
    batch = fit_batch(batch or auto_batch_size(layer, size, filters), filters)
    loop = loop if loop != "auto" else default_loop(jax.default_backend())
    objective = channel_mean(VGG16(precision=precision), layer.name)
    style = build_style(CHOLLET2016, 1.0)
    chunks = []
    for first in range(0, filters, batch):
        targets = padded(list(range(first, min(first + batch, filters))), batch)
        chunks.append((targets, image_keys(0, layer.index, targets)))
    ascent = compile_ascent(objective, style, size, steps, loop, params, *chunks[0])

    def render_all():
        for targets, keys in chunks:
            jax.block_until_ready(ascent.run(params, targets, keys))

    render_all()  # warm-up: first-call overheads are not throughput
    seconds = statistics.median(_timed(render_all) for _ in range(repeats))
    rate = filters / seconds
    images = len(chunks) * batch  # padded images are computed too
    nominal = step_flops(layer, size) * steps * filters / seconds / 1e9
    executed = step_flops(layer, size, min(batch, layer.channels)) * steps * images / seconds / 1e9
    return {
        "layer": layer.name,
        "size": size,
        "steps": steps,
        "filters": filters,
        "batch": batch,
        "loop": loop,
        "precision": precision,
        "channel_selection": True,
        "filters_per_s": rate,
        "nominal_gflops": nominal,
        "executed_gflops": executed,
        "compile_s": ascent.compile_seconds,
        "peak_memory_mb": peak_memory_mb(ascent),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m render.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--weights", default="random", help="a VGG16 .h5 file, or random (same speed, no download)"
    )
    parser.add_argument(
        "--layers",
        default="block1_conv2,block3_conv3,block5_conv2",
        help="comma-separated layer names, or all (the 13 conv layers)",
    )
    parser.add_argument(
        "--filters",
        default="16",
        help="filters rendered per layer: a number, or all (4,224 for all layers)",
    )
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", default="auto", help="auto or comma-separated sizes")
    parser.add_argument(
        "--loop", default="auto", help="auto, python, device, or both (comma-separated)"
    )
    parser.add_argument(
        "--precision", default="fp32", help="fp32, tf32, bf16, or several comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median counts")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    try:
        names = args.layers.split(",") if args.layers != "all" else [c.name for c in CONV_LAYERS]
        layers = [get_layer(name) for name in names]
    except ValueError as err:
        sys.exit(f"render.bench: error: {err}")
    if args.filters != "all" and not args.filters.isdigit():
        sys.exit(f"render.bench: error: --filters {args.filters}: use a number or all")
    precisions = args.precision.split(",")
    loops = [one for v in args.loop.split(",") for one in (LOOPS if v == "both" else [v])]
    for option, values, allowed in (
        ("--precision", precisions, tuple(PRECISIONS)),
        ("--loop", loops, ("auto", *LOOPS)),
    ):
        for value in values:
            if value not in allowed:
                sys.exit(f"render.bench: error: {option} {value}: use one of {', '.join(allowed)}")
    batches = [None] if args.batch == "auto" else args.batch.split(",")
    for value in batches:
        if value is not None and not (value.isdigit() and int(value) > 0):
            sys.exit(f"render.bench: error: --batch {value}: use auto or positive whole numbers")
    batches = [None if value is None else int(value) for value in batches]
    try:
        params = load_params(None if args.weights == "random" else args.weights)
    except UserError as err:
        sys.exit(f"render.bench: error: {err}")
    device = jax.local_devices()[0]
    print(
        f"device: {device.device_kind} ({jax.default_backend()}, {jax.local_device_count()} "
        f"local), jax {jax.__version__}, {args.size} px, {args.steps} steps",
        flush=True,
    )
    results = []
    for precision in precisions:
        ceiling = matmul_ceiling(precision)
        print(f"{precision}: matmul ceiling {ceiling:.0f} GFLOP/s")
        print(
            f"{'layer':<14}{'batch':>6}{'loop':>8}{'filters/s':>11}{'GFLOP/s nominal':>17}"
            f"{'of ceiling':>12}{'executed':>10}{'compile s':>11}{'peak MB':>9}"
        )
        rows = []
        for layer, batch, loop in itertools.product(layers, batches, loops):
            filters = layer.channels if args.filters == "all" else int(args.filters)
            r = bench_layer(
                params, layer, filters, args.size, args.steps, batch, loop, args.repeats, precision
            )
            r |= {
                "ceiling_gflops": ceiling,
                "fraction_of_ceiling": r["nominal_gflops"] / ceiling,
                "device": device.device_kind,
                "jax": jax.__version__,
            }
            rows.append(r)
            print(
                f"{r['layer']:<14}{r['batch']:>6}{r['loop']:>8}{r['filters_per_s']:>11.3f}"
                f"{r['nominal_gflops']:>17.1f}{r['fraction_of_ceiling']:>12.2f}"
                f"{r['executed_gflops']:>10.1f}{r['compile_s']:>11.2f}"
                f"{r['peak_memory_mb']:>9.0f}",
                flush=True,
            )
            if args.json:  # after every row, so a run cut short keeps what it measured
                write_json(args.json, results + rows)
        results += rows
        seconds = sum(r["filters"] / r["filters_per_s"] for r in rows)
        flops = sum(r["nominal_gflops"] * r["filters"] / r["filters_per_s"] for r in rows)
        print(
            f"total {precision}: {sum(r['filters'] for r in rows)} filters in {seconds:.2f} s of "
            f"rendering after compilation, {flops / seconds / 1e3:.2f} TFLOP/s nominal "
            f"({flops / seconds / ceiling:.2f} of the {precision} matmul ceiling), compile "
            f"{sum(r['compile_s'] for r in rows):.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
