"""Benchmark: filters/s, counted GFLOP/s and the share of the machine's measured matmul ceiling.

    python -m render.bench --weights /tmp/real-vgg16/vgg16_notop_keras.h5
    python -m render.bench --layers block1_conv2 --batch 1,2,4,8 --loop python,device
    python -m render.bench --model keras --model-file m.keras --preprocess caffe --layers all
    python -m render.bench --weights W --peer --end-to-end   # beside TensorFlow, one window

Convolution forms and auto batch sizes are the host's measured choices, as the renderer uses
them (render/autotune.py; measured here on first use, `--autotune false` for the defaults).

The network is built as the renderer builds it (`model=...` settings), and its layers come from
its own table. FLOPs are counted as forward plus data-gradient
backward through the network cut at the layer, per step, 2 per multiply-add. "nominal" counts
the whole target layer (what a plain implementation computes, comparable across frameworks);
"executed" counts what this renderer computes: only min(batch, channels) channels of the target
layer. VGG16 and VGG19 are counted from their 3x3 convolutions; other networks by XLA's cost
analysis of the compiled step (n/a where the backend has none).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from render.ascent import LOOPS, Ascent, compile_ascent, image_keys, make_step
from render.autotune import TUNE_STEPS, host_key, plan_render, seconds_per_filter, workload_key
from render.batching import auto_batch_size, default_loop, fit_batch, padded
from render.cli import compose_config
from render.errors import UserError, run_tool
from render.files import write_json
from render.models.keras_backend import KerasNetwork
from render.models.layers import LAYERS, Layer, output_size
from render.models.network import CONVENTIONS, Network, UnknownLayerError, conv_layer
from render.models.vgg import PRECISIONS, VGGNetwork
from render.networks import load_network
from render.objectives import Objective, channel_mean
from render.runs import find_runs, read_metadata
from render.styles import Style, build_style

CHOLLET2016 = {"name": "chollet2016", "parameterization": "pixels", "optimizer": "normalized_sgd"}
MODELS = ("vgg16", "vgg19", "keras")
KERAS_BACKENDS = ("auto", "chain", "keras")
DEFAULT_LAYERS = "block1_conv2,block3_conv3,block5_conv2"
PEER = "../shared/tools/peer-tf-bench"  # TensorFlow/Keras 3 on the same job, batch 8


def conv_flops(
    layer: Layer, size: int, target_channels: int | None = None, table: tuple = LAYERS
) -> float:
    """Forward FLOPs of one image through a VGG `table` (VGG16's by default) cut at `layer`."""
    total, in_channels = 0.0, 3
    for conv in table[: layer.index + 1]:
        if conv.kind != "conv":
            continue
        side = output_size(conv, size)
        cout = target_channels if conv.index == layer.index and target_channels else conv.channels
        total += 2.0 * side * side * 9 * in_channels * cout
        in_channels = conv.channels
    return total


def step_flops(
    layer: Layer, size: int, target_channels: int | None = None, table: tuple = LAYERS
) -> float:
    """Forward plus data-gradient backward (the same count again) for one image and step."""
    return 2 * conv_flops(layer, size, target_channels, table)


def whole_layer_mean(network: Network, layer: str) -> Objective:
    """channel_mean computed from every channel of the layer, as a plain implementation does."""

    def objective(params, images, targets, redirect=None):
        activation = network.features(params, images, layer, redirect=redirect)
        picked = jnp.take_along_axis(activation, targets[:, None, None, None], axis=-1)
        return picked.reshape(picked.shape[0], -1).mean(axis=1)

    return objective


def xla_step_flops(
    objective: Objective, style: Style, size: int, params, targets, keys
) -> float | None:
    """FLOPs of one compiled ascent step over the batch, by XLA's cost analysis; None where
    the backend offers none."""
    param = style.parameterization.init(keys, size)
    state = (param, style.optimizer.init(param))
    compiled = jax.jit(make_step(objective, style)).lower(params, state, targets, keys, 0)
    try:
        cost = compiled.compile().cost_analysis()
    except NotImplementedError:
        return None
    if isinstance(cost, list | tuple):  # older jax: one dict per program
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def layer_flops(
    network: Network, layer: Layer, style: Style, size: int, params, filters: int, chunks: list
) -> tuple[float | None, float | None, str | None]:
    """(nominal, executed) FLOPs of one step over all of the layer's batches, and how they
    were counted: "counted" for VGG, "xla" for others, None where XLA cannot say."""
    batch = len(chunks[0][0])
    images = len(chunks) * batch  # padded images are computed too
    if isinstance(network, VGGNetwork):
        table = network.layers
        nominal = step_flops(layer, size, None, table) * filters
        executed = step_flops(layer, size, min(batch, layer.channels), table) * images
        return nominal, executed, "counted"
    whole = whole_layer_mean(network, layer.name)
    whole_flops = xla_step_flops(whole, style, size, params, *chunks[0])
    selected = channel_mean(network, layer.name)
    selected_flops = xla_step_flops(selected, style, size, params, *chunks[0])
    nominal = whole_flops / batch * filters if whole_flops else None
    executed = selected_flops * len(chunks) if selected_flops else None
    return nominal, executed, "xla" if nominal or executed else None


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
    network: Network,
    params,
    layer: Layer,
    filters: int,
    size: int,
    steps: int,
    batch: int | None,
    loop: str,
    repeats: int,
    precision: str = "fp32",
    autotune: str = "true",
    cache_dir: str | None = None,
    style_settings: dict | None = None,
) -> dict:
    """One layer's timing; FLOP rates are None where they cannot be counted. With autotune
    (true, or auto: always here), convolution forms and an auto batch are this host's measured
    choices (render/autotune.py), as the renderer uses them."""
    loop = loop if loop != "auto" else default_loop(jax.default_backend())
    style = build_style(CHOLLET2016, 1.0, network.convention)

    def chunks_of(batch: int) -> list:
        chunks = []
        for first in range(0, filters, batch):
            targets = padded(list(range(first, min(first + batch, filters))), batch)
            chunks.append((targets, image_keys(0, layer.index, targets)))
        return chunks

    def time_per_filter(candidate: Network, batch: int, compiler_options: dict) -> float:
        targets, keys = chunks_of(batch)[0]
        objective = channel_mean(candidate, layer.name)
        ascent = compile_ascent(
            objective,
            style,
            size,
            TUNE_STEPS,
            loop,
            params,
            targets,
            keys,
            compiler_options=compiler_options,
        )
        return seconds_per_filter(lambda: ascent.run(params, targets, keys), batch)

    plan = None
    if autotune != "false":
        workload = workload_key(style_settings or CHOLLET2016, precision)
        network, plan = plan_render(
            network, layer, size, filters, workload, time_per_filter, cache_dir, batch
        )
        batch = plan.batch
    batch = fit_batch(batch or auto_batch_size(network, layer, size, filters), filters)
    chunks = chunks_of(batch)
    objective = channel_mean(network, layer.name)
    options = plan.compiler_options if plan else None
    ascent = compile_ascent(
        objective, style, size, steps, loop, params, *chunks[0], compiler_options=options
    )

    def render_all():
        for targets, keys in chunks:
            jax.block_until_ready(ascent.run(params, targets, keys))

    render_all()  # warm-up: first-call overheads are not throughput
    seconds = statistics.median(_timed(render_all) for _ in range(repeats))
    nominal, executed, source = layer_flops(network, layer, style, size, params, filters, chunks)

    def rate(flops: float | None) -> float | None:
        return flops * steps / seconds / 1e9 if flops else None

    return {
        "layer": layer.name,
        "size": size,
        "steps": steps,
        "filters": filters,
        "batch": batch,
        "loop": loop,
        "precision": precision,
        "channel_selection": not isinstance(network, KerasNetwork),
        "filters_per_s": filters / seconds,
        "flops_source": source,
        "nominal_gflops": rate(nominal),
        "executed_gflops": rate(executed),
        "compile_s": ascent.compile_seconds,
        "peak_memory_mb": peak_memory_mb(ascent),
        "autotune": plan.record() if plan else None,
    }


def run_peer(command: str, layer: str, args: argparse.Namespace) -> dict:
    """The TensorFlow peer on one layer, in its own process: its JSON line, plus the process's
    wall time (startup, model building and tracing included)."""
    argv = [command, "--layers", layer, "--filters", str(args.filters)]
    argv += ["--steps", str(args.steps), "--size", str(args.size)]
    if args.weights not in (None, "random"):
        argv += ["--weights", os.path.abspath(args.weights)]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"--peer {command}: exited {done.returncode} ({last})")
    return json.loads(lines[-1]) | {"process_s": wall}


def run_main_command(
    layer: str, args: argparse.Namespace, precision: str
) -> tuple[float, dict[str, float]]:
    """Wall time of `python -m render` on the layer's first --filters filters, start to end
    (startup, weights, compilation, rendering, metrics, atlases and gallery), and the run's
    own account of its phases (its metadata's `phases_s`)."""
    with tempfile.TemporaryDirectory() as root:
        argv = [sys.executable, "-m", "render", f"layer={layer}"]
        argv += [f"filters=0-{int(args.filters) - 1}", f"steps={args.steps}", f"size={args.size}"]
        argv += [f"weights={_quoted(args.weights)}", f"precision={precision}"]
        argv += [f"output.root={_quoted(root)}", f"cache_dir={_quoted(args.cache_dir)}"]
        argv += ["progress=false"]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"python -m render {layer}: exited {done.returncode} ({last})")
        wall = time.perf_counter() - start
        folders = find_runs(root)
        meta = read_metadata(folders[0]) if folders else None
        return wall, (meta or {}).get("phases_s", {})


def _fail(message: str) -> NoReturn:
    raise UserError(message)


def _quoted(value: str) -> str:
    """A path as a quoted Hydra override value (commas, spaces and '=' stay literal)."""
    return "'" + value.replace("'", "\\'") + "'"


def model_overrides(args: argparse.Namespace, precision: str) -> list[str]:
    """The renderer's settings for the benchmarked network."""
    if args.model == "keras":
        return [
            "model=keras",
            f"model.file={_quoted(os.path.abspath(args.model_file))}",
            f"model.preprocess={args.preprocess}",
            f"model.backend={args.keras_backend}",
            f"precision={precision}",
        ]
    return [f"model={args.model}", f"weights={_quoted(args.weights)}", f"precision={precision}"]


def load_model(
    args: argparse.Namespace, precisions: list[str]
) -> tuple[dict[str, Network], object]:
    """The network at each precision, built exactly as the renderer builds it, and its params
    (read once: precision changes the computation, not the weights)."""
    configs = [compose_config(model_overrides(args, p)) for p in precisions]
    networks = {
        p: load_network(c, read=False).network for p, c in zip(precisions, configs, strict=True)
    }
    return networks, load_network(configs[0], read=True).params


def model_record(args: argparse.Namespace, network: Network) -> dict:
    """What identifies the benchmarked model in the JSON rows."""
    record = {"model": args.model, "network": network.name}
    if args.model == "keras":
        record |= {
            "model_file": os.path.abspath(args.model_file),
            "preprocess": args.preprocess,
            "keras_backend": "keras" if isinstance(network, KerasNetwork) else "chain",
        }
    return record


def check_model_options(args: argparse.Namespace) -> str | None:
    """The first problem with --model and the options that go with it, or None."""
    if args.model not in MODELS:
        return f"--model {args.model}: use one of {', '.join(MODELS)}"
    keras_only = {"--model-file": args.model_file, "--preprocess": args.preprocess}
    keras_only["--keras-backend"] = args.keras_backend
    if args.model != "keras":
        given = [option for option, value in keras_only.items() if value is not None]
        if given:
            return f"{given[0]} is for --model keras: leave it out for --model {args.model}"
        return None
    if args.weights is not None:
        return "--weights is for --model vgg16 or vgg19: a Keras file holds its own weights"
    if args.model_file is None:
        return "--model keras needs --model-file PATH (a .keras or .h5 file saved by Keras)"
    if not os.path.isfile(args.model_file):
        return f"--model-file {args.model_file}: no such file"
    if args.preprocess is None:
        return f"--model keras needs --preprocess: one of {', '.join(CONVENTIONS)}"
    if args.preprocess not in CONVENTIONS:
        return f"--preprocess {args.preprocess}: use one of {', '.join(CONVENTIONS)}"
    if args.keras_backend is not None and args.keras_backend not in KERAS_BACKENDS:
        return f"--keras-backend {args.keras_backend}: use one of {', '.join(KERAS_BACKENDS)}"
    return None


def select_layers(network: Network, spec: str) -> list[Layer]:
    """The layers named in `spec` (names or aliases), or every visualizable conv layer."""
    if spec == "all":
        return [layer for layer in network.layers if layer.visualizable and layer.kind == "conv"]
    return [conv_layer(network.layers, name, "the benchmark") for name in spec.split(",")]


def _gflops(value: float | None, width: int) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'n/a':>{width}}"


def compare_with_peer(row: dict, args: argparse.Namespace, precision: str) -> None:
    """Run the peer on the row's layer right after it, print and record the ratios."""
    peer = run_peer(args.peer, row["layer"], args)
    ratio = row["filters_per_s"] / peer["filters_per_s"]
    row["peer"] = peer
    row["ratio_to_peer"] = ratio
    print(
        f"{'':<14}peer ({peer['peer']}, batch {peer['batch']}): {peer['filters_per_s']:.3f} "
        f"filters/s, {peer['gflop_per_s']:.1f} GFLOP/s; render / peer {ratio:.2f}x",
        flush=True,
    )
    if args.end_to_end:
        whole, phases = run_main_command(row["layer"], args, precision)
        row["main_command_s"] = whole
        row["main_command_phases_s"] = phases
        row["ratio_to_peer_process"] = peer["process_s"] / whole
        parts = [f"{name} {seconds:.1f}" for name, seconds in phases.items()]
        parts.append(f"startup and the rest {whole - sum(phases.values()):.1f}")
        print(
            f"{'':<14}whole process: python -m render {whole:.1f} s ({', '.join(parts)}), "
            f"peer {peer['process_s']:.1f} s; render / peer {peer['process_s'] / whole:.2f}x",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    run_tool("render.bench", lambda: benchmark(argv))


def benchmark(argv: list[str] | None) -> int:
    """The command (see the module's docstring); 0 when done."""
    parser = argparse.ArgumentParser(
        prog="python -m render.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="vgg16", help=f"{', '.join(MODELS)} (default vgg16)")
    parser.add_argument(
        "--weights",
        help="--model vgg16/vgg19: a weights .h5 file, or random (the default: same speed, "
        "no download)",
    )
    parser.add_argument("--model-file", help="--model keras: the .keras or .h5 model file")
    parser.add_argument(
        "--preprocess",
        help=f"--model keras: the file's input convention ({', '.join(CONVENTIONS)})",
    )
    parser.add_argument(
        "--keras-backend",
        help="--model keras: auto (default), chain (compiled JAX) or keras (run by Keras)",
    )
    parser.add_argument(
        "--layers",
        default=DEFAULT_LAYERS,
        help="comma-separated layer names, or all (every conv layer of the model)",
    )
    parser.add_argument(
        "--filters",
        default="16",
        help="filters rendered per layer: a number, or all (4,224 for all of VGG16's layers)",
    )
    parser.add_argument("--size", default="128", help="image side in pixels")
    parser.add_argument("--steps", default="20", help="ascent steps per filter")
    parser.add_argument("--batch", default="auto", help="auto or comma-separated sizes")
    parser.add_argument(
        "--loop", default="auto", help="auto, python, device, or both (comma-separated)"
    )
    parser.add_argument(
        "--precision", default="fp32", help="fp32, tf32, bf16, or several comma-separated"
    )
    parser.add_argument("--repeats", default="3", help="timed runs; the median counts")
    parser.add_argument(
        "--autotune",
        default="true",
        help="true: convolution forms and an auto batch measured on this host and cached, as "
        "the renderer does; false: the built-in defaults",
    )
    parser.add_argument("--cache-dir", default="~/.cache/render", help="where choices are kept")
    parser.add_argument(
        "--peer",
        nargs="?",
        const=PEER,
        help=f"after each layer, run the TensorFlow peer on the same job (default {PEER}) and "
        "print the ratio",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="with --peer: also time the whole `python -m render` command against the whole "
        "peer process",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    problem = check_model_options(args)
    if problem:
        _fail(problem)
    if args.model == "keras":
        args.keras_backend = args.keras_backend or "auto"
    else:
        args.weights = args.weights or "random"
    if args.filters != "all" and not args.filters.isdigit():
        _fail(f"--filters {args.filters}: use a number or all")
    for option in ("size", "steps", "repeats"):
        value = getattr(args, option)
        if not (value.isdigit() and int(value) > 0):
            _fail(f"--{option} {value}: use a positive whole number")
        setattr(args, option, int(value))
    precisions = args.precision.split(",")
    loops = [one for v in args.loop.split(",") for one in (LOOPS if v == "both" else [v])]
    for option, values, allowed in (
        ("--precision", precisions, tuple(PRECISIONS)),
        ("--loop", loops, ("auto", *LOOPS)),
    ):
        for value in values:
            if value not in allowed:
                _fail(f"{option} {value}: use one of {', '.join(allowed)}")
    if args.autotune not in ("true", "false"):
        _fail(f"--autotune {args.autotune}: use true or false")
    if args.peer and (args.model != "vgg16" or args.filters == "all"):
        _fail("--peer runs VGG16 with a number of --filters: use --model vgg16 and --filters N")
    if args.peer and not os.path.isfile(args.peer):
        _fail(f"--peer {args.peer}: no such file (the peer's launcher script)")
    if args.end_to_end and not args.peer:
        _fail("--end-to-end compares with the peer: add --peer")
    if args.model == "keras" and precisions != ["fp32"]:
        other = next(p for p in precisions if p != "fp32")
        _fail(f"--precision {other}: use fp32 with --model keras (tf32 and bf16 are VGG's)")
    batches = [None] if args.batch == "auto" else args.batch.split(",")
    for value in batches:
        if value is not None and not (value.isdigit() and int(value) > 0):
            _fail(f"--batch {value}: use auto or positive whole numbers")
    batches = [None if value is None else int(value) for value in batches]
    try:
        networks, params = load_model(args, precisions)
        layers = select_layers(networks[precisions[0]], args.layers)
    except (UserError, UnknownLayerError) as err:
        _fail(str(err))
    except ValueError as err:  # Keras' own complaints about a file it cannot load
        _fail((str(err).strip().splitlines() or [type(err).__name__])[0])
    for layer in layers:
        if args.filters != "all" and int(args.filters) > layer.channels:
            _fail(
                f"--filters {args.filters}: {layer.name} has {layer.channels} filters: use at "
                "most that, or all"
            )
    device = jax.local_devices()[0]
    network = networks[precisions[0]]
    # the renderer's own chollet2016 settings: its measured choices are the renderer's
    style_settings = OmegaConf.to_container(compose_config([]).style, resolve=True)
    counted = isinstance(network, VGGNetwork)
    print(
        f"host: {host_key()}\n"
        f"device: {device.device_kind} ({jax.default_backend()}, {jax.local_device_count()} "
        f"local), jax {jax.__version__}, {args.size} px, {args.steps} steps\n"
        f"model: {network.name}; FLOPs "
        + (
            "counted from its 3x3 convolutions" if counted else "by XLA's cost analysis of the step"
        ),
        flush=True,
    )
    results = []
    for precision in precisions:
        network = networks[precision]
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
                network,
                params,
                layer,
                filters,
                args.size,
                args.steps,
                batch,
                loop,
                args.repeats,
                precision,
                args.autotune,
                args.cache_dir,
                style_settings,
            )
            nominal = r["nominal_gflops"]
            r |= {
                "ceiling_gflops": ceiling,
                "fraction_of_ceiling": nominal / ceiling if nominal is not None else None,
                "device": device.device_kind,
                "host": host_key(),
                "jax": jax.__version__,
                **model_record(args, network),
            }
            rows.append(r)
            share = r["fraction_of_ceiling"]
            print(
                f"{r['layer']:<14}{r['batch']:>6}{r['loop']:>8}{r['filters_per_s']:>11.3f}"
                f"{_gflops(nominal, 17)}{f'{share:.2f}' if share is not None else 'n/a':>12}"
                f"{_gflops(r['executed_gflops'], 10)}{r['compile_s']:>11.2f}"
                f"{r['peak_memory_mb']:>9.0f}",
                flush=True,
            )
            if r["autotune"]:
                forms = collections.Counter(r["autotune"]["forms"].values())
                named = ", ".join(f"{form} x{n}" for form, n in forms.items()) or "default"
                source = r["autotune"]["source"]
                if source == "measured":  # what the first use of the layer on a host costs
                    source += f" in {r['autotune']['measured_s']:.1f} s"
                print(
                    f"{'':<14}forms: {named}, {r['autotune']['library']} kernels ({source})",
                    flush=True,
                )
            if args.peer:
                compare_with_peer(r, args, precision)
            if args.json:  # after every row, so a run cut short keeps what it measured
                write_json(args.json, results + rows)
        results += rows
        seconds = sum(r["filters"] / r["filters_per_s"] for r in rows)
        rate = "n/a TFLOP/s nominal"
        if all(r["nominal_gflops"] is not None for r in rows):
            flops = sum(r["nominal_gflops"] * r["filters"] / r["filters_per_s"] for r in rows)
            rate = (
                f"{flops / seconds / 1e3:.2f} TFLOP/s nominal ({flops / seconds / ceiling:.2f} "
                f"of the {precision} matmul ceiling)"
            )
        print(
            f"total {precision}: {sum(r['filters'] for r in rows)} filters in {seconds:.2f} s of "
            f"rendering after compilation, {rate}, compile "
            f"{sum(r['compile_s'] for r in rows):.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
